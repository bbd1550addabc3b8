"""file_hashes: the SHA-256 of each file `quire run` read, with the stat it was taken under, so a
rerun over a collection done before does not read every file's bytes again
(pipeline/db/file_hashes.py).

Revision ID: 0018_file_hashes
Revises: 0017_run_outputs
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_file_hashes"
down_revision: str | None = "0017_run_outputs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Files read before this are hashed once more by the next run, then taken from here.
    op.create_table(
        "file_hashes",
        sa.Column("path_sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("ctime_ns", sa.BigInteger(), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("hashed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("path_sha256", name=op.f("pk_file_hashes")),
    )


def downgrade() -> None:
    op.drop_table("file_hashes")
