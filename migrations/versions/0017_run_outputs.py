"""What a rerun of `quire run` over many files done before needs, at a cost that does not grow
with the database: an index on documents.redo_of (each file done before is asked whether a
--redo of it waits: without it, a scan of every document per file), and run_outputs, the files
`quire run --out` wrote with what they hold and how they were on disk, so that a rerun leaves an
unchanged one alone instead of exporting it again (pipeline/run_outputs.py).

Revision ID: 0017_run_outputs
Revises: 0016_job_document_order
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_run_outputs"
down_revision: str | None = "0016_job_document_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_documents_redo_of", "documents", ["redo_of"])
    # Files written before this are not recorded: the next run writes them once more, then
    # leaves them alone.
    op.create_table(
        "run_outputs",
        sa.Column("path_sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("ctime_ns", sa.BigInteger(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"], ondelete="CASCADE",
                                name=op.f("fk_run_outputs_document_id_documents")),
        sa.PrimaryKeyConstraint("path_sha256", name=op.f("pk_run_outputs")),
    )
    op.create_index("ix_run_outputs_document_id", "run_outputs", ["document_id"])


def downgrade() -> None:
    op.drop_index("ix_run_outputs_document_id", table_name="run_outputs")
    op.drop_table("run_outputs")
    op.drop_index("ix_documents_redo_of", table_name="documents")
