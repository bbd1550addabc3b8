"""An index on job_documents (job_id, position): a job's documents are listed in submission order a
page at a time (GET /v1/jobs/{id}/documents, the first ones in the job's view) without sorting
all of a job's links for each page.

Revision ID: 0016_job_document_order
Revises: 0015_run_on_search
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016_job_document_order"
down_revision: str | None = "0015_run_on_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_job_documents_job_id_position", "job_documents", ["job_id", "position"])


def downgrade() -> None:
    op.drop_index("ix_job_documents_job_id_position", table_name="job_documents")
