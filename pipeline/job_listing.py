"""A job's documents, every one, in submission order, a page of 1,000 at a time from this node's
database or from the job API: what `quire status JOB --list` prints, however large the job."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

LISTS = ("done", "failed", "pending", "processing", "all")
PAGE = 1000


def local_documents(engine: Any, job_id: str, status: str) -> Iterator[dict[str, Any]]:
    """The job's documents (`status`: one of LISTS) from the database, each as the API lists it."""
    from pipeline.api.views import listed_summary
    from pipeline.db import job_rows, job_status
    from pipeline.db.session import session_scope

    after: str | None = None
    while True:
        with session_scope(engine) as s:  # a short read per page, not one held through the list
            job_rows.get_job(s, job_id)  # NotFoundError for a job that is not there
            listed = job_status.documents_page(s, job_id, status=None if status == "all" else status,
                                               after=after, limit=PAGE)
            page = [listed_summary(item) for item in listed]
        yield from page
        if len(listed) < PAGE:
            return
        after = listed[-1].cursor


def api_documents(client: Any, job_id: str, status: str) -> Iterator[dict[str, Any]]:
    """The same from the job API (pipeline.api.client.ApiClient), following its `next` pages."""
    after: str | None = None
    while True:
        page = client.documents(job_id, status=None if status == "all" else status, after=after,
                                limit=PAGE)
        yield from page["documents"]
        if not page.get("next"):
            return
        after = parse_qs(urlsplit(page["next"]).query)["after"][0]


def described(doc: dict[str, Any], status: str) -> str:
    """One document as a line of the list: its name, a failed one's reason after it, and with
    `all` its status first."""
    line = doc["name"] + (f": {doc['error']}" if doc["status"] == "failed" and doc.get("error") else "")
    return f"{doc['status']}\t{line}" if status == "all" else line
