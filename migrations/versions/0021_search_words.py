"""PostgreSQL search finds what SQLite's does, faster: each line's words stored (lines.words and
lines.run_on_words, tsvector columns PostgreSQL keeps up to date itself), parsed from the text
with "+-./:@~<>&_" as spaces, each GIN-indexed in place of 0002's and 0015's expression indexes.

PostgreSQL's parser kept "12.50", "2024-03-05", an e-mail address and a hyphenated compound as
tokens of their own, so a search for a price or a date found nothing there, where SQLite's FTS5
(words of letters and digits) found it. Stored, because ranking and the run-on search's tests of
each candidate line parsed the text again per row: 4x as long for a common word. Adding the
columns rewrites `lines` (minutes on a large archive, once). SQLite: nothing changes.

Revision ID: 0021_search_words
Revises: 0020_webhook_resend
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021_search_words"
down_revision: str | None = "0020_webhook_resend"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As pipeline.db.search.words_of (a test holds them equal); frozen here as this revision made them.
GLUE = "+-./:@~<>&_"


def _words(column: str) -> str:
    return f"to_tsvector('simple', translate(coalesce({column}, ''), '{GLUE}', '{' ' * len(GLUE)}'))"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_lines_text_tsv")
    op.execute("DROP INDEX IF EXISTS ix_lines_run_on_tsv")
    # One ALTER: the table is rewritten once for both columns.
    op.execute(f"ALTER TABLE lines ADD COLUMN words tsvector GENERATED ALWAYS AS ({_words('text')}) "
               f"STORED, ADD COLUMN run_on_words tsvector GENERATED ALWAYS AS ({_words('run_on')}) "
               "STORED")
    op.execute("CREATE INDEX ix_lines_words ON lines USING gin (words)")
    op.execute("CREATE INDEX ix_lines_run_on_words ON lines USING gin (run_on_words)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_lines_words")
    op.execute("DROP INDEX IF EXISTS ix_lines_run_on_words")
    op.execute("ALTER TABLE lines DROP COLUMN words, DROP COLUMN run_on_words")
    op.execute("CREATE INDEX ix_lines_text_tsv ON lines "
               "USING gin (to_tsvector('simple', coalesce(text, '')))")
    op.execute("CREATE INDEX ix_lines_run_on_tsv ON lines "
               "USING gin (to_tsvector('simple', coalesce(run_on, '')))")
