"""jobs.webhook_due_at and jobs.webhook_attempts: when an owed completion webhook's last try ends,
so a finish worker sends it again within minutes when the notify task was lost with a killed
worker, instead of after Redis's visibility timeout (pipeline/webhook_sweep.py).

Jobs finished before this keep webhook_due_at empty: their webhooks are left as they were (one
given up long ago is not sent now).

Revision ID: 0020_webhook_resend
Revises: 0019_content_claims
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_webhook_resend"
down_revision: str | None = "0019_content_claims"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("webhook_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("webhook_attempts", sa.Integer(), server_default="0",
                                   nullable=False))
    op.create_index(op.f("ix_jobs_webhook_due_at"), "jobs", ["webhook_due_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_jobs_webhook_due_at"), table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("webhook_attempts")
        batch.drop_column("webhook_due_at")
