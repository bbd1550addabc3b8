"""job_documents.name_sha256 is indexed: search asks, for each hit, whether a later job sent its
file's name with other bytes (a rescan).

Revision ID: 0009_link_name_index
Revises: 0008_long_names
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009_link_name_index"
down_revision: str | None = "0008_long_names"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_job_documents_name_sha256"


def upgrade() -> None:
    op.create_index(op.f(INDEX), "job_documents", ["name_sha256"])


def downgrade() -> None:
    op.drop_index(op.f(INDEX), table_name="job_documents")
