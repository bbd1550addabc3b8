"""Search across line breaks: lines.run_on (a line's text joined with the next one's, a word
hyphenated at the line end whole) with its own full-text index, filled for pages read before.

Revision ID: 0015_run_on_search
Revises: 0014_pending_deletions
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_run_on_search"
down_revision: str | None = "0014_pending_deletions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Names shared with pipeline.db.search (queries, and autogenerate skips them).
FTS_TABLE = "lines_run_on_fts"
PG_INDEX = "ix_lines_run_on_tsv"

# As lines_fts in 0002_search: external content, old tokens out before new ones in. No insert
# trigger: a new line has no run-on text until its page is read.
SQLITE_UP = [
    f"""CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(
        run_on, content='lines', content_rowid='id', tokenize='unicode61 remove_diacritics 2')""",
    f"""CREATE TRIGGER {FTS_TABLE}_ad AFTER DELETE ON lines WHEN old.run_on IS NOT NULL BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, run_on) VALUES ('delete', old.id, old.run_on);
    END""",
    f"""CREATE TRIGGER {FTS_TABLE}_au AFTER UPDATE OF run_on ON lines BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, run_on)
            SELECT 'delete', old.id, old.run_on WHERE old.run_on IS NOT NULL;
        INSERT INTO {FTS_TABLE}(rowid, run_on) SELECT new.id, new.run_on WHERE new.run_on IS NOT NULL;
    END""",
]


def upgrade() -> None:
    # The migration calls the runtime's own joining (plain SQL, no models) so that pages read
    # before it are joined exactly as pages read after it.
    from pipeline.db.runon import fill_run_on

    op.add_column("lines", sa.Column("run_on", sa.Text(), nullable=True))
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for stmt in SQLITE_UP:
            op.execute(stmt)
    elif dialect == "postgresql":
        op.execute(f"CREATE INDEX {PG_INDEX} ON lines "
                   "USING gin (to_tsvector('simple', coalesce(run_on, '')))")
    conn = op.get_bind()
    # Pages read before: those all read (as repo.set_line_texts joins them going forward).
    fill_run_on(conn, [row.id for row in conn.execute(sa.text(
        "SELECT id FROM pages WHERE status = 'done' ORDER BY id"))])


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for stmt in (f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ad", f"DROP TRIGGER IF EXISTS {FTS_TABLE}_au",
                     f"DROP TABLE IF EXISTS {FTS_TABLE}"):
            op.execute(stmt)
        # Not batch mode: rebuilding `lines` would drop lines_fts's triggers with it.
        op.execute("ALTER TABLE lines DROP COLUMN run_on")
    else:
        op.execute(f"DROP INDEX IF EXISTS {PG_INDEX}")
        op.drop_column("lines", "run_on")
