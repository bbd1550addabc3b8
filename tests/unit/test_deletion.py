"""pipeline.deletion on both backends and a real store: what a deleted document's jobs say after."""

from __future__ import annotations

import hashlib

from pipeline import deletion, storage
from pipeline.api.views import job_view
from pipeline.db import job_rows, repo, runs
from pipeline.db.session import session_scope
from pipeline.types import BBox

SHA = hashlib.sha256(b"letter").hexdigest()
SHA2 = hashlib.sha256(b"scan").hexdigest()


def read_document(s, job_id: str, sha: str, name: str, position: int) -> str:
    doc, _ = repo.upsert_document(s, sha256=sha, profile="p1", name=name, source_uri=name, size_bytes=1)
    job_rows.link_job_document(s, job_id, doc.id, position, name)
    page = repo.save_page(s, doc.id, number=1, image_key=storage.page_key(sha, "p1", 1),
                          width=100, height=50, dpi=150, angle=0.0)
    [line] = repo.save_lines(s, page.id, [(0, BBox(0, 0, 90, 8), None)])
    repo.set_line_texts(s, [(line.id, "words", 0.9)], "m")
    repo.finish_document(s, doc.id, 1)
    return doc.id


def test_a_finished_quire_run_no_longer_counts_a_deleted_document(engine, tmp_path) -> None:
    """A `quire run` job counts the files it was given (local_run inputs), not only those linked,
    so that a stopped run's files not reached yet are pending. A file deleted since is neither
    reached nor to come: the finished run must not show it pending for ever."""
    store = storage.LocalStore(tmp_path / "store")
    with session_scope(engine) as s:
        job = job_rows.create_job(s, settings={}, local_run=runs.local_run({"pid": 1, "host": "h"}, 2))
        letter = read_document(s, job.id, SHA, "letter.pdf", 0)
        read_document(s, job.id, SHA2, "scan.png", 1)
        job_rows.update_job_counts(s, job.id)
        job_id = job.id
    deletion.delete_document(engine, store, letter)
    with session_scope(engine) as s:
        view = job_view(s, job_rows.get_job(s, job_id))
    assert view["status"] == "done"
    assert view["documents_count"] == {"total": 1, "done": 1, "failed": 0, "pending": 0}
    assert view["percent"] == 100.0


def test_a_file_sent_while_its_only_copy_is_deleted_keeps_its_source(engine, s3_server, s3_bucket,
                                                                    tmp_path, monkeypatch) -> None:
    """Bob sends the bytes Alice's document holds, and Alice deletes hers between Bob's upload (the
    source was there: not uploaded again) and Bob's document row: the deletion removes the source,
    and Bob's new document of those bytes must still find it to be read."""
    from pipeline import submit
    from pipeline.process import JobOptions

    store = storage.S3Store(s3_bucket, endpoint_url=s3_server)
    path = tmp_path / "letter.png"
    path.write_bytes(b"letter bytes")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    options = JobOptions("m", 150, 1)
    alice = submit.Submitter(engine, store, options, owner="alice", enqueue=lambda *a: None)
    alice_job, _ = alice.open_job()
    alice.add(alice_job, next(submit.iter_local([path])))
    alice.close_job(alice_job)
    with session_scope(engine) as s:
        [old] = job_rows.job_documents(s, alice_job)
        repo.finish_document(s, old.id, 0)
        job_rows.update_job_counts(s, alice_job)
        old_id = old.id

    stored = submit.store_source

    deleted: list[bool] = []

    def then_alice_deletes(store_: storage.ObjectStore, src: submit.Source) -> tuple[str, int]:
        found = stored(store_, src)
        if not deleted:  # the first store_source only: Alice's delete comes in once
            deleted.append(deletion.delete_document(engine, store, old_id, tenant="alice").outright)
        return found

    monkeypatch.setattr(submit, "store_source", then_alice_deletes)
    bob = submit.Submitter(engine, store, options, owner="bob", enqueue=lambda *a: None)
    bob_job, _ = bob.open_job()
    assert bob.add(bob_job, next(submit.iter_local([path]))) == "queued"
    with session_scope(engine) as s:
        [new] = job_rows.job_documents(s, bob_job)
        assert new.id != old_id and new.sha256 == sha
    assert deleted == [True]
    assert store.exists(storage.source_key(sha))  # what Bob's ingest reads
