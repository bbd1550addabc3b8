"""Job API and distributed runs: API tokens, watcher checkpoints, webhook and lease columns.

Revision ID: 0003_api
Revises: 0002_search
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_api"
down_revision: str | None = "0002_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_owner"), "api_tokens", ["owner"])

    op.create_table(
        "watch_checkpoints",
        sa.Column("prefix", sa.String(1024), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("document_id", sa.String(36), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("prefix", "key", "etag", name=op.f("pk_watch_checkpoints")),
    )
    op.create_index(op.f("ix_watch_checkpoints_state"), "watch_checkpoints", ["state"])

    # Plain ADD COLUMN (no batch table copy): on SQLite a copy of `lines` would drop the
    # full-text triggers of 0002_search. Nullable or defaulted columns need no rewrite.
    op.add_column("jobs", sa.Column("webhook_sent_at", UTC, nullable=True))
    op.add_column("jobs", sa.Column("accepting", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column("lines", sa.Column("claimed_until", UTC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lines") as batch:
        batch.drop_column("claimed_until")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("accepting")
        batch.drop_column("webhook_sent_at")
    op.drop_table("watch_checkpoints")
    op.drop_table("api_tokens")
