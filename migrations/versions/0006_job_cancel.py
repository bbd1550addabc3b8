"""Jobs can be cancelled: 'cancelled' joins the job statuses.

Revision ID: 0006_job_cancel
Revises: 0005_page_rotation
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_job_cancel"
down_revision: str | None = "0005_page_rotation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "status IN ('queued', 'running', 'done', 'failed', 'partial')"
AFTER = "status IN ('queued', 'running', 'done', 'failed', 'partial', 'cancelled')"


def _check(condition: str) -> None:
    # SQLite rebuilds the table to change a CHECK: pipeline.db.session.upgrade runs migrations
    # with its foreign keys off, so the rebuild does not cascade into job_documents.
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_jobs_status"), condition)


def upgrade() -> None:
    _check(AFTER)


def downgrade() -> None:
    op.execute("UPDATE jobs SET status = 'failed' WHERE status = 'cancelled'")
    _check(BEFORE)
