"""Deleting a document while the same file is sent again, or while its ingest runs, on both
backends and a real S3 server: each pair of operations is interleaved on purpose (one is started
from a hook inside the other and let run as far as it can), and whatever order the locks give
them, the new submission is read whole, the deleted document is gone, and nothing raises."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline import cleanup, deletion, storage, submit
from pipeline.db import job_rows, repo
from pipeline.db import jobs as jobrepo
from pipeline.db.session import session_scope
from pipeline.process import JobOptions
from pipeline.queue import RECOGNIZE
from pipeline.types import BBox

# How long a hook lets the operation it started run before going on: long enough for it to
# finish when nothing holds it back (the races as they were), and when a lock holds it back,
# the hook goes on after this and the operation finishes once the lock is free.
LET_RUN_S = 2.0
OPTIONS = JobOptions("m", 150, 1)


class Started:
    """An operation run in a thread of its own, once, from inside another one's hook."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call, self.result, self.error = call, None, None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which asserts on it
            self.error = exc
        finally:
            self.done.set()

    def start_once(self) -> None:
        """Start it (the first call only) and let it run up to LET_RUN_S."""
        if self.thread.ident is None:
            self.thread.start()
            self.done.wait(LET_RUN_S)

    def outcome(self) -> Any:
        self.thread.join(60)
        assert self.done.is_set(), "the operation started in the hook never ended"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def store(s3_server, s3_bucket) -> storage.S3Store:
    return storage.S3Store(s3_bucket, endpoint_url=s3_server, prefix="store")


@pytest.fixture
def letter(tmp_path) -> Path:
    path = tmp_path / "letter.png"
    path.write_bytes(b"the bytes of a scanned letter")
    return path


def send(engine, store, tenant: str, path: Path) -> tuple[str, str, str]:
    """`tenant` submits the file: (job id, document id, outcome)."""
    sender = submit.Submitter(engine, store, OPTIONS, owner=tenant, enqueue=lambda *a: None)
    job_id, _ = sender.open_job()
    outcome = sender.add(job_id, next(submit.iter_local([path])))
    sender.close_job(job_id)
    with session_scope(engine) as s:
        [doc] = job_rows.job_documents(s, job_id)
        return job_id, doc.id, outcome


def read(engine, store, document_id: str, page: bytes, text: str) -> None:
    """What an ingest and recognize do for a one-page document: the page image into the store,
    then its rows, with the text; the document and its jobs done."""
    with session_scope(engine) as s:
        doc = jobrepo.begin_ingest(s, document_id)
        key = storage.page_key(doc.sha256, doc.profile, 1)
    store.put_bytes(key, page)
    with session_scope(engine) as s:
        row = repo.save_page(s, document_id, number=1, image_key=key, width=100, height=50,
                             dpi=150, angle=0.0)
        [line] = repo.save_lines(s, row.id, [(0, BBox(0, 0, 90, 8), None)])
        repo.set_line_texts(s, [(line.id, text, 0.9)], "m")
        repo.finish_document(s, document_id, 1)
        for job_id in job_rows.job_ids_for_document(s, document_id):
            jobrepo.refresh_job(s, job_id)


def sent_and_read(engine, store, tenant: str, path: Path, page: bytes, text: str) -> str:
    _, document_id, _ = send(engine, store, tenant, path)
    read(engine, store, document_id, page, text)
    return document_id


def text_of(engine, document_id: str) -> list[str]:
    with session_scope(engine) as s:
        return [ln.text for p in repo.load_document_result(s, document_id).pages for ln in p.lines]


def count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_a_clean_up_that_judged_keys_unused_spares_them_once_the_file_is_sent_again(
        engine, store, letter, monkeypatch) -> None:
    """Alice's delete has committed; its clean-up finds no document of those bytes, so the source
    and the page image are unused, and is about to delete them when Bob sends the same file with
    the same settings, and it is read: the new document has the same (deterministic) keys, and
    must keep them."""
    sha = hashlib.sha256(letter.read_bytes()).hexdigest()
    alices = sent_and_read(engine, store, "alice", letter, b"alice's page", "Dear Alice")
    page = storage.page_key(sha, OPTIONS.profile, 1)
    removal = deletion.remove_rows(engine, store, alices, tenant="alice")
    assert removal.deletion is not None and removal.keys == 2  # the source and the page image

    bob = Started(lambda: sent_and_read(engine, store, "bob", letter, b"bob's page", "Dear Bob"))
    real = storage.delete_many

    def judged_then_bob_sends(store_: storage.ObjectStore, keys, *args, **kwargs) -> None:
        bob.start_once()
        real(store_, keys, *args, **kwargs)

    monkeypatch.setattr(storage, "delete_many", judged_then_bob_sends)
    cleanup.finish_deletions(engine, store, [removal.deletion])
    bobs = bob.outcome()
    assert bobs != alices
    assert text_of(engine, bobs) == ["Dear Bob"]
    assert store.exists(storage.source_key(sha))  # what Bob's ingest reads
    assert store.get_bytes(page) == b"bob's page"
    assert count(engine, "SELECT count(*) FROM pending_deletions") == 0


def test_a_delete_coming_while_the_file_is_sent_again_leaves_it_to_the_sender(
        engine, store, letter, monkeypatch) -> None:
    """Bob sends the file Alice's done document holds, and Alice deletes hers just after Bob's
    submission found that document: Bob's submission must not fail on a document gone under it,
    and what Bob is told he has (reused, read) must be there after."""
    sha = hashlib.sha256(letter.read_bytes()).hexdigest()
    alices = sent_and_read(engine, store, "alice", letter, b"alice's page", "Dear Alice")
    alice = Started(lambda: deletion.delete_document(engine, store, alices, tenant="alice"))
    real = repo.upsert_document

    def found_then_alice_deletes(s, **kwargs):
        found = real(s, **kwargs)
        alice.start_once()
        return found

    monkeypatch.setattr(repo, "upsert_document", found_then_alice_deletes)
    bob_job, bobs, outcome = send(engine, store, "bob", letter)
    deleted = alice.outcome()
    # Bob's link came first: Alice's delete lets go of her link only.
    assert (outcome, bobs) == ("reused", alices)
    assert not deleted.outright and deleted.as_dict()["outcome"] == "unlinked"
    assert text_of(engine, bobs) == ["Dear Alice"]
    assert store.exists(storage.source_key(sha))
    assert store.exists(storage.page_key(sha, OPTIONS.profile, 1))
    with session_scope(engine) as s:
        assert job_rows.get_job(s, bob_job).documents_done == 1


def test_a_file_sent_again_while_its_document_is_deleted_becomes_a_new_document(
        engine, store, letter, monkeypatch) -> None:
    """The other order: Alice's delete has locked her document and is deleting it when Bob sends
    the same file. Bob's submission must not fail on the document going; it makes a new one,
    which is read whole."""
    sha = hashlib.sha256(letter.read_bytes()).hexdigest()
    alices = sent_and_read(engine, store, "alice", letter, b"alice's page", "Dear Alice")
    bob = Started(lambda: send(engine, store, "bob", letter))
    real = deletion.deletions.plan_removal

    def locked_then_bob_sends(s, document_id, tenant=None):
        plan = real(s, document_id, tenant)
        bob.start_once()
        return plan

    monkeypatch.setattr(deletion.deletions, "plan_removal", locked_then_bob_sends)
    deleted = deletion.delete_document(engine, store, alices, tenant="alice")
    _, bobs, outcome = bob.outcome()
    assert deleted.outright and (outcome, bobs != alices) == ("queued", True)
    read(engine, store, bobs, b"bob's page", "Dear Bob")
    deletion.finish_pending(engine, store)  # whatever clean-up is left: none of it is Bob's
    assert text_of(engine, bobs) == ["Dear Bob"]
    assert count(engine, "SELECT count(*) FROM documents") == 1
    assert store.exists(storage.source_key(sha))
    assert store.get_bytes(storage.page_key(sha, OPTIONS.profile, 1)) == b"bob's page"
    assert count(engine, "SELECT count(*) FROM pending_deletions") == 0


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")
def test_a_document_deleted_while_its_ingest_runs_ends_the_ingest_quietly(
        engine, store, tmp_path, monkeypatch) -> None:
    """Alice cancels her job while its ingest is between pages (the document goes back to
    pending), and deletes the document: the ingest, writing the next page, must stop without an
    error, and what it wrote after the delete listed the store must not be left there."""
    from pipeline.config import get_settings
    from tests.model_fixtures import make_letter_page
    from tests.pagegen import make_pdf

    monkeypatch.setenv("QUIRE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("QUIRE_QUEUE__RECOGNIZE_BATCH", "1")  # the first page's lines go out at once
    get_settings.cache_clear()
    from workers import tasks

    tasks._CACHE.clear()
    tasks._CACHE["engine"], tasks._CACHE["store"] = engine, store
    sent: list[tuple] = []
    monkeypatch.setattr(tasks, "send", lambda *args: sent.append(args))
    pdf = make_pdf([make_letter_page(150)] * 2, tmp_path / "two.pdf", dpi=150)
    sha = hashlib.sha256(pdf.read_bytes()).hexdigest()
    job_id, document_id, _ = send(engine, store, "alice", pdf)
    real = tasks.ingest_pages
    deleted: list[bool] = []

    def deleted_after_the_first_page(*args, **kwargs):
        pages = real(*args, **kwargs)
        yield next(pages)
        with session_scope(engine) as s:
            jobrepo.cancel_job(s, job_id)
        deleted.append(deletion.delete_document(engine, store, document_id, tenant="alice").outright)
        yield from pages

    monkeypatch.setattr(tasks, "ingest_pages", deleted_after_the_first_page)
    try:
        tasks.ingest_document.run(document_id, job_id)
    finally:
        tasks._CACHE.clear()
        get_settings.cache_clear()
    assert deleted == [True]
    assert count(engine, "SELECT count(*) FROM documents") == 0
    assert count(engine, "SELECT count(*) FROM pages") == 0
    assert list(store.list(f"documents/{sha}/")) == []  # page 2's image and crops too
    assert count(engine, "SELECT count(*) FROM pending_deletions") == 0
    tasks._CACHE["engine"], tasks._CACHE["store"] = engine, store
    try:  # its message delivered again, the first page's lines sent to be read, a finish: no error
        tasks.ingest_document.run(document_id, job_id)
        for task, *args in sent:
            if task == RECOGNIZE:
                tasks.recognize_lines.run(*args)
        tasks.finish_document_task.run(document_id)
    finally:
        tasks._CACHE.clear()
    assert any(task == RECOGNIZE for task, *_ in sent)


def test_a_clean_up_goes_a_batch_at_a_time_and_keeps_what_is_left_when_the_store_fails(
        engine, store, monkeypatch) -> None:
    """Each batch is judged and deleted under the content lock in a transaction of its own: the
    batches done are off the record, and the store failing leaves the rest on it for the next run."""
    from pipeline.db import readings
    from pipeline.errors import StorageError

    sha = hashlib.sha256(b"gone").hexdigest()
    keys = {storage.page_key(sha, OPTIONS.profile, n) for n in range(1, 6)} | {storage.source_key(sha)}
    for key in keys:
        store.put_bytes(key, b"png")
    with session_scope(engine) as s:
        deletion = readings.record_deletion(s, "a-deleted-document", keys)
    assert deletion is not None
    monkeypatch.setattr(cleanup, "BATCH_KEYS", 2)
    real, batches = storage.delete_many, []

    def fails_on_the_third_batch(store_, batch, *args, **kwargs):
        batches.append(len(batch))
        if len(batches) == 3:
            raise StorageError("the store is down")
        real(store_, batch, *args, **kwargs)

    monkeypatch.setattr(storage, "delete_many", fails_on_the_third_batch)
    assert cleanup.finish_deletions(engine, store, [deletion]) == 4
    with session_scope(engine) as s:
        found = readings.deletion_keys(s, deletion)
    assert found is not None and len(found[1]) == 2
    assert {info.key for info in store.list("documents/")} == set(found[1])
    monkeypatch.setattr(storage, "delete_many", real)
    assert cleanup.finish_deletions(engine, store, [deletion]) == 2
    assert list(store.list("documents/")) == []
    assert count(engine, "SELECT count(*) FROM pending_deletions") == 0
