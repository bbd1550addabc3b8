"""Each job's own name for its documents: the same bytes sent by two tenants under two names.

Revision ID: 0004_link_names
Revises: 0003_api
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_link_names"
down_revision: str | None = "0003_api"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: links made before this revision show the document's first name, as they did.
    op.add_column("job_documents", sa.Column("name", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_documents") as batch:
        batch.drop_column("name")
