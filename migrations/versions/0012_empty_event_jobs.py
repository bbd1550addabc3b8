"""Remove the empty jobs the old S3 event route left 'queued' for ever.

Until session 36, POST /v1/events/s3 made a job (no idempotency key, no webhook, not taking
more documents) and then answered 404 when the notified object was gone: each of the sender's
retries left one more job with no documents that nothing would ever finish. The job id was
never told to anyone (the answer was the 404); the jobs only swell `GET /v1/jobs` and the
`quire_jobs{status="queued"}` gauge. They hold nothing: no document link, no checkpoint, no
result, no webhook to send, so they are deleted rather than settled as 'failed' (which would
count failures nobody had). No current code path makes such a job (those without a key are
`quire run`'s, which have `local_run`, or are made taking documents), so the match is exact;
a job with any document, checkpoint, key, webhook or run record is kept whatever its state.

An old API process still serving an event while this runs may find its new job gone when it
links the object; that request fails (500) and the sender's retry goes to the new route.

Revision ID: 0012_empty_event_jobs
Revises: 0011_checkpoints_per_owner
Create Date: 2026-11-27
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_empty_event_jobs"
down_revision: str | None = "0011_checkpoints_per_owner"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

EMPTY_EVENT_JOB = (
    "status = 'queued' AND accepting = :no AND documents_total = 0 AND idempotency_key IS NULL "
    "AND webhook_url IS NULL AND local_run IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM job_documents WHERE job_documents.job_id = jobs.id) "
    "AND NOT EXISTS (SELECT 1 FROM watch_checkpoints WHERE watch_checkpoints.job_id = jobs.id)"
)


def upgrade() -> None:
    removed = op.get_bind().execute(
        sa.text(f"DELETE FROM jobs WHERE {EMPTY_EVENT_JOB}").bindparams(no=False)).rowcount
    if removed:
        log.info("removed %d empty job(s) the old S3 event route left queued", removed)


def downgrade() -> None:
    # Nothing to put back: the removed jobs held nothing, and the old route made them anew.
    pass
