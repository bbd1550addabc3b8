"""A --redo's new reading in its own row, and the jobs of stopped runs, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from pipeline import cleanup
from pipeline.db import job_rows, readings, repo, runs
from pipeline.db.models import Document, Line
from pipeline.db.search import search_lines
from pipeline.db.session import session_scope
from pipeline.storage import LocalStore, S3Store
from pipeline.types import BBox

SHA = hashlib.sha256(b"a").hexdigest()


def read_page(s, document_id: str, number: int, words: str, key: str = "") -> None:
    page = repo.save_page(s, document_id, number=number, image_key=key or f"{words}/{number}", width=100,
                          height=200, dpi=300, angle=0.0)
    lines = repo.save_lines(s, page.id, [(i, BBox(0, 10 * i, 50, 10 * i + 8), None) for i in range(2)])
    repo.set_line_texts(s, [(ln.id, f"{words} {ln.position}", 0.9) for ln in lines], model="m")


def recorded(s, deletion: int | None) -> tuple[str, list[str]] | None:
    """What a pending deletion lists: (document id, store keys)."""
    assert deletion is not None
    return readings.deletion_keys(s, deletion)


def texts(s, document_id: str) -> list[str]:
    return [ln.text for p in repo.load_document_result(s, document_id).pages for ln in p.lines]


def test_a_new_reading_stays_apart_until_complete_then_replaces_the_earlier_at_once(engine) -> None:
    with session_scope(engine) as s:
        doc, _ = repo.upsert_document(s, sha256=SHA, profile="p1", name="a.pdf",
                                      source_uri="file:///a.pdf", size_bytes=10)
        for number in (1, 2):
            read_page(s, doc.id, number, "earlier")
        repo.finish_document(s, doc.id, 2)
        redo, kept = readings.begin_redo(s, doc)
        assert kept == {}
        read_page(s, redo, 1, "newer")
    with session_scope(engine) as s:  # stopped here: the document, its search and export as before
        assert repo.get_document(s, doc.id).status == "done"
        assert texts(s, doc.id) == ["earlier 0", "earlier 1"] * 2
        assert search_lines(s, "newer") == []
        assert {h.document_id for h in search_lines(s, "earlier")} == {doc.id}
        assert readings.begin_redo(s, repo.get_document(s, doc.id)) == (redo, {1: 2})  # goes on
        read_page(s, redo, 2, "newer")
        # The earlier reading's page images, recorded to delete once this is committed.
        assert recorded(s, readings.adopt_redo(s, doc.id, 2)) == (doc.id, ["earlier/1", "earlier/2"])
    with session_scope(engine) as s:
        assert texts(s, doc.id) == ["newer 0", "newer 1"] * 2
        assert search_lines(s, "earlier") == []
        assert {h.document_id for h in search_lines(s, "newer")} == {doc.id}
        assert s.scalar(select(func.count()).select_from(Document)) == 1
        assert s.scalar(select(func.count()).select_from(Line)) == 4
        stored = repo.get_document(s, doc.id)
        assert (stored.status, stored.page_count, stored.pages_done) == ("done", 2, 2)
        # A new reading that fails is dropped; the document keeps the one it has.
        redo, _ = readings.begin_redo(s, stored)
        read_page(s, redo, 1, "broken")
        assert recorded(s, readings.drop_redo(s, doc.id)) == (doc.id, ["broken/1"])
        assert readings.drop_redo(s, doc.id) is None
    with session_scope(engine) as s:
        assert texts(s, doc.id) == ["newer 0", "newer 1"] * 2
        assert s.scalar(select(func.count()).select_from(Line)) == 4
        assert [p.image_key for p in repo.load_document_result(s, doc.id).pages] == ["newer/1", "newer/2"]
        # A --redo begun before readings had keys of their own wrote over the earlier reading's:
        # what it took over is not deleted with the earlier reading, nor when it is dropped.
        redo, _ = readings.begin_redo(s, repo.get_document(s, doc.id))
        read_page(s, redo, 1, "again", key="newer/1")
        assert readings.drop_redo(s, doc.id) is None  # nothing of its own to delete
        redo, _ = readings.begin_redo(s, repo.get_document(s, doc.id))
        read_page(s, redo, 1, "again", key="newer/1")
        read_page(s, redo, 2, "again")
        assert recorded(s, readings.adopt_redo(s, doc.id, 2)) == (doc.id, ["newer/2"])
        assert len(readings.pending_deletions(s)) == 3  # till a caller has deleted the objects


def test_a_killed_run_s_job_is_stopped_and_the_next_run_goes_on_from_it(engine) -> None:
    with session_scope(engine) as s:
        docs = [repo.upsert_document(s, sha256=hashlib.sha256(bytes([n])).hexdigest(), profile="p",
                                     name=f"{n}.pdf", source_uri="file:///x", size_bytes=1)[0].id
                for n in range(3)]
        killed = job_rows.create_job(s, settings={}, local_run=runs.local_run({"pid": 1}, inputs=5))
        other = job_rows.create_job(s, settings={})  # a distributed job also wants document 2
        for position, doc in enumerate(docs):
            job_rows.link_job_document(s, killed.id, doc, position)
            repo.start_document(s, doc)
        job_rows.link_job_document(s, other.id, docs[2], 0)
        repo.finish_document(s, docs[0], 1)
        assert runs.settle_gone_runs(s, lambda run: False) == []  # still running
        assert runs.settle_gone_runs(s, lambda run: run["pid"] == 1) == [killed.id]
        job = job_rows.get_job(s, killed.id)
        assert (job.status, job.local_run["stopped"]) == ("stopped", "killed")
        statuses = [(d.status, d.error) for d in (repo.get_document(s, i) for i in docs)]
        assert statuses == [("done", None), ("failed", runs.KILLED), ("processing", None)]
        assert job_rows.get_job(s, other.id).status == "queued"  # not a quire run's: never settled

        later = job_rows.create_job(s, settings={}, local_run=runs.local_run({"pid": 2}, inputs=3))
        job_rows.link_job_document(s, later.id, docs[1], 0)
        assert runs.went_on(s, later.id) == [killed.id]
        repo.finish_document(s, docs[1], 1)
        assert job_rows.update_job_counts(s, killed.id).status == "stopped"  # not "done" now
        assert job_rows.get_job(s, killed.id).local_run["went_on_in"] == later.id


def test_a_run_on_another_host_is_taken_as_stopped_once_its_heartbeat_is_too_old(engine) -> None:
    """A run killed on host A stayed 'running' for ever seen from host B sharing the database:
    its process cannot be looked at from B. Its heartbeat can."""
    from datetime import timedelta

    from pipeline import run_process

    here = run_process.this_process()
    elsewhere = {**here, "host": here["host"] + "-scanner2", "boot": "another-boot", "pid": 4242}

    def run_job(s, process, name: str, beats: bool = True, heartbeat_s: int = 30):
        job = job_rows.create_job(s, settings={}, local_run=runs.local_run(process, 1, heartbeat_s=heartbeat_s))
        doc, _ = repo.upsert_document(s, sha256=hashlib.sha256(name.encode()).hexdigest(), profile="p",
                                      name=name, source_uri="file:///x", size_bytes=1)
        job_rows.link_job_document(s, job.id, doc.id, 0)
        repo.start_document(s, doc.id)
        if beats:
            assert runs.beat(s, job.id)
        return job.id, doc.id

    def heard(s, job_id: str, ago: timedelta) -> None:
        job_rows.get_job(s, job_id).heartbeat_at = runs.database_now(s) - ago
        s.flush()

    with session_scope(engine) as s:
        fresh, _ = run_job(s, elsewhere, "fresh.pdf")
        silent, silent_doc = run_job(s, elsewhere, "silent.pdf")
        slow, _ = run_job(s, elsewhere, "slow.pdf", heartbeat_s=600)  # beats every 10 min
        older, _ = run_job(s, elsewhere, "older.pdf", beats=False)  # begun before heartbeats
        mine, _ = run_job(s, here, "mine.pdf")  # this very process, on this host
        heard(s, fresh, timedelta(seconds=20))
        for job_id in (silent, slow, mine):
            heard(s, job_id, timedelta(minutes=10))

        assert runs.settle_gone_runs(s, run_process.is_gone, silent_after=300) == [silent]
        job = job_rows.get_job(s, silent)
        assert (job.status, job.local_run["stopped"]) == ("stopped", runs.BY_SILENCE)
        assert 595 <= job.local_run["silent_for"] <= 660 and job.local_run["silent_limit"] == 300
        assert (repo.get_document(s, silent_doc).status, repo.get_document(s, silent_doc).error) == (
            "failed", runs.SILENT)
        described = runs.stop_described(job.local_run, 1)
        assert described.startswith(f"quire run (pid 4242 on {elsewhere['host']}) sent no heartbeat for "
                                    "10 min (the limit is 5 min), so it is taken as ended")
        # A fresh heartbeat, one within three of the run's own beats, none at all (it cannot be
        # told), and this host's live process (looked at, not judged by its heartbeat): running.
        for job_id in (fresh, slow, older, mine):
            assert job_rows.get_job(s, job_id).status == "queued"
        assert not runs.beat(s, silent)  # its job has ended: no more beats
        assert runs.beat(s, fresh)
        # Without a limit (callers that only look at processes), nothing is judged by heartbeat.
        heard(s, fresh, timedelta(hours=1))
        assert runs.settle_gone_runs(s, run_process.is_gone) == []


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_pending_deletion_is_carried_out_once_whatever_was_deleted_before(engine, tmp_path, kind, request) -> None:
    """A run killed between a --redo's adoption and the deletion of the earlier reading's images
    left them in the store for good, named nowhere. Now the adoption records them; deleting
    them again (a second kill mid-way) or twice (two runs) is fine, and a store that fails keeps
    the record for the next run."""
    if kind == "s3":
        store = S3Store(request.getfixturevalue("s3_bucket"), endpoint_url=request.getfixturevalue("s3_server"))
    else:
        store = LocalStore(tmp_path / "store")
    with session_scope(engine) as s:
        doc, _ = repo.upsert_document(s, sha256=SHA, profile="p1", name="a.pdf",
                                      source_uri="file:///a.pdf", size_bytes=10)
        for number in (1, 2, 3):
            read_page(s, doc.id, number, "earlier")
        repo.finish_document(s, doc.id, 3)
        redo, _ = readings.begin_redo(s, doc)
        for number in (1, 2, 3):
            read_page(s, redo, number, "newer")
    for key in ("earlier/1", "earlier/3", "newer/1", "newer/2", "newer/3"):  # earlier/2: deleted before
        store.put_bytes(key, b"png")
    with session_scope(engine) as s:
        deletion = readings.adopt_redo(s, doc.id, 3)
        assert readings.pending_deletions(s) == [deletion]

    assert cleanup.finish_deletions(engine, store, [deletion]) == 3
    assert sorted(info.key for info in store.list("")) == ["newer/1", "newer/2", "newer/3"]
    with session_scope(engine) as s:
        assert readings.pending_deletions(s) == []
        assert texts(s, doc.id) == ["newer 0", "newer 1"] * 3
    assert cleanup.finish_deletions(engine, store, [deletion]) == 0  # another run finished it

    if kind == "local":  # an object the store cannot delete: kept on the list, the caller goes on
        with session_scope(engine) as s:
            redo, _ = readings.begin_redo(s, repo.get_document(s, doc.id))
            read_page(s, redo, 1, "broken")
            deletion = readings.drop_redo(s, doc.id)
        (tmp_path / "store" / "broken" / "1").mkdir(parents=True)  # a folder where the image was
        assert cleanup.finish_deletions(engine, store, [deletion]) == 0
        with session_scope(engine) as s:
            assert readings.pending_deletions(s) == [deletion]
        (tmp_path / "store" / "broken" / "1").rmdir()
        assert cleanup.finish_deletions(engine, store, [deletion]) == 1
        with session_scope(engine) as s:
            assert readings.pending_deletions(s) == []
