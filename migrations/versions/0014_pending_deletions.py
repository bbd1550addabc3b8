"""A table of store objects to delete (pending_deletions): the page images and crops a `quire run
--redo` let go of, recorded with the change that let go of them, so that a run killed before it
deleted them leaves the next run a list to finish instead of strays nothing names.

Revision ID: 0014_pending_deletions
Revises: 0013_run_heartbeat
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_pending_deletions"
down_revision: str | None = "0013_run_heartbeat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Strays left before this (a run killed between a --redo's adoption and its deletions) were
    # never recorded: nothing names them, so they cannot be listed here.
    op.create_table(
        "pending_deletions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_deletions")),
    )


def downgrade() -> None:
    # Objects still listed become strays again, as they were before this revision.
    op.drop_table("pending_deletions")
