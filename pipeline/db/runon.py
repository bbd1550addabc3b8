"""Each line's run-on text (lines.run_on): its text joined with the next line's, which search
indexes so that a phrase or a hyphenated word cut by a line break is found (pipeline.db.search).

Lines are read one at a time in any order, so the run-on text is written once a page's lines are
all read (repo.set_line_texts), again when its lines change (repo.save_lines) and when its
document is finished, and for pages read before it by migration 0015. Plain SQL, no models, so
that the migration can use it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, text

from pipeline.search import join_lines

CHUNK = 500  # pages per query: bounded memory and IN lists on a database of any size

_LINES = text("""
SELECT id, page_id, position, text, run_on, x0, y0, x1, y1 FROM lines
WHERE page_id IN :pages ORDER BY page_id, position""").bindparams(
    bindparam("pages", expanding=True))
ROWS = 1000  # rows per UPDATE: 2 parameters each, well under SQLite's limit of 32766


def _set(conn: Any, updates: Sequence[tuple[int, str | None]]) -> None:
    """One UPDATE ... FROM (VALUES ...) per ROWS rows (SQLite and PostgreSQL alike): an
    executemany is a round trip a row on PostgreSQL, minutes for a large archive's migration."""
    for start in range(0, len(updates), ROWS):
        part = updates[start:start + ROWS]
        values = ", ".join(f"(:i{k}, :r{k})" for k in range(len(part)))
        params: dict[str, Any] = {}
        for k, (line_id, run_on) in enumerate(part):
            params[f"i{k}"], params[f"r{k}"] = line_id, run_on
        conn.execute(text(f"UPDATE lines SET run_on = v.column2 FROM (VALUES {values}) AS v "
                          "WHERE lines.id = v.column1"), params)


def follows(line: Any, after: Any) -> bool:
    """Whether `after` goes on from `line` in the same column: the next in reading order, below
    it and overlapping it across. Reading order that goes back up or beside is a new column (or
    a block set apart), which a sentence does not run on to."""
    return (after.page_id == line.page_id and after.position == line.position + 1
            and after.y0 > line.y0 and after.x0 < line.x1 and after.x1 > line.x0)


def run_on_text(line: Any, after: Any | None) -> str | None:
    """The text search indexes for a phrase starting on `line`: both lines joined (a hyphenated
    word whole), or None where there is no next line in its column or a text is missing."""
    if after is None or not line.text or not after.text or not follows(line, after):
        return None
    return join_lines(line.text, after.text).window


def fill_run_on(conn: Any, page_ids: Iterable[int]) -> int:
    """Set lines.run_on on every line of these pages (a Session or a Connection); only rows whose
    value changes are written. Returns how many were."""
    pages = sorted(set(page_ids))
    changed = 0
    for start in range(0, len(pages), CHUNK):
        rows: Sequence[Any] = conn.execute(_LINES, {"pages": pages[start:start + CHUNK]}).all()
        updates = []
        for i, line in enumerate(rows):
            after = rows[i + 1] if i + 1 < len(rows) else None
            wanted = run_on_text(line, after)
            if wanted != line.run_on:
                updates.append((line.id, wanted))
        _set(conn, updates)
        changed += len(updates)
    return changed


def fill_document(conn: Any, document_id: str) -> int:
    """fill_run_on for every page of a document."""
    ids = conn.execute(text("SELECT id FROM pages WHERE document_id = :d"), {"d": document_id})
    return fill_run_on(conn, [row.id for row in ids])
