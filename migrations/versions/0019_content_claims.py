"""content_claims: the files whose stored objects a clean-up is deleting now, outside any
transaction, so that no document of those bytes is made meanwhile (pipeline/cleanup.py,
pipeline/db/locks.py).

Revision ID: 0019_content_claims
Revises: 0018_file_hashes
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_content_claims"
down_revision: str | None = "0018_file_hashes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "content_claims",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_claims")),
    )
    op.create_index(op.f("ix_content_claims_sha256"), "content_claims", ["sha256"])


def downgrade() -> None:
    # A claim is only ever held for a batch of deletes; a clean-up killed during one left its
    # record in pending_deletions, which the next run carries out again.
    op.drop_index(op.f("ix_content_claims_sha256"), table_name="content_claims")
    op.drop_table("content_claims")
