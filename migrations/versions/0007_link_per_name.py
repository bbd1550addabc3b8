"""A job links a document once per name: the same bytes sent as two files are two inputs.

Revision ID: 0007_link_per_name
Revises: 0006_job_cancel
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_link_per_name"
down_revision: str | None = "0006_job_cancel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PK = "pk_job_documents"


def _key(columns: list[str], nullable: bool) -> None:
    # SQLite rebuilds the table to change its key (pipeline.db.session.upgrade turns its
    # foreign keys off meanwhile); PostgreSQL alters it in place.
    with op.batch_alter_table("job_documents") as batch:
        batch.drop_constraint(op.f(PK), type_="primary")
        batch.alter_column("name", existing_type=sa.String(1024), nullable=nullable)
        batch.create_primary_key(op.f(PK), columns)


def upgrade() -> None:
    # Links made before 0004 have no name: they keep the one they showed, the document's.
    op.execute("UPDATE job_documents SET name = (SELECT d.name FROM documents d "
               "WHERE d.id = job_documents.document_id) WHERE name IS NULL")
    _key(["job_id", "document_id", "name"], nullable=False)


def downgrade() -> None:
    # One link per (job, document) again: each job keeps the name it sent the document by first.
    op.execute("DELETE FROM job_documents WHERE EXISTS (SELECT 1 FROM job_documents o "
               "WHERE o.job_id = job_documents.job_id AND o.document_id = job_documents.document_id "
               "AND o.position < job_documents.position)")
    _key(["job_id", "document_id"], nullable=True)
