"""JSON views of jobs and documents, shared by the API and the completion webhook (no FastAPI here)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.db import repo, runs
from pipeline.db.models import Document, DocumentStatus, Job, JobDocument, Line, LineStatus, Page


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_view(s: Session, job: Job, *, with_documents: bool = True) -> dict[str, Any]:
    """Status, counts, percent done (documents weighted by their lines read) and per-document errors."""
    named = repo.named_job_documents(s, job.id)
    docs = [doc for doc, _ in named]
    # By document id, not by link: a document the job sent under two names is counted once.
    mine = select(JobDocument.document_id).where(JobDocument.job_id == job.id)
    lines = {doc_id: (int(total), int(done)) for doc_id, total, done in s.execute(
        select(Page.document_id, func.count(Line.id),
               func.count(Line.id).filter(Line.status == LineStatus.DONE.value))
        .join(Line, Line.page_id == Page.id).where(Page.document_id.in_(mine))
        .group_by(Page.document_id))}
    progress = 0.0
    for doc in docs:
        if doc.status == DocumentStatus.DONE or (doc.status == DocumentStatus.FAILED and not stopped(doc)):
            progress += 1.0
        elif doc.status != DocumentStatus.PENDING:  # processing, or left unfinished by a stopped run
            total, done = lines.get(doc.id, (0, 0))
            # Ingest still running: its lines are not all known, so cap below 100 %.
            progress += 0.9 * (done / total) if total else 0.0
    # A `quire run` job links each file once it reaches it: the files not reached yet (or never,
    # if the run was stopped) count as pending, so a stopped run is not shown as complete.
    run = job.local_run
    total = max(len(docs), int(run.get("inputs") or 0)) if run else len(docs)
    counts = {"total": total,
              "done": sum(d.status == DocumentStatus.DONE for d in docs),
              "failed": sum(d.status == DocumentStatus.FAILED and not stopped(d) for d in docs)}
    counts["pending"] = counts["total"] - counts["done"] - counts["failed"]
    view: dict[str, Any] = {
        "id": job.id, "status": job.status, "owner": job.owner,
        "created_at": _iso(job.created_at), "finished_at": _iso(job.finished_at),
        "settings": job.settings, "accepting": bool(job.accepting),
        "documents_count": counts,
        "lines": {"done": sum(d for _, d in lines.values()),
                  "total": sum(t for t, _ in lines.values())},
        "percent": round(100.0 * progress / total, 1) if total else 0.0,
    }
    if run:
        view["run"] = {"pid": run.get("pid"), "host": run.get("host"), "inputs": run.get("inputs"),
                       "reached": len(docs), "stopped": run.get("stopped"),
                       "went_on_in": run.get("went_on_in"), "heartbeat_at": _iso(job.heartbeat_at)}
        if run.get("stopped") == runs.BY_SILENCE:  # how long it was silent, and the limit
            view["run"].update(silent_for=run.get("silent_for"), silent_limit=run.get("silent_limit"))
    if with_documents:
        view["documents"] = [document_summary(d, lines.get(d.id, (0, 0)), name)
                             for d, name in named]
    return view


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
