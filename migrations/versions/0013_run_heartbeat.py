"""`quire run` jobs carry a heartbeat (jobs.heartbeat_at), renewed while the run goes on, so that
a run killed on one host is told from a live one by another host sharing the database.

Revision ID: 0013_run_heartbeat
Revises: 0012_empty_event_jobs
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_run_heartbeat"
down_revision: str | None = "0012_empty_event_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Runs begun before have none: from another host they cannot be told, as before.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("heartbeat_at")
