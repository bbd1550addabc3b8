"""A job's status from SQL aggregates (pipeline.db.job_status): the same counts, lines and percent
as the view that loaded every document (tests/job_view_legacy.py), at a cost that does not grow
with the job's documents; its documents a page at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pipeline.api import views
from pipeline.api.app import create_app
from pipeline.config import Settings
from pipeline.db import job_rows, repo, runs
from pipeline.db import jobs as jobrepo
from pipeline.db.models import Document, DocumentStatus, Job, Line, LineStatus, Page
from pipeline.db.session import make_engine, session_scope, upgrade
from pipeline.types import BBox
from tests.job_view_legacy import legacy_job_view


def add_doc(s, job_id: str, i: int, status: str = "pending", *, pages=(), error=None,
            names=None, position=None) -> str:
    """Document i of the job, linked under `names`; `pages`: (lines, lines read) per page, saved
    and read the way the workers do (repo.save_lines, repo.set_line_texts)."""
    doc, _ = repo.upsert_document(s, sha256=f"{i:064d}", profile="p", name=f"d{i}.pdf",
                                  source_uri=f"file:///d{i}.pdf", size_bytes=1)
    for k, name in enumerate(names or [f"d{i}.pdf"]):
        job_rows.link_job_document(s, job_id, doc.id, (position if position is not None else i) + k, name)
    for number, (n, read) in enumerate(pages, 1):
        page = repo.save_page(s, doc.id, number=number, image_key="k", width=100, height=50,
                              dpi=150, angle=0.0)
        lines = repo.save_lines(s, page.id, [(j, BBox(0, j * 10, 90, j * 10 + 8), f"c{j}")
                                             for j in range(n)])
        repo.set_line_texts(s, [(ln.id, "text", 0.9) for ln in lines[:read]], "m")
    doc.status, doc.error = status, error
    s.flush()
    return doc.id


def mixed_job(s, local_run=None) -> Job:
    job = job_rows.create_job(s, settings={}, owner="alice", local_run=local_run)
    add_doc(s, job.id, 0, "done", pages=[(3, 3), (2, 2)])
    add_doc(s, job.id, 1, "failed", pages=[(4, 1)], error="cannot render: damaged")
    add_doc(s, job.id, 2, "failed", pages=[(6, 2), (1, 0)], error=runs.STOPPED)  # unfinished
    add_doc(s, job.id, 3, "processing", pages=[(7, 3)])
    add_doc(s, job.id, 4, "processing", pages=[(5, 4)], names=["box/a.pdf", "box/copy.pdf"])
    add_doc(s, job.id, 5, "processing", position=6)  # ingest has made no lines yet
    add_doc(s, job.id, 7, "pending")
    add_doc(s, job.id, 8, "failed", error=runs.KILLED, position=9)
    # A shared document: the other job's link does not count in this one.
    other = job_rows.create_job(s, settings={}, owner="alice")
    job_rows.link_job_document(s, other.id, add_doc(s, job.id, 10, "done", pages=[(2, 2)]), 0, "o.pdf")
    s.flush()
    return job


@pytest.mark.parametrize("local_run", [None, {"pid": 1, "host": "h", "inputs": 15, "stopped": "signal"}])
def test_aggregates_match_the_old_python_computation(engine, local_run):
    with session_scope(engine) as s:
        job = mixed_job(s, local_run)
        new, old = views.job_view(s, job), legacy_job_view(s, job)
        assert new["percent"] not in (0.0, 100.0) and new["lines"]["done"] < new["lines"]["total"]
        for key in ("documents_count", "lines", "percent", "status", "run", "documents"):
            assert new.get(key) == old.get(key), key
        # The pages' counters, which the sums read, agree with the lines themselves.
        for page in s.query(Page):
            rows = s.query(Line).filter(Line.page_id == page.id).all()
            assert (page.lines_total, page.lines_done) == (
                len(rows), sum(ln.status == LineStatus.DONE for ln in rows))
        assert [d["name"] for d in new["failed_documents"]] == ["d1.pdf", "d2.pdf", "d8.pdf"]
        assert new["failed_more"] == 0 and new["documents_next"] is None


@contextmanager
def counted() -> Iterator[dict[str, int]]:
    """SQL statements run and Document rows loaded inside the block."""
    seen = {"statements": 0, "documents": 0}

    def statement(*_):
        seen["statements"] += 1

    def loaded(*_):
        seen["documents"] += 1

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Document, "load", loaded)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Document, "load", loaded)


def big_job(s, n: int, owner: str = "alice") -> Job:
    job = job_rows.create_job(s, settings={}, owner=owner)
    for i in range(n):
        add_doc(s, job.id, i, "failed" if i % 2 else "done", error="bad" if i % 2 else None,
                pages=[(2, 2 if i % 2 == 0 else 1)])
    return job


def test_status_cost_does_not_grow_with_the_documents(engine):
    """The old view loaded every document (300 here); the new one loads the first pages only."""
    costs = []
    for n in (3 * views.INLINE // 2, 3 * views.INLINE):
        with session_scope(engine) as s:
            job = big_job(s, n)
            s.commit()
            s.expunge_all()
            with counted() as seen:
                view = views.job_view(s, s.get(Job, job.id))
            costs.append(seen)
    small, large = costs
    assert large["statements"] == small["statements"]
    assert large["documents"] <= 2 * views.INLINE
    assert len(view["documents"]) == views.INLINE and view["documents_next"]
    assert len(view["failed_documents"]) == views.INLINE
    assert view["failed_more"] == 3 * views.INLINE // 2 - views.INLINE
    assert view["documents_count"] == {"total": 300, "done": 150, "failed": 150, "pending": 0}


@pytest.fixture
def api(tmp_path, sqlite_url):
    upgrade(sqlite_url)
    settings = Settings(database_url=sqlite_url, storage_url=(tmp_path / "store").as_uri(),
                        broker_url="redis://127.0.0.1:1/0")
    client = TestClient(create_app(settings, enqueue=lambda *a: None))
    client.engine = make_engine(sqlite_url)
    with session_scope(client.engine) as s:
        alice, _ = jobrepo.create_token(s, name="alice")
        bob, _ = jobrepo.create_token(s, name="bob")
    client.alice = {"Authorization": f"Bearer {alice}"}
    client.bob = {"Authorization": f"Bearer {bob}"}
    return client


def test_job_list_takes_the_same_statements_for_one_job_or_many(api):
    with session_scope(api.engine) as s:
        big_job(s, 4)
    api.get("/v1/jobs", headers=api.alice)  # the first request checks the schema
    with counted() as one:
        assert len(api.get("/v1/jobs", headers=api.alice).json()["jobs"]) == 1
    with session_scope(api.engine) as s:
        for _ in range(7):
            job_rows.create_job(s, settings={}, owner="alice")
        big_job(s, 2)
    with counted() as many:
        jobs = api.get("/v1/jobs", headers=api.alice).json()["jobs"]
    assert len(jobs) == 9 and many["statements"] == one["statements"]
    assert jobs[0]["documents_count"]["total"] == 2 and "documents" not in jobs[0]


def test_documents_are_listed_a_page_at_a_time(api):
    with session_scope(api.engine) as s:
        job_id = big_job(s, 25).id
    url = f"/v1/jobs/{job_id}/documents?limit=10"
    names, pages = [], 0
    while url:
        page = api.get(url, headers=api.alice)
        assert page.status_code == 200, page.text
        names += [d["name"] for d in page.json()["documents"]]
        url, pages = page.json()["next"], pages + 1
    assert names == [f"d{i}.pdf" for i in range(25)] and pages == 3
    failed = api.get(f"/v1/jobs/{job_id}/documents?status=failed&limit=5", headers=api.alice).json()
    assert [d["name"] for d in failed["documents"]] == [f"d{i}.pdf" for i in (1, 3, 5, 7, 9)]
    assert failed["documents"][0]["error"] == "bad" and failed["documents"][0]["lines"] == {
        "total": 2, "done": 1}
    rest = api.get(failed["next"], headers=api.alice).json()
    assert [d["name"] for d in rest["documents"]][:2] == ["d11.pdf", "d13.pdf"]
    assert api.get(f"/v1/jobs/{job_id}/documents?after=x", headers=api.alice).status_code == 422
    assert api.get(f"/v1/jobs/{job_id}/documents?status=lost", headers=api.alice).status_code == 422
    assert api.get(f"/v1/jobs/{job_id}/documents", headers=api.bob).status_code == 404
    view = api.get(f"/v1/jobs/{job_id}", headers=api.alice).json()
    assert len(view["documents"]) == 25 and view["documents_next"] is None
    assert [d["name"] for d in view["failed_documents"]][:2] == ["d1.pdf", "d3.pdf"]


def test_status_names_the_failed_beyond_the_first(capsys):
    from pipeline.cli_jobs import _print_view

    view = {"id": "j", "status": "partial", "percent": 100.0, "lines": {"done": 1, "total": 2},
            "documents_count": {"total": 300, "done": 1, "failed": 299, "pending": 0},
            "failed_documents": [{"name": "a.pdf", "status": "failed", "error": "bad"}],
            "failed_more": 298}
    _print_view(view)
    out = capsys.readouterr().out
    assert "FAILED a.pdf: bad" in out and "298 more failed" in out
    # An older API's view: every document inline.
    _print_view({**{k: v for k, v in view.items() if k not in ("failed_documents", "failed_more")},
                 "documents": [{"name": "b.pdf", "status": "failed", "error": runs.STOPPED},
                               {"name": "c.pdf", "status": "done", "error": None}]})
    out = capsys.readouterr().out
    assert "UNFINISHED b.pdf" in out and "c.pdf" not in out and "more" not in out


def test_document_status_filter_matches_the_enum():
    assert {s.value for s in DocumentStatus} == {"pending", "processing", "done", "failed"}


def test_status_list_follows_the_api_s_pages_to_the_last():
    """`quire status JOB --list failed --api URL` names every failed document, page after page."""
    from pipeline.job_listing import api_documents, described

    asked: list[tuple[str | None, str | None]] = []

    class Client:
        def documents(self, job_id, *, status=None, after=None, limit=1000):
            asked.append((status, after))
            if after is None:
                return {"documents": [{"name": "a.pdf", "status": "failed", "error": "bad"}],
                        "next": f"/v1/jobs/{job_id}/documents?status=failed&limit=1000&after=0:d1:k1"}
            return {"documents": [{"name": "b.pdf", "status": "failed", "error": "empty"}], "next": None}

    listed = [described(doc, "failed") for doc in api_documents(Client(), "j", "failed")]
    assert listed == ["a.pdf: bad", "b.pdf: empty"]
    assert asked == [("failed", None), ("failed", "0:d1:k1")]
    assert described({"name": "c.pdf", "status": "done", "error": None}, "all") == "done\tc.pdf"
