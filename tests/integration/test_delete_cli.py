"""`quire delete` on the embedded default: a document `quire run` read goes from the rows, the
search index and the store; another document, and the user's --out files, stay."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from pipeline.db import job_rows
from pipeline.db.session import make_engine, session_scope
from tests.cli_home import db_rows, quire, quire_home
from tests.model_fixtures import LETTER_LINES, make_letter_page
from tests.pagegen import make_pdf

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")
DPI = 150


@pytest.fixture
def env(tmp_path, letter_reader, monkeypatch):
    yield from quire_home(tmp_path, letter_reader, DPI, monkeypatch)


def stored(home: Path) -> set[str]:
    root = home / "store"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def fts_hits(home: Path, word: str) -> int:
    # The FTS5 index itself, not the search query's join: a line deleted without its index
    # entry would still match here.
    return db_rows(home, f"SELECT count(*) FROM lines_fts WHERE lines_fts MATCH '{word}'")[0][0]


def test_delete_removes_a_documents_rows_index_entries_and_objects_only(tmp_path, env):
    box = tmp_path / "box"
    box.mkdir()
    make_pdf([make_letter_page(DPI)], box / "letter.pdf", dpi=DPI)
    Image.fromarray(make_letter_page(DPI)).save(box / "scan.png")  # the same words, other bytes
    out = tmp_path / "out"
    ran = quire("run", str(box), "--out", str(out), "--format", "txt,json", "--no-progress")
    assert ran.exit_code == 0, ran.output
    [(letter, sha)] = db_rows(env, "SELECT id, sha256 FROM documents WHERE name = 'box/letter.pdf'")
    [(scan, scan_sha)] = db_rows(env, "SELECT id, sha256 FROM documents WHERE name = 'box/scan.png'")
    letter_keys = {k for k in stored(env) if k.startswith(f"documents/{sha}/")}
    scan_keys = stored(env) - letter_keys
    assert f"documents/{sha}/source" in letter_keys and len(letter_keys) >= 4  # + page, txt, json
    assert fts_hits(env, "Holloway") == 2
    viewed = quire("view", "letter.pdf", "--no-serve", "--no-open")
    assert viewed.exit_code == 0 and (env / "viewer" / letter).is_dir(), viewed.output

    # Not on a terminal, it does not guess: --yes or nothing.
    unasked = quire("delete", "letter.pdf")
    assert unasked.exit_code == 2 and "--yes" in unasked.output
    assert len(db_rows(env, "SELECT id FROM documents")) == 2

    # A document in a job still running is refused; the DOC not found is named; the rest go.
    engine = make_engine(f"sqlite:///{env / 'quire.sqlite'}")
    with session_scope(engine) as s:
        running = job_rows.create_job(s, settings={})
        job_rows.link_job_document(s, running.id, scan, 0)
        running.status = "running"
        running_id = running.id
    engine.dispose()
    deleted = quire("delete", "letter.pdf", "no-such.pdf", "scan.png", "--yes")
    assert deleted.exit_code == 1, deleted.output
    assert "no document with id or name 'no-such.pdf'" in deleted.output
    assert f"box/scan.png ({scan}): document box/scan.png ({scan}) is being read now (job {running_id} " \
           "is running)" in deleted.output
    objects = len(letter_keys)
    assert (f"deleted box/letter.pdf ({letter}): 1 page, {len(LETTER_LINES)} lines, 1 job link, "
            f"{objects} stored objects") in deleted.output

    assert db_rows(env, "SELECT id FROM documents") == [(scan,)]
    assert db_rows(env, f"SELECT count(*) FROM pages WHERE document_id = '{letter}'") == [(0,)]
    assert db_rows(env, f"SELECT count(*) FROM job_documents WHERE document_id = '{letter}'") == [(0,)]
    assert db_rows(env, "SELECT count(*) FROM lines") == [(len(LETTER_LINES),)]  # the scan's
    assert db_rows(env, "SELECT count(*) FROM pending_deletions") == [(0,)]
    # Where the file was, and its hash (kept so a rerun need not read it again), go with it.
    assert db_rows(env, "SELECT sha256 FROM file_hashes") == [(scan_sha,)]
    assert fts_hits(env, "Holloway") == 1
    found = quire("search", "Holloway")
    assert found.exit_code == 0 and found.output.splitlines()[0].startswith("box/scan.png\t")
    assert len(found.output.splitlines()) == 1
    assert stored(env) == scan_keys  # the scan's source, page and exports untouched
    assert not (env / "viewer" / letter).exists()
    assert (out / "letter.txt").is_file()  # the user's own output stays theirs
    gone = quire("export", "letter.pdf")
    assert gone.exit_code != 0 and "no document" in gone.output
    assert scan_sha != sha


def test_a_delete_killed_after_its_commit_is_finished_later_sparing_the_file_sent_again(tmp_path, env):
    from pipeline import storage
    from pipeline.config import get_settings
    from pipeline.deletion import remove_rows
    from pipeline.process import JobOptions
    from pipeline.submit import Submitter, iter_local

    pdf = make_pdf([make_letter_page(DPI)], tmp_path / "letter.pdf", dpi=DPI)
    assert quire("run", str(pdf), "--no-progress").exit_code == 0
    [(letter, sha)] = db_rows(env, "SELECT id, sha256 FROM documents")
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url())
    store = storage.open_store(settings.resolved_storage_url())
    # What a `quire delete` killed right after its transaction had done: rows gone, the keys
    # recorded, every object still there.
    removal = remove_rows(engine, store, letter)
    assert removal.keys == len(stored(env)) >= 3
    assert db_rows(env, "SELECT count(*) FROM documents") == [(0,)]
    assert db_rows(env, "SELECT count(*) FROM pending_deletions") == [(1,)]

    # Meanwhile the same file is sent again (`quire submit`), to be read at another dpi: a new
    # document, whose source is at the same key (found there, so not stored again).
    options = JobOptions.from_settings(settings, dpi=2 * DPI)
    submitter = Submitter(engine, store, options, enqueue=lambda *a: None)
    job_id, _ = submitter.open_job()
    [src] = iter_local([pdf])
    assert submitter.add(job_id, src) == "queued"
    engine.dispose()

    # The next command that deletes (here one for a name it does not find) finishes the record
    # first: the deleted reading's page image and exports go, the source is the new document's.
    again = quire("delete", "nothing-by-this-name.pdf", "--yes")
    assert again.exit_code == 1 and "nothing-by-this-name.pdf" in again.output
    assert stored(env) == {f"documents/{sha}/source"}
    assert db_rows(env, "SELECT count(*) FROM pending_deletions") == [(0,)]
