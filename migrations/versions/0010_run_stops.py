"""`quire run` stops safely: a stopped or killed run's job ends 'stopped', knows the process that
ran it and how many inputs it had; a --redo reads into a document row of its own until it is
complete, so a killed --redo leaves the earlier reading in place.

Revision ID: 0010_run_stops
Revises: 0009_link_name_index
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_run_stops"
down_revision: str | None = "0009_link_name_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "status IN ('queued', 'running', 'done', 'failed', 'partial', 'cancelled')"
AFTER = "status IN ('queued', 'running', 'done', 'failed', 'partial', 'cancelled', 'stopped')"
REDO_FK = "fk_documents_redo_of_documents"


def upgrade() -> None:
    # SQLite rebuilds the tables (pipeline.db.session.upgrade turns its foreign keys off
    # meanwhile, so the rebuild does not cascade into the rows that refer to them).
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_jobs_status"), AFTER)
        batch.add_column(sa.Column("local_run", sa.JSON(), nullable=True))
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("redo_of", sa.String(36), nullable=True))
        batch.create_foreign_key(op.f(REDO_FK), "documents", ["redo_of"], ["id"], ondelete="CASCADE")


def downgrade() -> None:
    # An unfinished re-read is dropped (the reading it would have replaced is kept).
    op.execute("DELETE FROM lines WHERE page_id IN (SELECT p.id FROM pages p JOIN documents d "
               "ON d.id = p.document_id WHERE d.redo_of IS NOT NULL)")
    op.execute("DELETE FROM pages WHERE document_id IN (SELECT id FROM documents WHERE redo_of IS NOT NULL)")
    op.execute("DELETE FROM documents WHERE redo_of IS NOT NULL")
    with op.batch_alter_table("documents") as batch:
        batch.drop_constraint(op.f(REDO_FK), type_="foreignkey")
        batch.drop_column("redo_of")
    op.execute("UPDATE jobs SET status = 'failed' WHERE status = 'stopped'")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("local_run")
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_jobs_status"), BEFORE)
