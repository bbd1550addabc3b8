"""Full-text search over lines.text: SQLite FTS5 kept in sync by triggers, PostgreSQL GIN index.

Revision ID: 0002_search
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_search"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Names shared with pipeline.db.search (queries) and migrations/env.py (autogenerate skips them).
FTS_TABLE = "lines_fts"
PG_INDEX = "ix_lines_text_tsv"

# External-content FTS5: the index holds only tokens; text stays in `lines`. The 'delete'
# command must be given the old text exactly as indexed, hence the NULL guards.
SQLITE_UP = [
    f"""CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(
        text, content='lines', content_rowid='id', tokenize='unicode61 remove_diacritics 2')""",
    f"""CREATE TRIGGER {FTS_TABLE}_ai AFTER INSERT ON lines WHEN new.text IS NOT NULL BEGIN
        INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text);
    END""",
    f"""CREATE TRIGGER {FTS_TABLE}_ad AFTER DELETE ON lines WHEN old.text IS NOT NULL BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
    # One trigger, old tokens out before new ones in: two AFTER UPDATE triggers would fire in
    # an unspecified order, and an insert before the delete corrupts the index.
    f"""CREATE TRIGGER {FTS_TABLE}_au AFTER UPDATE OF text ON lines BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text)
            SELECT 'delete', old.id, old.text WHERE old.text IS NOT NULL;
        INSERT INTO {FTS_TABLE}(rowid, text) SELECT new.id, new.text WHERE new.text IS NOT NULL;
    END""",
    # Lines read before this revision.
    f"INSERT INTO {FTS_TABLE}(rowid, text) SELECT id, text FROM lines WHERE text IS NOT NULL",
]
SQLITE_DOWN = [
    *(f"DROP TRIGGER IF EXISTS {FTS_TABLE}_{t}" for t in ("ai", "ad", "au")),
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for stmt in SQLITE_UP:
            op.execute(stmt)
    elif dialect == "postgresql":
        # 'simple': no stemming or stop words, so names and old spellings in archives match.
        op.execute(
            f"CREATE INDEX {PG_INDEX} ON lines USING gin (to_tsvector('simple', coalesce(text, '')))"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for stmt in SQLITE_DOWN:
            op.execute(stmt)
    elif dialect == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {PG_INDEX}")
