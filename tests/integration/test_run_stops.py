"""`quire run` stopped every way a user can stop it (kill -9, Ctrl-C twice), as a real process on
real SQLite: what was read before survives, `quire status` says what happened, and the same command
goes on where it stopped."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_home import db_rows, quire, quire_home
from tests.model_fixtures import LETTER_LINES, make_letter_page
from tests.pagegen import make_pdf

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")
DPI = 150


@pytest.fixture
def env(tmp_path, letter_reader, monkeypatch) -> Iterator[Path]:
    yield from quire_home(tmp_path, letter_reader, DPI, monkeypatch)


def letters(folder: Path, pages: list[int]) -> Path:
    folder.mkdir()
    for n, count in enumerate(pages):
        make_pdf([make_letter_page(DPI)] * count, folder / f"doc{n}.pdf", dpi=DPI)
    return folder


def start_run(*args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipeline.cli", "run", *args, "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(home: Path, proc: subprocess.Popen, sql: str, timeout: float = 180) -> None:
    """Until `sql` (one number) is above zero, with the run still going."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if db_rows(home, sql)[0][0]:
                return
        except sqlite3.OperationalError:  # not made yet, or being written
            pass
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the run ended or took too long before it could be stopped: {proc.communicate()[0]}")


def kill_9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def page_images(home: Path) -> dict[str, dict[str, bytes]]:
    """Each document's stored page images, by the key its reading names (not a --redo's in
    progress), by document name."""
    images: dict[str, dict[str, bytes]] = {}
    for name, key in db_rows(home, "SELECT d.name, p.image_key FROM pages p JOIN documents d "
                                   "ON d.id = p.document_id WHERE d.redo_of IS NULL ORDER BY p.image_key"):
        images.setdefault(name, {})[key] = (home / "store" / key).read_bytes()
    return images


def mark(image: Path) -> None:
    """A mark in the image's corner: the page as an earlier render (another poppler) made it,
    which a new render of the same page does not repeat."""
    from PIL import Image, ImageDraw

    with Image.open(image) as page:
        page = page.convert("L")
    ImageDraw.Draw(page).rectangle((0, 0, 40, 40), fill=0)
    page.save(image, format="PNG")


def viewed(tmp_path: Path, name: str) -> bytes:
    target = tmp_path / "views" / (name.replace("/", "_") + ".html")
    shown = quire("view", name, "--out", str(target), "--no-serve", "--no-open")
    assert shown.exit_code == 0, shown.output
    return target.read_bytes()


def test_a_redo_killed_outright_keeps_the_earlier_reading_and_the_same_command_goes_on(tmp_path, env):
    """`quire run --redo` deleted a document's pages and lines before reading it again and kept
    the earlier reading in memory only: killed, `export` said the document was processing and
    `search` found nothing; run again, it read every page from the start. Then it wrote its page
    images over the earlier reading's: killed, the earlier reading showed the new images."""
    docs = letters(tmp_path / "in", [6, 7, 8])
    assert quire("run", str(docs), "--no-progress").exit_code == 0
    names = [f"in/doc{n}.pdf" for n in range(3)]
    before = {name: quire("export", name).stdout for name in names}
    assert all(text.count("\f") >= 5 for text in before.values())
    [(lines, last_line)] = db_rows(env, "SELECT count(*), max(id) FROM lines")
    for key in (key for keys in page_images(env).values() for key in keys):
        mark(env / "store" / key)
    images = page_images(env)
    assert sorted(images) == names and sum(map(len, images.values())) == 21
    views = {name: viewed(tmp_path, name) for name in names}

    redo = start_run(str(docs), "--redo")
    # The first recognition batch (32 lines: doc0 and two pages of doc1) is read, then kill -9.
    wait_for(env, redo, f"SELECT count(*) >= 32 FROM lines WHERE id > {last_line} AND status = 'done'")
    kill_9(redo)

    for name, text in before.items():  # every earlier reading is there, whole
        exported = quire("export", name)
        assert exported.exit_code == 0 and exported.stdout == text, exported.output
    # doc1 was being read again (doc0 may have been read whole and taken its earlier reading's
    # place): each unfinished one's earlier reading has its own page images, byte for byte.
    unfinished = [name for (name,) in db_rows(env, "SELECT name FROM documents WHERE redo_of IS NOT NULL")]
    assert "in/doc1.pdf" in unfinished
    now = page_images(env)
    for name in unfinished:
        assert now[name] == images[name]
        assert viewed(tmp_path, name) == views[name]  # shown with them
    # The killed run's pages are stored apart, under the new readings' own keys.
    redone = db_rows(env, "SELECT p.image_key FROM pages p JOIN documents d ON d.id = p.document_id "
                          "WHERE d.redo_of IS NOT NULL")
    assert len(redone) >= 2 and all("/readings/" in key for (key,) in redone)
    found = quire("search", "Holloway").stdout
    assert all(f"{name}\tpage 1\t" in found for name in names), found

    # Without --redo, the documents are done: their readings are kept, and it says why.
    plain = quire("run", str(docs), "--no-progress")
    assert plain.exit_code == 0 and "3 already done (skipped)" in plain.output, plain.output
    assert "a --redo of it was stopped; `quire run --redo` goes on with it" in plain.output

    # The same command goes on: pages the killed --redo had read are not read again.
    again = quire("run", str(docs), "--redo", "--no-progress")
    assert again.exit_code == 0 and "3 documents: 3 done" in again.output, again.output
    assert "went on where a stopped run left it (2 pages read then, not again)" in again.output
    [(redo_job,)] = db_rows(env, "SELECT id FROM jobs WHERE status = 'stopped'")
    assert f"went on from job {redo_job}" in again.output
    assert {name: quire("export", name).stdout for name in names} == before
    assert db_rows(env, "SELECT count(*) FROM lines") == [(lines,)]  # one reading each, not two
    assert db_rows(env, "SELECT count(*), min(status) FROM documents") == [(3, "done")]
    # Complete, the new readings name their own page images; the earlier ones are deleted.
    adopted = {key for keys in page_images(env).values() for key in keys}
    assert len(adopted) == 21 and all("/readings/" in key for key in adopted)
    # (Those the killed run had adopted went then, or, killed between the adoption and their
    # deletion, with this run, which finished what it had recorded to delete.)
    assert not any((env / "store" / key).exists() for keys in images.values() for key in keys)
    assert {key for (key,) in redone} <= adopted  # what the killed run had rendered is kept
    assert all(viewed(tmp_path, name) != views[name] for name in names)  # unmarked pages now


# `quire run` as a process that is killed (kill -9) at its Nth deletion from the store, as a power
# cut there would: deletions one at a time, so the Nth is reached after N-1 are done.
KILLED_AT_DELETE = """
import os, signal, threading
from pipeline import storage
from pipeline.cli import main
calls, lock, delete = [0], threading.Lock(), storage.LocalStore.delete
def deleting(self, key):
    with lock:
        calls[0] += 1
        if calls[0] >= int(os.environ["KILL_AT_DELETE"]):
            os.kill(os.getpid(), signal.SIGKILL)
        delete(self, key)
storage.LocalStore.delete = deleting
main()
"""


def run_killed_at_delete(number: int, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", KILLED_AT_DELETE, "run", *args, "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "KILL_AT_DELETE": str(number)})


@pytest.mark.parametrize("backend", ["home", "postgres_url"])
def test_a_redo_killed_after_its_adoption_leaves_the_next_run_to_delete_the_earlier_images(
        tmp_path, env, backend, request, monkeypatch):
    """A `--redo` killed after its new reading took the earlier one's place and before the earlier
    reading's page images were deleted left them in the store for good: nothing named them."""
    from sqlalchemy import text

    from pipeline.config import get_settings
    from pipeline.db.session import open_database
    from pipeline.storage import LocalStore

    url = f"sqlite:///{env / 'quire.sqlite'}"
    if backend == "postgres_url":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("QUIRE_DATABASE_URL", url)
        get_settings.cache_clear()
    engine = open_database(url, migrate=True)
    store = LocalStore(env / "store")

    def rows(sql: str) -> list[tuple]:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]

    def images() -> list[str]:
        return [key for (key,) in rows("SELECT image_key FROM pages ORDER BY image_key")]

    docs = letters(tmp_path / "in", [3])
    try:
        assert quire("run", str(docs), "--no-progress").exit_code == 0
        before = quire("export", "in/doc0.pdf").stdout
        assert before.count("\f") == 2 and LETTER_LINES[0] in before
        earlier = images()
        folder = earlier[0].rsplit("/", 1)[0] + "/"  # documents/<sha256>/<profile>/pages/
        assert len(earlier) == 3 and all(key.startswith(folder) for key in earlier)

        redo = run_killed_at_delete(1, str(docs), "--redo")  # killed at its first deletion
        redo.communicate(timeout=300)
        assert redo.returncode == -signal.SIGKILL
        adopted = images()  # the new reading is the document's: its rows name its own images
        assert len(adopted) == 3 and all("/readings/" in key for key in adopted)
        assert rows("SELECT count(*) FROM documents") == [(1,)]
        assert all(store.exists(key) for key in earlier)  # not one deleted

        # The next run finishes those deletions first; killed again during them, that is fine.
        again = run_killed_at_delete(2, str(docs))
        output = again.communicate(timeout=300)[0]
        assert again.returncode == -signal.SIGKILL, f"it deleted none of the earlier images: {output}"
        assert sum(store.exists(key) for key in earlier) == 2

        last = quire("run", str(docs), "--no-progress")
        assert last.exit_code == 0 and "1 already done (skipped)" in last.output, last.output
        assert [info.key for info in store.list(folder)] == []
        assert rows("SELECT count(*) FROM pending_deletions") == [(0,)]
        assert images() == adopted and all(store.exists(key) for key in adopted)
        assert quire("export", "in/doc0.pdf").stdout == before
    finally:
        engine.dispose()


def test_a_run_killed_outright_shows_as_stopped_and_the_next_run_says_it_went_on(tmp_path, env):
    """A killed run's job stayed 'queued' in `quire status` (its documents 'processing') until
    another run finished them, and then turned 'done, 100 %' over the files it had reached."""
    docs = letters(tmp_path / "in", [1, 6, 6, 6])
    proc = start_run(str(docs))
    wait_for(env, proc, "SELECT count(*) FROM documents WHERE status = 'done'")
    kill_9(proc)
    [(job_id,)] = db_rows(env, "SELECT id FROM jobs")

    shown = quire("status", job_id)
    assert shown.exit_code == 0 and f"job {job_id}: stopped, " in shown.output, shown.output
    assert "of 4 documents" in shown.output  # the files it never reached count too
    assert f"quire run (pid {proc.pid} on " in shown.output
    assert "ended without finishing (killed, or its machine stopped), after reaching" in shown.output
    assert "the same command goes on from there" in shown.output
    assert db_rows(env, "SELECT count(*) FROM documents WHERE status = 'processing'") == [(0,)]
    assert "stopped, 100" not in shown.output and " 0 failed" in shown.output  # no file failed
    assert "UNFINISHED in/doc" in shown.output and "killed, or its machine stopped" in shown.output

    again = quire("run", str(docs), "--no-progress")
    assert again.exit_code == 0 and "4 documents:" in again.output, again.output
    assert f"went on from job {job_id}, stopped before it finished" in again.output
    assert db_rows(env, "SELECT count(*) FROM documents WHERE status = 'done'") == [(4,)]
    later = quire("status", job_id).output
    assert f"job {job_id}: stopped, " in later and "went on from there" in later, later


def test_a_second_ctrl_c_ends_the_run_with_130_at_once_and_the_stop_recorded(tmp_path, env):
    """A second Ctrl-C while the first was being handled ended the process by the signal (status
    -2 to its parent), or cut short the recording of the stop: the job stayed 'queued' and its
    documents 'processing'."""
    docs = letters(tmp_path / "in", [1, 6, 6, 6])
    proc = start_run(str(docs))
    wait_for(env, proc, "SELECT count(*) FROM documents WHERE status = 'done'")
    started = time.monotonic()
    while proc.poll() is None and time.monotonic() - started < 30:  # Ctrl-C, again and again
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert time.monotonic() - started < 15, "the second Ctrl-C did not end it promptly"
    assert "interrupted; documents and pages finished so far are kept" in output and "Traceback" not in output

    [(job_id, status)] = db_rows(env, "SELECT id, status FROM jobs")
    assert status == "stopped"
    assert db_rows(env, "SELECT count(*) FROM documents WHERE status IN ('pending', 'processing')") == [(0,)]
    again = quire("run", str(docs), "--no-progress")
    assert again.exit_code == 0 and f"went on from job {job_id}" in again.output, again.output
    assert db_rows(env, "SELECT count(*) FROM documents WHERE status = 'done'") == [(4,)]
    assert "\n".join(LETTER_LINES) in quire("export", "in/doc3.pdf").stdout


@pytest.mark.parametrize("backend", ["home", "postgres_url"])
def test_a_run_killed_on_another_host_is_told_stopped_by_its_heartbeat(tmp_path, env, backend, request,
                                                                      monkeypatch):
    """With one database for several machines, a run killed on one stayed 'running' for ever seen
    from the others: only the machine it ran on can look at its process."""
    from datetime import timedelta

    from pipeline.config import get_settings
    from pipeline.db import runs
    from pipeline.db.models import Job
    from pipeline.db.session import open_database, session_scope

    url = f"sqlite:///{env / 'quire.sqlite'}"
    if backend == "postgres_url":  # the shared database the heartbeat is for
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("QUIRE_DATABASE_URL", url)
    monkeypatch.setenv("QUIRE_RUN__HEARTBEAT_SECONDS", "1")
    get_settings.cache_clear()
    engine = open_database(url, migrate=True)  # made here: looked into before the run makes it

    def job() -> Job:
        with session_scope(engine) as s:
            found = s.query(Job).one_or_none()
            s.expunge_all()
            return found

    docs = letters(tmp_path / "in", [1, 6, 6, 6])
    proc = start_run(str(docs))
    deadline = time.monotonic() + 180
    while (job() is None or job().heartbeat_at is None) and time.monotonic() < deadline:
        time.sleep(0.1)
    first = job().heartbeat_at
    while job().heartbeat_at == first and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job().heartbeat_at > first, "the running run did not renew its heartbeat"
    kill_9(proc)

    # As host B sees it: the run's record names another machine, whose processes it cannot see.
    job_id = job().id
    with session_scope(engine) as s:
        killed = s.get(Job, job_id)
        killed.local_run = {**killed.local_run, "host": "scanner-2", "boot": "another-boot"}
    shown = quire("status", job_id)
    assert shown.exit_code == 0 and "stopped" not in shown.output, shown.output  # 1 s ago: it may run

    with session_scope(engine) as s:  # ... until it has been silent longer than the limit
        s.get(Job, job_id).heartbeat_at = runs.database_now(s) - timedelta(minutes=7)
    shown = quire("status", job_id)
    assert shown.exit_code == 0 and f"job {job_id}: stopped, " in shown.output, shown.output
    assert (f"quire run (pid {proc.pid} on scanner-2) sent no heartbeat for 7 min (the limit is 5 min), "
            "so it is taken as ended (killed, its machine stopped, or cut off from the database)") in shown.output
    assert "UNFINISHED in/doc" in shown.output and "stopped sending heartbeats" in shown.output
    assert job().local_run["stopped"] == runs.BY_SILENCE

    again = quire("run", str(docs), "--no-progress")  # the same command, here: it goes on
    assert again.exit_code == 0 and f"went on from job {job_id}" in again.output, again.output
