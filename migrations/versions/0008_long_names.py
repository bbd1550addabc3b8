"""Names and paths of any length: keyed by their SHA-256, not by their text.

A job link was keyed by (job, document, name) and a checkpoint by (prefix, key, etag), the key a
file's URI: a long non-ASCII path (past about 2,700 bytes) outgrew what a PostgreSQL btree entry
holds, and the insert failed, ending the submission; a name or URI past 1,024 characters did not
fit its column. The keys now hold the text's SHA-256 (hex, of its UTF-8) and the text is TEXT.

Revision ID: 0008_long_names
Revises: 0007_link_per_name
Create Date: 2026-11-24
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_long_names"
down_revision: str | None = "0007_link_per_name"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, text column, its hash column, the key with the text, the key with the hash)
KEYED = [
    ("job_documents", "name", "name_sha256",
     ["job_id", "document_id", "name"], ["job_id", "document_id", "name_sha256"]),
    ("watch_checkpoints", "key", "key_sha256",
     ["prefix", "key", "etag"], ["prefix", "key_sha256", "etag"]),
]
# What revision 0007 holds on PostgreSQL: VARCHAR(1024), and a btree entry of 2,704 bytes with
# the key's other columns beside the text.
OLD_CHARACTERS, OLD_KEY_BYTES = 1024, 2600


def _sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _fill(table: str, column: str, hashed: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"UPDATE {table} SET {hashed} = encode(sha256(convert_to({column}, 'UTF8')), 'hex')")
    else:  # SQLite has no SHA-256 of its own: Python's, registered on this connection
        bind.connection.dbapi_connection.create_function("quire_sha256", 1, _sha256, deterministic=True)
        op.execute(f"UPDATE {table} SET {hashed} = quire_sha256({column})")


def _rekey(table: str, columns: list[str], alter) -> None:
    # SQLite rebuilds the table to change its key (pipeline.db.session.upgrade turns its foreign
    # keys off meanwhile); PostgreSQL alters it in place.
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(op.f(f"pk_{table}"), type_="primary")
        alter(batch)
        batch.create_primary_key(op.f(f"pk_{table}"), columns)


def upgrade() -> None:
    for table, column, hashed, _, new_key in KEYED:
        op.add_column(table, sa.Column(hashed, sa.String(64), nullable=True))
        _fill(table, column, hashed)

        def alter(batch, column=column, hashed=hashed) -> None:
            batch.alter_column(hashed, existing_type=sa.String(64), nullable=False)
            batch.alter_column(column, existing_type=sa.String(1024), type_=sa.Text(),
                               existing_nullable=False)

        _rekey(table, new_key, alter)
    with op.batch_alter_table("documents") as batch:
        batch.alter_column("name", existing_type=sa.String(1024), type_=sa.Text(),
                           existing_nullable=False)


def _refuse_what_0007_cannot_hold() -> None:
    """PostgreSQL would refuse the old key or column for such rows half-way through; say so
    first, with what to do."""
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite holds text of any length in any column and key
    too_long = {
        "job link names": "SELECT count(*) FROM job_documents WHERE char_length(name) > :chars "
                          "OR octet_length(name) > :key_bytes",
        "checkpoint keys": "SELECT count(*) FROM watch_checkpoints WHERE char_length(key) > :chars "
                           "OR octet_length(key) > :key_bytes",
        "document names": "SELECT count(*) FROM documents WHERE char_length(name) > :chars",
    }
    found = {what: op.get_bind().scalar(sa.text(sql), {"chars": OLD_CHARACTERS, "key_bytes": OLD_KEY_BYTES})
             for what, sql in too_long.items()}
    found = {what: count for what, count in found.items() if count}
    if found:
        counts = ", ".join(f"{count} {what}" for what, count in found.items())
        raise RuntimeError(f"cannot downgrade below 0008_long_names: {counts} are longer than revision "
                           f"0007 holds ({OLD_CHARACTERS} characters, {OLD_KEY_BYTES} bytes in a key); "
                           "delete those jobs or documents first")


def downgrade() -> None:
    _refuse_what_0007_cannot_hold()
    with op.batch_alter_table("documents") as batch:
        batch.alter_column("name", existing_type=sa.Text(), type_=sa.String(1024),
                           existing_nullable=False)
    for table, column, hashed, old_key, _ in KEYED:

        def alter(batch, column=column, hashed=hashed) -> None:
            batch.alter_column(column, existing_type=sa.Text(), type_=sa.String(1024),
                               existing_nullable=False)
            batch.drop_column(hashed)

        _rekey(table, old_key, alter)
