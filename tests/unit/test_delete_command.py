"""`quire delete` on SQLite and a local store, documents made from rows: a name that several
documents match deletes none, a terminal is asked first, a --redo's unfinished reading goes too."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pipeline import storage
from pipeline.cli import app
from pipeline.config import get_settings
from pipeline.db import job_rows, readings, repo
from pipeline.db.session import make_engine, session_scope, upgrade
from pipeline.types import BBox


@pytest.fixture
def home(tmp_path, sqlite_url, monkeypatch):
    upgrade(sqlite_url)
    monkeypatch.setenv("QUIRE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("QUIRE_STORAGE_URL", (tmp_path / "store").as_uri())
    get_settings.cache_clear()
    engine = make_engine(sqlite_url)
    yield engine, storage.LocalStore(tmp_path / "store")
    engine.dispose()
    get_settings.cache_clear()


def document(engine, store, name: str, sha: str, text: str) -> str:
    """A done document sent by a `quire run` job, one page and line, its objects in the store."""
    with session_scope(engine) as s:
        job = job_rows.create_job(s, settings={})
        doc, _ = repo.upsert_document(s, sha256=sha, profile="p1", name=name, source_uri=name, size_bytes=1)
        job_rows.link_job_document(s, job.id, doc.id, 0, name)
        page = repo.save_page(s, doc.id, number=1, image_key=storage.page_key(sha, "p1", 1),
                              width=100, height=50, dpi=150, angle=0.0)
        [line] = repo.save_lines(s, page.id, [(0, BBox(0, 0, 90, 8), None)])
        repo.set_line_texts(s, [(line.id, text, 0.9)], "m")
        repo.finish_document(s, doc.id, 1)
        job_rows.update_job_counts(s, job.id)
        doc_id = doc.id
    for key in (storage.source_key(sha), storage.page_key(sha, "p1", 1)):
        store.put_bytes(key, b"x")
    return doc_id


def names(engine) -> list[str]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return sorted(n for (n,) in conn.execute(text("SELECT name FROM documents")))


def test_a_name_several_documents_match_deletes_none_and_lists_their_ids(home):
    engine, store = home
    first = document(engine, store, "box1/letter.pdf", "a" * 64, "first letter")
    second = document(engine, store, "box2/letter.pdf", "b" * 64, "second letter")
    result = CliRunner().invoke(app, ["delete", "letter.pdf", "--yes"])
    assert result.exit_code == 1, result.output
    assert "'letter.pdf' names 2 documents, none deleted" in result.output
    assert first in result.output and second in result.output
    assert names(engine) == ["box1/letter.pdf", "box2/letter.pdf"]
    # By its path, or its id, one is chosen.
    chosen = CliRunner().invoke(app, ["delete", "box2/letter.pdf", "--yes"])
    assert chosen.exit_code == 0 and f"deleted box2/letter.pdf ({second}): 1 page, 1 line" in chosen.output
    assert names(engine) == ["box1/letter.pdf"]
    assert not store.exists(storage.source_key("b" * 64)) and store.exists(storage.source_key("a" * 64))


def test_an_unfinished_redo_reading_goes_with_its_document(home):
    engine, store = home
    doc_id = document(engine, store, "letter.pdf", "c" * 64, "earlier reading")
    with session_scope(engine) as s:
        redo_id, _ = readings.begin_redo(s, repo.get_document(s, doc_id))
        key = storage.page_key("c" * 64, "p1", 1, reading=redo_id)
        repo.save_page(s, redo_id, number=1, image_key=key, width=100, height=50, dpi=150, angle=0.0)
    store.put_bytes(key, b"x")
    result = CliRunner().invoke(app, ["delete", doc_id, "--yes"])
    assert result.exit_code == 0, result.output
    assert names(engine) == [] and not store.exists(key)
    assert list(store.list("documents/")) == []


def run_on_terminal(args: list[str], answer: bytes, env: dict[str, str]) -> tuple[int, str]:
    """`quire ARGS` with a terminal for its stdin and output, answering its question."""
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], stdin=child, stdout=child,
                            stderr=child, env=env, close_fds=True)
    os.close(child)
    os.write(main, answer)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the command ended: the terminal is closed
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    return proc.wait(60), output.decode(errors="replace")


def test_on_a_terminal_it_asks_first(home, tmp_path):
    engine, store = home
    doc_id = document(engine, store, "letter.pdf", "d" * 64, "a letter")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    code, output = run_on_terminal(["delete", "letter.pdf"], b"n\n", env)
    assert code == 1 and f"letter.pdf ({doc_id})" in output and "nothing deleted" in output, output
    assert names(engine) == ["letter.pdf"]
    code, output = run_on_terminal(["delete", "letter.pdf"], b"y\n", env)
    assert code == 0 and f"deleted letter.pdf ({doc_id})" in output, output
    assert names(engine) == []
