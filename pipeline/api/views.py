"""JSON views of jobs and documents, shared by the API and the completion webhook (no FastAPI here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.db import job_status, runs
from pipeline.db.models import Document, DocumentStatus, Job, Line, LineStatus, Page


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


# Documents a job's view lists inline; the rest page through GET /v1/jobs/{id}/documents.
INLINE = 100


def job_view(s: Session, job: Job, *, with_documents: bool = True) -> dict[str, Any]:
    """Status, counts, percent done (documents weighted by their lines read), the first documents
    and the first failed ones with their errors: a few statements, whatever the job's size."""
    return job_views(s, [job], with_documents=with_documents)[0]


def job_views(s: Session, jobs: Sequence[Job], *, with_documents: bool = False
              ) -> list[dict[str, Any]]:
    """The views of many jobs (GET /v1/jobs) from the same three aggregates, not one per job."""
    found = job_status.tallies(s, [job.id for job in jobs])
    return [_view(s, job, found[job.id], with_documents) for job in jobs]


def _view(s: Session, job: Job, t: job_status.Tally, with_documents: bool) -> dict[str, Any]:
    # A `quire run` job links each file once it reaches it: the files not reached yet (or never,
    # if the run was stopped) count as pending, so a stopped run is not shown as complete.
    run = job.local_run
    total = max(t.links, int(run.get("inputs") or 0)) if run else t.links
    counts = {"total": total, "done": t.done, "failed": t.failed,
              "pending": total - t.done - t.failed}
    view: dict[str, Any] = {
        "id": job.id, "status": job.status, "owner": job.owner,
        "created_at": _iso(job.created_at), "finished_at": _iso(job.finished_at),
        "settings": job.settings, "accepting": bool(job.accepting),
        "documents_count": counts,
        "lines": {"done": t.lines_done, "total": t.lines_total},
        "percent": round(100.0 * t.progress / total, 1) if total else 0.0,
    }
    if run:
        view["run"] = {"pid": run.get("pid"), "host": run.get("host"), "inputs": run.get("inputs"),
                       "reached": t.links, "stopped": run.get("stopped"),
                       "went_on_in": run.get("went_on_in"), "heartbeat_at": _iso(job.heartbeat_at)}
        if run.get("stopped") == runs.BY_SILENCE:  # how long it was silent, and the limit
            view["run"].update(silent_for=run.get("silent_for"), silent_limit=run.get("silent_limit"))
    if with_documents:
        listed = job_status.documents_page(s, job.id, limit=INLINE)
        view["documents"] = [listed_summary(item) for item in listed]
        view["documents_next"] = _next(job.id, listed, INLINE, None)
        failed = [d for d in listed if d.document.status == DocumentStatus.FAILED]
        if len(failed) < min(t.failed_links, INLINE):  # some are past the first page
            failed = job_status.documents_page(s, job.id, status=DocumentStatus.FAILED.value,
                                               limit=INLINE)
        view["failed_documents"] = [listed_summary(item) for item in failed]
        view["failed_more"] = t.failed_links - len(failed)
    return view


def _next(job_id: str, listed: list[job_status.Listed], limit: int, status: str | None) -> str | None:
    """The URL of the next page, or None when this one is the last."""
    if len(listed) < limit:
        return None
    query = f"?status={status}&" if status else "?"
    return f"/v1/jobs/{job_id}/documents{query}limit={limit}&after={listed[-1].cursor}"


def documents_list(s: Session, job_id: str, *, status: str | None, after: str | None,
                   limit: int) -> dict[str, Any]:
    """A page of a job's documents (GET /v1/jobs/{id}/documents)."""
    listed = job_status.documents_page(s, job_id, status=status, after=after, limit=limit)
    return {"id": job_id, "documents": [listed_summary(item) for item in listed],
            "next": _next(job_id, listed, limit, status)}


def listed_summary(item: job_status.Listed) -> dict[str, Any]:
    return document_summary(item.document, item.lines, item.name)


def stopped(doc: Document) -> bool:
    """Failed only as the `quire run` reading it was stopped or killed: not finished, not a failure
    of the file (the same command goes on with it)."""
    return doc.status == DocumentStatus.FAILED and doc.error in runs.STOP_REASONS


def document_summary(doc: Document, lines: tuple[int, int] = (0, 0), name: str | None = None
                     ) -> dict[str, Any]:
    """`name`: the name the viewer's job sent the file by (default: the first sender's)."""
    return {"id": doc.id, "name": name or doc.name, "sha256": doc.sha256, "status": doc.status,
            "error": doc.error, "pages": doc.page_count, "pages_done": doc.pages_done,
            "lines": {"total": lines[0], "done": lines[1]}}


def document_view(s: Session, doc: Document, name: str | None = None) -> dict[str, Any]:
    """Pages and lines with text, boxes and confidence, in reading order."""
    pages = list(s.scalars(select(Page).where(Page.document_id == doc.id).order_by(Page.number)))
    by_page: dict[int, list[dict[str, Any]]] = {p.id: [] for p in pages}
    for line in s.scalars(select(Line).join(Page).where(Page.document_id == doc.id)
                          .order_by(Page.number, Line.position)):
        by_page[line.page_id].append({
            "order": line.position, "bbox": [line.x0, line.y0, line.x1, line.y1],
            "text": line.text, "confidence": line.confidence, "status": line.status,
        })
    every = [line for lines in by_page.values() for line in lines]
    counts = (len(every), sum(line["status"] == LineStatus.DONE.value for line in every))
    return {
        **document_summary(doc, counts, name), "profile": doc.profile, "source_uri": doc.source_uri,
        "size_bytes": doc.size_bytes, "created_at": _iso(doc.created_at),
        "pages": [{"number": p.number, "width": p.width, "height": p.height, "dpi": p.dpi,
                   "rotation": p.rotation, "angle": p.angle, "status": p.status,
                   "lines": by_page[p.id]} for p in pages],
        "page_count": doc.page_count,
    }
