"""The job view as it was before session 38 (every document loaded, lines counted per document in
Python): the reference the SQL aggregates are checked against, and the bench's "before"."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.api.views import document_summary, stopped
from pipeline.db import job_rows
from pipeline.db.models import DocumentStatus, Job, JobDocument, Line, LineStatus, Page


def legacy_job_view(s: Session, job: Job, *, with_documents: bool = True) -> dict[str, Any]:
    named = job_rows.named_job_documents(s, job.id)
    docs = [doc for doc, _ in named]
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
        elif doc.status != DocumentStatus.PENDING:
            total, done = lines.get(doc.id, (0, 0))
            progress += 0.9 * (done / total) if total else 0.0
    run = job.local_run
    total = max(len(docs), int(run.get("inputs") or 0)) if run else len(docs)
    counts = {"total": total,
              "done": sum(d.status == DocumentStatus.DONE for d in docs),
              "failed": sum(d.status == DocumentStatus.FAILED and not stopped(d) for d in docs)}
    counts["pending"] = counts["total"] - counts["done"] - counts["failed"]
    view: dict[str, Any] = {
        "id": job.id, "status": job.status, "owner": job.owner,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "settings": job.settings, "accepting": bool(job.accepting),
        "documents_count": counts,
        "lines": {"done": sum(d for _, d in lines.values()),
                  "total": sum(t for t, _ in lines.values())},
        "percent": round(100.0 * progress / total, 1) if total else 0.0,
    }
    if run:
        view["run"] = {"pid": run.get("pid"), "host": run.get("host"), "inputs": run.get("inputs"),
                       "reached": len(docs), "stopped": run.get("stopped"),
                       "went_on_in": run.get("went_on_in"),
                       "heartbeat_at": job.heartbeat_at.isoformat() if job.heartbeat_at else None}
        if run.get("stopped") == "silent":
            view["run"].update(silent_for=run.get("silent_for"), silent_limit=run.get("silent_limit"))
    if with_documents:
        view["documents"] = [document_summary(d, lines.get(d.id, (0, 0)), name) for d, name in named]
    return view
