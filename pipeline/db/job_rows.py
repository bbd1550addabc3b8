"""Job rows and their documents: a job made once per idempotency key, documents linked by name, recounted from them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from pipeline.db import repo
from pipeline.db.models import (
    Document,
    DocumentStatus,
    Job,
    JobDocument,
    JobStatus,
    new_id,
    text_key,
    utcnow,
)
from pipeline.errors import NotFoundError, QuireError


class IdempotencyConflictError(QuireError):
    """An idempotency key already names another owner's job."""

    http_status = 409


def get_job(s: Session, job_id: str, *, lock: bool = False) -> Job:
    job = s.scalars(repo._fresh(select(Job).where(Job.id == job_id), lock)).first()
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def job_ids_starting(s: Session, prefix: str, limit: int) -> list[str]:
    """The ids of up to `limit` jobs whose id starts with `prefix` (a short id, as git takes),
    oldest first. LIKE on the string column, the same on SQLite and PostgreSQL."""
    return list(s.scalars(select(Job.id).where(Job.id.startswith(prefix, autoescape=True))
                          .order_by(Job.created_at, Job.id).limit(limit)))


def create_job(
    s: Session,
    *,
    settings: dict[str, Any],
    idempotency_key: str | None = None,
    owner: str | None = None,
    webhook_url: str | None = None,
    local_run: dict[str, Any] | None = None,
) -> Job:
    """A new queued job; with an idempotency key already used, the job it made before.
    `local_run`: a `quire run` job's own record (pipeline.db.runs)."""
    values = {"id": new_id(), "settings": settings, "owner": owner, "webhook_url": webhook_url,
              "idempotency_key": idempotency_key, "status": JobStatus.QUEUED.value,
              "documents_total": 0, "documents_done": 0, "documents_failed": 0,
              "created_at": utcnow(), "local_run": local_run}
    if idempotency_key is None:
        job = Job(**values)
        s.add(job)
        s.flush()
        return job
    s.execute(repo._insert(s, Job).values(**values).on_conflict_do_nothing(
        index_elements=["idempotency_key"]))
    job = s.scalars(repo._fresh(select(Job).where(Job.idempotency_key == idempotency_key))).one()
    if job.owner != owner:
        raise IdempotencyConflictError("idempotency key already used by another owner")
    return job


def link_job_document(s: Session, job_id: str, document_id: str, position: int,
                      name: str | None = None) -> None:
    """Add a document to a job under the name the job sent it by (default: the document's);
    each name is a link of its own, so a copy of a file is found by its name too. Linking
    the same name again keeps its first position."""
    if name is None:
        name = repo.get_document(s, document_id).name
    s.execute(repo._insert(s, JobDocument).values(
        job_id=job_id, document_id=document_id, position=position, name=name,
        name_sha256=text_key(name),
    ).on_conflict_do_nothing(index_elements=["job_id", "document_id", "name_sha256"]))


_ENDED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.PARTIAL, JobStatus.CANCELLED, JobStatus.STOPPED)


def update_job_counts(s: Session, job_id: str) -> Job:
    """Recount a job from its documents; once all are done or failed it is finished (a
    cancelled one keeps its status)."""
    job = get_job(s, job_id, lock=True)
    counts: dict[str, int] = dict(s.execute(
        select(Document.status, func.count()).join(JobDocument)
        .where(JobDocument.job_id == job_id).group_by(Document.status)).all())
    total = sum(counts.values())
    done = counts.get(DocumentStatus.DONE, 0)
    failed = counts.get(DocumentStatus.FAILED, 0)
    job.documents_total, job.documents_done, job.documents_failed = total, done, failed
    if job.status in (JobStatus.CANCELLED, JobStatus.STOPPED):
        # Counted still, but it stays as it ended: a later run that finishes its documents
        # does not make a stopped run look finished.
        status = JobStatus(job.status)
    elif (total and done + failed == total) or (not total and not job.accepting):
        # A closed job with nothing in it is done, not queued for ever.
        status = (JobStatus.DONE if not failed else JobStatus.FAILED if not done
                  else JobStatus.PARTIAL)
        job.finished_at = job.finished_at or utcnow()
    else:
        started = done + failed + counts.get(DocumentStatus.PROCESSING, 0)
        status = JobStatus.RUNNING if started else JobStatus.QUEUED
        job.finished_at = None
    job.status = status.value
    if (status in _ENDED and job.webhook_url is not None and job.webhook_sent_at is None
            and job.webhook_due_at is None and not job.webhook_attempts):
        # Owed from now: queued by whoever ended it, and by a finish worker's sweep if that
        # notify is lost (pipeline.webhook_sweep).
        job.webhook_due_at = job.finished_at or utcnow()
    s.flush()
    return job


def job_documents(s: Session, job_id: str) -> list[Document]:
    """A job's documents in submission order, each once (copies of a file are one document)."""
    return list(dict.fromkeys(doc for doc, _ in named_job_documents(s, job_id)))


def named_job_documents(s: Session, job_id: str) -> list[tuple[Document, str]]:
    """A job's documents in submission order, each with the name this job sent it by."""
    rows = s.execute(select(Document, JobDocument.name).join(JobDocument)
                     .where(JobDocument.job_id == job_id).order_by(JobDocument.position))
    return [(doc, name) for doc, name in rows]


def owner_document_name(s: Session, document_id: str, owner: str | None) -> str | None:
    """The name the owner's first job sent this document by (None: no job of theirs named it)."""
    return s.scalar(select(JobDocument.name).join(Job).where(
        JobDocument.document_id == document_id, Job.owner == owner)
        .order_by(Job.created_at, JobDocument.position).limit(1))


def unfinished_sharing_jobs(s: Session, job_id: str) -> list[str]:
    """Other jobs, not done, holding a document of this job: a run that reads a document an
    earlier, stopped run left failed must recount that run's job too."""
    mine = aliased(JobDocument)
    theirs = aliased(JobDocument)
    return list(s.scalars(
        select(theirs.job_id).distinct()
        .join(mine, mine.document_id == theirs.document_id)
        .join(Job, Job.id == theirs.job_id)
        .where(mine.job_id == job_id, theirs.job_id != job_id, Job.status != JobStatus.DONE.value)
        .order_by(theirs.job_id)))


def job_ids_for_document(s: Session, document_id: str) -> list[str]:
    return list(s.scalars(select(JobDocument.job_id).distinct().where(
        JobDocument.document_id == document_id).order_by(JobDocument.job_id)))
