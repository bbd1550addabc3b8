"""Deleting a document on request (`quire delete`, `DELETE /v1/documents/{id}`): its rows, and a
record of the store keys to delete once they are gone (pipeline.deletion carries it out).

Documents are shared by content: the same bytes sent by two tenants, or by two jobs, are one
document. An operator (tenant None) deletes it outright. A tenant lets go of it: its own jobs'
links go, and the document goes with its rows and objects only when no other job links it.

`plan_removal` locks and checks, `carry_out` deletes; the caller runs both in one transaction,
so the rows go and the pending deletion is recorded together or not at all. The file's content
lock, taken first, makes a submission of the same bytes wait for it or be seen by it (never an
error: pipeline.db.locks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pipeline.db import job_rows, locks, readings, repo
from pipeline.db.jobs import LIVE
from pipeline.db.models import Document, DocumentStatus, FileHash, Job, JobDocument, Line, Page
from pipeline.errors import NotFoundError, QuireError


class DocumentBusyError(QuireError):
    """The document is being read now: deleting it would pull the rows from under a worker."""

    http_status = 409


@dataclass
class Plan:
    """What deleting one document does, found under lock: the job links that go, and whether
    the document goes too (`outright`) with its rows and the keys they name."""

    document_id: str
    name: str
    sha256: str
    profile: str
    jobs: list[str]  # the jobs whose links go
    outright: bool
    pages: int = 0
    lines: int = 0
    row_keys: set[str] = field(default_factory=set)  # page images and crops its rows name
    source_shared: bool = False  # another reading (profile) of the same bytes keeps the source


@dataclass
class Removal:
    """What was deleted: the links, and if outright, the rows and the recorded store keys."""

    plan: Plan
    keys: int = 0  # store keys recorded to delete
    deletion: int | None = None  # the pending deletion's id (None: no keys)


def plan_removal(s: Session, document_id: str, tenant: str | None = None) -> Plan:
    """Lock the file's content, then the document's jobs, pages and row (the order every writer
    uses) and say what deleting it does for `tenant` (None: an operator, who deletes it outright).
    NotFoundError when it does not exist or the tenant has no job linking it; DocumentBusyError
    while it is being read (processing, or a queued or running job links it).

    Under the content lock (pipeline.db.locks) a submission of the same file is either committed
    before, and its job's link is seen here like any other, or waits until this transaction is
    done and makes a new document: it never links, nor finds, a document this deletes."""
    sha = s.scalar(select(Document.sha256).where(Document.id == document_id))
    if sha is None:
        raise NotFoundError(f"no document {document_id}")
    locks.lock_content(s, [sha])
    linked = select(JobDocument.job_id).where(JobDocument.document_id == document_id)
    jobs = s.scalars(select(Job).where(Job.id.in_(linked)).order_by(Job.id).with_for_update()).all()
    mine = [job for job in jobs if tenant is None or job.owner == tenant]
    readings_ids = [document_id, *s.scalars(select(Document.id).where(Document.redo_of == document_id))]
    s.scalars(select(Page.id).where(Page.document_id.in_(readings_ids)).order_by(Page.id)
              .with_for_update()).all()
    doc = s.scalars(repo._fresh(select(Document).where(Document.id == document_id), lock=True)).first()
    if doc is None or doc.redo_of is not None or (tenant is not None and not mine):
        raise NotFoundError(f"no document {document_id}")
    live = [job for job in mine if job.status in LIVE]
    if doc.status == DocumentStatus.PROCESSING or live:
        why = f"job {live[0].id} is {live[0].status}" if live else "it is processing"
        raise DocumentBusyError(
            f"document {doc.name} ({doc.id}) is being read now ({why}); it is not deleted: "
            "wait until it is done or failed, or cancel its job (`quire cancel JOB`), then delete it")
    plan = Plan(document_id=doc.id, name=doc.name, sha256=doc.sha256, profile=doc.profile,
                jobs=[job.id for job in mine], outright=len(mine) == len(jobs))
    if plan.outright:
        for reading in readings_ids:  # the document's and an unfinished --redo's
            plan.row_keys |= readings.stored_keys(s, reading)
        plan.pages = s.scalar(select(func.count()).select_from(Page).where(
            Page.document_id == document_id)) or 0
        plan.lines = s.scalar(select(func.count()).select_from(Line).join(Page).where(
            Page.document_id == document_id)) or 0
        plan.source_shared = bool(s.scalar(select(func.count()).select_from(Document).where(
            Document.sha256 == doc.sha256, Document.id.not_in(readings_ids))))
    return plan


def carry_out(s: Session, plan: Plan, keys: set[str]) -> Removal:
    """Delete what `plan` says: the links, recounting their jobs; if outright, the document's
    pages and lines (by statement, so the search index follows), its unfinished --redo and the
    row, recording `keys` (the store objects to delete) as a pending deletion."""
    links: dict[str, int] = {job_id: n for job_id, n in s.execute(
        select(JobDocument.job_id, func.count()).where(
            JobDocument.document_id == plan.document_id, JobDocument.job_id.in_(plan.jobs))
        .group_by(JobDocument.job_id))}
    s.execute(delete(JobDocument).where(JobDocument.document_id == plan.document_id,
                                        JobDocument.job_id.in_(plan.jobs)),
              execution_options={"synchronize_session": False})
    for job in s.scalars(select(Job).where(Job.id.in_(plan.jobs), Job.local_run.is_not(None))):
        # A `quire run` job counts the files it was given (its files not reached are pending):
        # a deleted one's names are no longer to come, or the finished run shows them pending.
        run = dict(job.local_run or {})
        if run.get("inputs"):
            run["inputs"] = max(0, int(run["inputs"]) - links.get(job.id, 0))
            job.local_run = run
    s.flush()
    for job_id in plan.jobs:
        job_rows.update_job_counts(s, job_id)  # a finished job counts what it still holds
    removal = Removal(plan)
    if not plan.outright:
        return removal
    redo = s.scalars(select(Document.id).where(Document.redo_of == plan.document_id)).all()
    for reading in [*redo, plan.document_id]:
        readings.delete_pages(s, reading)
    s.execute(delete(Document).where(Document.id.in_([*redo, plan.document_id])),
              execution_options={"synchronize_session": False})
    if not plan.source_shared:  # where the file was and its hash go too (a rerun hashes it anew)
        s.execute(delete(FileHash).where(FileHash.sha256 == plan.sha256),
                  execution_options={"synchronize_session": False})
    s.expire_all()
    removal.keys = len(keys)
    removal.deletion = readings.record_deletion(s, plan.document_id, keys)
    return removal

