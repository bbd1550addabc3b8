"""Repository functions of the distributed driver: tokens, keyed jobs, checkpoints, line leases."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, true, update
from sqlalchemy.orm import Session

from pipeline.db import job_rows, repo
from pipeline.db.models import (
    ApiToken,
    Document,
    DocumentStatus,
    Job,
    JobDocument,
    JobStatus,
    Line,
    LineStatus,
    Page,
    WatchCheckpoint,
    new_id,
    text_key,
    utcnow,
)
from pipeline.errors import JobFinishedError

TOKEN_PREFIX = "qk_"


def hash_token(token: str) -> str:
    """Tokens are 32 random bytes: a plain SHA-256 is enough (no dictionary to guess from)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(s: Session, *, name: str, owner: str | None = None) -> tuple[str, ApiToken]:
    """A new API token for owner (default: name); the plain token is returned once, never stored."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(id=new_id(), name=name, owner=owner or name, token_hash=hash_token(plain),
                   created_at=utcnow())
    s.add(row)
    s.flush()
    return plain, row


def verify_token(s: Session, plain: str) -> ApiToken | None:
    row = s.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(plain))).first()
    return row if row is not None and row.revoked_at is None else None


def revoke_token(s: Session, token_id: str) -> bool:
    row = s.get(ApiToken, token_id)
    if row is None:
        return False
    row.revoked_at = row.revoked_at or utcnow()
    return True


def list_tokens(s: Session) -> list[ApiToken]:
    return list(s.scalars(select(ApiToken).order_by(ApiToken.created_at)))


def create_keyed_job(
    s: Session, *, settings: dict[str, Any], owner: str | None, idempotency_key: str | None,
    webhook_url: str | None = None, accepting: bool = False,
) -> tuple[Job, bool]:
    """The job for this key (made now if new) and whether this call made it."""
    if idempotency_key is not None:
        found = s.scalars(select(Job).where(Job.idempotency_key == idempotency_key)).first()
        if found is not None:
            if found.owner != owner:
                raise job_rows.IdempotencyConflictError("idempotency key already used")
            return found, False
    job_id = new_id()
    # ON CONFLICT: two submitters racing on one key both end up with the row one of them made.
    s.execute(repo._insert(s, Job).values(
        id=job_id, settings=settings, owner=owner, webhook_url=webhook_url,
        idempotency_key=idempotency_key, status=JobStatus.QUEUED.value, documents_total=0,
        documents_done=0, documents_failed=0, created_at=utcnow(), accepting=accepting,
    ).on_conflict_do_nothing())
    if idempotency_key is None:
        return job_rows.get_job(s, job_id), True
    job = s.scalars(select(Job).where(Job.idempotency_key == idempotency_key)
                    .execution_options(populate_existing=True)).one()
    if job.owner != owner:
        raise job_rows.IdempotencyConflictError("idempotency key already used")
    return job, job.id == job_id


def keyed_job(s: Session, idempotency_key: str, *, owner: str | None) -> Job | None:
    """The owner's job made under this key, or None."""
    return s.scalars(select(Job).where(Job.idempotency_key == idempotency_key,
                                       Job.owner == owner)).first()


def refresh_job(s: Session, job_id: str) -> Job:
    """Recount a job; one still accepting documents stays running however far it got."""
    job = job_rows.update_job_counts(s, job_id)
    if job.accepting and job.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.PARTIAL):
        job.status, job.finished_at = JobStatus.RUNNING.value, None
        if not job.webhook_attempts:  # not owed until it ends after all
            job.webhook_due_at = None
        s.flush()
    return job


def discard_job(s: Session, job_id: str) -> None:
    """Delete a job, its document links and its checkpoints; its key is free again."""
    s.execute(delete(WatchCheckpoint).where(WatchCheckpoint.job_id == job_id))
    s.execute(delete(JobDocument).where(JobDocument.job_id == job_id))
    s.execute(delete(Job).where(Job.id == job_id))


# A job in one of these still wants its documents read.
LIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
# A job in one of these has ended; its webhook, if any, is due.
FINISHED = (JobStatus.DONE.value, JobStatus.FAILED.value, JobStatus.PARTIAL.value,
            JobStatus.CANCELLED.value, JobStatus.STOPPED.value)


def webhook_due(job: Job) -> bool:
    """Whether the job has ended with a webhook not yet sent: whoever brought it to its end
    (a worker's finish, a close, a cancel) queues the notify task, which sends it once."""
    return job.status in FINISHED and job.webhook_url is not None and job.webhook_sent_at is None


def cancel_job(s: Session, job_id: str) -> tuple[Job, bool]:
    """Stop a queued or running job: it ends 'cancelled' and takes no more documents. Its
    documents that no other live job wants go back to pending, with the reason, so workers drop
    their waiting work; pages and lines read so far are kept, and a later submission of the same
    file goes on from there. Returns the job and whether this call cancelled it (cancelling a
    cancelled job changes nothing)."""
    job = job_rows.get_job(s, job_id, lock=True)
    if job.status == JobStatus.CANCELLED:
        return job, False
    if job.status not in LIVE:
        raise JobFinishedError(f"job {job_id} has already finished ({job.status})")
    # Cancelled, the job never finishes by itself; its key is free, so the same submission
    # made again starts a new job instead of resuming this one.
    job.status, job.finished_at = JobStatus.CANCELLED.value, utcnow()
    job.accepting, job.idempotency_key = False, None
    s.flush()
    for doc in job_rows.job_documents(s, job_id):
        if doc.status not in (DocumentStatus.DONE, DocumentStatus.FAILED) and not document_wanted(s, doc.id):
            doc.status, doc.error = DocumentStatus.PENDING.value, f"cancelled with job {job_id}"
    job_rows.update_job_counts(s, job_id)
    return job, True


def document_wanted(s: Session, document_id: str) -> bool:
    """Whether a queued or running job still waits for this document."""
    return bool(s.scalar(select(func.count()).select_from(JobDocument).join(Job).where(
        JobDocument.document_id == document_id, Job.status.in_(LIVE))))


def set_accepting(s: Session, job_id: str, accepting: bool) -> Job:
    job_rows.get_job(s, job_id, lock=True).accepting = accepting
    s.flush()
    return refresh_job(s, job_id)


def claim_webhook(s: Session, job_id: str) -> bool:
    """Take the right to send the job's webhook; only one caller ever gets True. The claim holds
    only once committed: the notify task commits it after delivering, so one that fails or dies
    meanwhile leaves it to a retry."""
    result = s.execute(update(Job).where(Job.id == job_id, Job.webhook_sent_at.is_(None),
                                         Job.webhook_url.is_not(None))
                       .values(webhook_sent_at=utcnow(), webhook_due_at=None))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# Tries of a job's webhook in all: the notify task's first and its retries (workers.tasks), or
# those the sweep queues again for it (pipeline.webhook_sweep).
WEBHOOK_ATTEMPTS = 9


def delivery_id(job_id: str) -> str:
    """What names a job's completion webhook to its receiver (the X-Quire-Delivery header and the
    body's `delivery`): the same on every try, so a receiver that got one try whose answer was
    lost (the sender killed, the connection cut) can tell the next is the same delivery."""
    return f"job.finished:{job_id}"


def begin_webhook_attempt(s: Session, job_id: str, seconds: float) -> bool:
    """Record a try of the job's webhook, which ends within `seconds` (the delivery's timeout);
    committed before the POST, so a try whose worker is killed is sent again by the sweep once
    that has passed. False: sent already, not ended, or its tries are spent."""
    job = job_rows.get_job(s, job_id, lock=True)
    if job.status not in FINISHED or job.webhook_url is None or job.webhook_sent_at is not None:
        return False
    if job.webhook_attempts >= WEBHOOK_ATTEMPTS:
        job.webhook_due_at = None  # given up
        return False
    job.webhook_attempts += 1
    job.webhook_due_at = utcnow() + timedelta(seconds=seconds)
    return True


def webhook_failed(s: Session, job_id: str, seconds: float) -> bool:
    """A try failed; the next is due within `seconds` (a retry's countdown and timeout). False
    once the tries are spent: given up, the sweep leaves it."""
    job = job_rows.get_job(s, job_id, lock=True)
    if job.webhook_sent_at is not None:
        return False
    more = job.webhook_attempts < WEBHOOK_ATTEMPTS
    job.webhook_due_at = utcnow() + timedelta(seconds=seconds) if more else None
    return more


def overdue_webhooks(s: Session, grace_s: float, limit: int = 100) -> list[str]:
    """Ended jobs whose webhook is owed and whose last try ended more than `grace_s` ago (its
    notify task lost with a killed worker, or never queued); each is pushed `grace_s` on, so
    the next look leaves it to the notify task the caller queues now."""
    now = utcnow()
    late = now - timedelta(seconds=grace_s)
    overdue = (Job.webhook_due_at <= late, Job.webhook_sent_at.is_(None),
               Job.webhook_url.is_not(None), Job.status.in_(FINISHED),
               Job.webhook_attempts < WEBHOOK_ATTEMPTS)
    ids = s.scalars(select(Job.id).where(*overdue).order_by(Job.webhook_due_at).limit(limit)).all()
    if not ids:
        return []
    # Conditional on still being overdue: of two sweeps at once, one takes each job.
    return list(s.scalars(update(Job).where(Job.id.in_(ids), *overdue)
                          .values(webhook_due_at=now + timedelta(seconds=grace_s))
                          .returning(Job.id), execution_options={"synchronize_session": False}))


def begin_ingest(s: Session, document_id: str) -> Document:
    """Mark a document processing. A failed one restarts clean; one in progress (a redelivered
    ingest) keeps its pages and finished lines: the natural-key upserts overwrite the rest."""
    doc = repo.get_document(s, document_id, lock=True)
    if doc.status == DocumentStatus.FAILED:
        repo.start_document(s, document_id)
    elif doc.status != DocumentStatus.DONE:
        doc.status, doc.error = DocumentStatus.PROCESSING.value, None
        s.flush()
    return doc


def pending_lines(s: Session, line_ids: Sequence[int]) -> list[tuple[int, int]]:
    """(line_id, width) of those lines still waiting for text, for batching by width."""
    if not line_ids:
        return []
    rows = s.execute(select(Line.id, Line.x1 - Line.x0).where(
        Line.id.in_(line_ids), Line.status == LineStatus.PENDING.value))
    return [(int(i), int(w)) for i, w in rows]


def claim_lines(
    s: Session, line_ids: Sequence[int], *, profile: str | None, extra: int, lease_s: int,
) -> list[tuple[int, str, str]]:
    """Lease the given pending lines plus up to `extra` unleased pending lines of other documents
    with the same profile (cross-document batching); returns (line_id, crop_key, document_id).

    The task's own lines are always taken, leased or not, so a crashed peer's lease can never
    strand them; the extras are only lines nobody holds, so peers rarely duplicate work.
    """
    now = utcnow()
    own = repo.lines_to_recognize(s, line_ids)
    ids = [lid for lid, _, _ in own]
    if extra > 0 and profile is not None:
        free = or_(Line.claimed_until.is_(None), Line.claimed_until < now)
        query = (select(Line.id).join(Page).join(Document, Document.id == Page.document_id)
                 .where(Line.status == LineStatus.PENDING.value, Line.crop_key.is_not(None),
                        Document.profile == profile,
                        Document.status == DocumentStatus.PROCESSING.value, free,
                        Line.id.not_in(ids) if ids else true())
                 .order_by(Line.id).limit(extra))
        if s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=Line, skip_locked=True)
        extra_ids = list(s.scalars(query))
        if extra_ids:
            own += repo.lines_to_recognize(s, extra_ids)
            ids += extra_ids
    if ids:
        s.execute(update(Line).where(Line.id.in_(ids))
                  .values(claimed_until=now + timedelta(seconds=lease_s)))
    return own


def profile_of_lines(s: Session, line_ids: Sequence[int]) -> str | None:
    return s.scalar(select(Document.profile).join(Page, Page.document_id == Document.id)
                    .join(Line, Line.page_id == Page.id).where(Line.id.in_(line_ids)).limit(1))


def line_counts(s: Session, job_id: str) -> tuple[int, int]:
    """(lines done, lines known) over a job's documents, for a percentage finer than documents."""
    # Each document once, though the job may have sent it under several names.
    mine = select(JobDocument.document_id).where(JobDocument.job_id == job_id)
    row = s.execute(select(
        func.count(Line.id), func.count(Line.id).filter(Line.status == LineStatus.DONE.value),
    ).select_from(Page).join(Line, Line.page_id == Page.id)
        .where(Page.document_id.in_(mine))).one()
    return int(row[1]), int(row[0])


def owner_can_see_document(s: Session, owner: str | None, document_id: str) -> bool:
    """A tenant sees a document when one of its jobs asked for it."""
    return s.execute(select(func.count()).select_from(JobDocument).join(Job).where(
        JobDocument.document_id == document_id, Job.owner == owner)).scalar_one() > 0


def is_linked(s: Session, job_id: str, document_id: str) -> bool:
    return s.scalar(select(JobDocument.job_id).where(
        JobDocument.job_id == job_id, JobDocument.document_id == document_id).limit(1)) is not None


def next_position(s: Session, job_id: str) -> int:
    return int(s.scalar(select(func.coalesce(func.max(JobDocument.position) + 1, 0))
                        .where(JobDocument.job_id == job_id)) or 0)


def get_checkpoint(s: Session, prefix: str, key: str, etag: str) -> WatchCheckpoint | None:
    return s.get(WatchCheckpoint, (prefix, text_key(key), etag))


def add_checkpoint(
    s: Session, prefix: str, key: str, etag: str, *, job_id: str | None, document_id: str | None,
) -> bool:
    """Record an object as taken in (state 'seen'); False if it was already there."""
    stmt = repo._insert(s, WatchCheckpoint).values(
        prefix=prefix, key=key, key_sha256=text_key(key), etag=etag, job_id=job_id,
        document_id=document_id, state="seen", created_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["prefix", "key_sha256", "etag"])
    return bool(s.execute(stmt).rowcount)  # type: ignore[attr-defined]


def mark_queued(s: Session, prefix: str, key: str, etag: str) -> None:
    s.execute(update(WatchCheckpoint).where(and_(
        WatchCheckpoint.prefix == prefix, WatchCheckpoint.key_sha256 == text_key(key),
        WatchCheckpoint.etag == etag)).values(state="queued"))


def unqueued_checkpoints(s: Session, prefix: str) -> list[WatchCheckpoint]:
    """Objects committed but whose ingest may never have been sent (a crash in between)."""
    return list(s.scalars(select(WatchCheckpoint).where(
        WatchCheckpoint.prefix == prefix, WatchCheckpoint.state == "seen")))


def job_summary_counts(s: Session) -> dict[str, int]:
    """Jobs per status, for /metrics."""
    return {str(k): int(v) for k, v in s.execute(
        select(Job.status, func.count()).group_by(Job.status))}


def totals(s: Session) -> dict[str, int]:
    """Documents, pages and lines done, for /metrics."""
    docs = s.scalar(select(func.count()).select_from(Document).where(
        Document.status == DocumentStatus.DONE.value)) or 0
    pages = s.scalar(select(func.count()).select_from(Page)) or 0
    lines = s.scalar(select(func.count()).select_from(Line).where(
        Line.status == LineStatus.DONE.value)) or 0
    return {"documents_done": int(docs), "pages": int(pages), "lines_done": int(lines)}
