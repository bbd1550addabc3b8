"""Bucket checkpoints are kept per tenant: watch_checkpoints.prefix gains `#owner=<owner>` (the
owner of the job that took the object), so one tenant's S3 event or watcher no longer makes
another's pass over the same object as already seen.

Revision ID: 0011_checkpoints_per_owner
Revises: 0010_run_stops
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_checkpoints_per_owner"
down_revision: str | None = "0010_run_stops"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARK = "#owner="  # pipeline.watch.OWNER_MARK as of this revision


def upgrade() -> None:
    # Only bucket checkpoints (a `quire submit` job's are `job:<id>`) of jobs with an owner.
    op.execute(sa.text(
        "UPDATE watch_checkpoints SET prefix = prefix || :mark || "
        "(SELECT owner FROM jobs WHERE jobs.id = watch_checkpoints.job_id) "
        "WHERE prefix LIKE 's3://%' AND prefix NOT LIKE :marked AND EXISTS "
        "(SELECT 1 FROM jobs WHERE jobs.id = watch_checkpoints.job_id AND jobs.owner IS NOT NULL)"
    ).bindparams(mark=MARK, marked=f"%{MARK}%"))


def downgrade() -> None:
    # Back to one checkpoint per bucket: where tenants both took an object, one row is kept.
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT prefix, key_sha256, etag FROM watch_checkpoints WHERE prefix LIKE :marked "
        "ORDER BY created_at"), {"marked": f"%{MARK}%"}).all()
    kept: set[tuple[str, str, str]] = set()
    for prefix, key_sha256, etag in rows:
        shared = (prefix.split(MARK, 1)[0], key_sha256, etag)
        taken = shared in kept or conn.execute(sa.text(
            "SELECT 1 FROM watch_checkpoints WHERE prefix = :p AND key_sha256 = :k AND etag = :e"),
            {"p": shared[0], "k": key_sha256, "e": etag}).first() is not None
        where = {"p": prefix, "k": key_sha256, "e": etag}
        if taken:
            conn.execute(sa.text("DELETE FROM watch_checkpoints WHERE prefix = :p "
                                 "AND key_sha256 = :k AND etag = :e"), where)
        else:
            conn.execute(sa.text("UPDATE watch_checkpoints SET prefix = :n WHERE prefix = :p "
                                 "AND key_sha256 = :k AND etag = :e"), {**where, "n": shared[0]})
            kept.add(shared)
