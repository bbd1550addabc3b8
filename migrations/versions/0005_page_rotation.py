"""The quarter turn that set each page upright before it was read (sideways and upside-down scans).

Revision ID: 0005_page_rotation
Revises: 0004_link_names
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_page_rotation"
down_revision: str | None = "0004_link_names"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Pages read before this revision were read as they came: 0.
    op.add_column("pages", sa.Column("rotation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.drop_column("rotation")
