"""Full-text search over recognized lines: SQLite FTS5 (embedded) or PostgreSQL tsvector."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline.errors import ConfigError
from pipeline.search import MARK_END, MARK_START, SearchHit, fts5_query, tsquery
from pipeline.types import BBox

# Created by migrations/versions/0002_search.py; the models do not declare them.
FTS_TABLE = "lines_fts"
PG_INDEX = "ix_lines_text_tsv"


def is_search_object(name: str | None, type_: str) -> bool:
    """True for the FTS table, its shadow tables and the GIN index (outside the models)."""
    if name is None:
        return False
    if type_ == "table":
        return name == FTS_TABLE or name.startswith(FTS_TABLE + "_")
    return type_ == "index" and name == PG_INDEX


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic autogenerate filter: compare everything but the search objects."""
    return not is_search_object(name, type_)


def search_lines(
    s: Session, query: str, *, limit: int = 20, owner: str | None = None
) -> list[SearchHit]:
    """Lines whose recognized text matches `query` (all words, "phrases", prefix*), best first.

    SQLite: FTS5 ranked by bm25; PostgreSQL: the GIN-indexed tsvector ranked by ts_rank.
    owner: only documents of that owner's jobs (an API token's id); None searches everything.
    """
    limit = max(1, min(int(limit), 500))
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        match = fts5_query(query)
        sql = SQLITE_SEARCH
    elif dialect == "postgresql":
        match = tsquery(query)
        sql = PG_SEARCH
    else:  # pragma: no cover - the project supports these two
        raise ConfigError(f"full-text search is not available on {dialect}")
    if match is None:
        return []
    owner_clause = OWNER_CLAUSE if owner is not None else ""
    # The same file read under two settings (another model, --decode) has its lines twice: the
    # same text at the same place is one hit, the best ranked. Twice the rows allow for that.
    rows = s.execute(text(sql.format(owner=owner_clause)),
                     {"q": match, "limit": 2 * limit, "owner": owner, "a": MARK_START,
                      "b": MARK_END})
    hits, seen = [], set()
    for r in rows:
        place = (r.sha256, r.number, r.position, r.text)
        if place in seen:
            continue
        seen.add(place)
        hits.append(SearchHit(
            document_id=r.document_id, document_name=r.name, page=r.number, line=r.position + 1,
            text=r.text, bbox=BBox(r.x0, r.y0, r.x1, r.y1), confidence=r.confidence or 0.0,
            score=float(r.score), marked=r.marked or ""))
    return hits[:limit]


OWNER_CLAUSE = """
  AND EXISTS (SELECT 1 FROM job_documents jd JOIN jobs j ON j.id = jd.job_id
              WHERE jd.document_id = d.id AND j.owner = :owner)"""

# A --redo's reading in progress (redo_of set) is not searched: its document's reading is.
# bm25() is lower-is-better; negated so every backend's score is higher-is-better.
SQLITE_SEARCH = f"""
SELECT d.id AS document_id, d.name, d.sha256, p.number, l.position, l.x0, l.y0, l.x1, l.y1, l.text,
       l.confidence, -bm25({FTS_TABLE}) AS score,
       highlight({FTS_TABLE}, 0, :a, :b) AS marked
FROM {FTS_TABLE}
JOIN lines l ON l.id = {FTS_TABLE}.rowid
JOIN pages p ON p.id = l.page_id
JOIN documents d ON d.id = p.document_id
WHERE {FTS_TABLE} MATCH :q AND d.redo_of IS NULL{{owner}}
ORDER BY bm25({FTS_TABLE}), d.name, p.number, l.position
LIMIT :limit"""

# The expression matches the index of 0002_search exactly, so the planner can use it.
_TSV = "to_tsvector('simple', coalesce(l.text, ''))"
PG_SEARCH = f"""
SELECT d.id AS document_id, d.name, d.sha256, p.number, l.position, l.x0, l.y0, l.x1, l.y1, l.text,
       l.confidence, ts_rank({_TSV}, q.query) AS score,
       ts_headline('simple', l.text, q.query,
                   'StartSel=' || :a || ', StopSel=' || :b || ', HighlightAll=true') AS marked
FROM lines l
CROSS JOIN (SELECT to_tsquery('simple', :q) AS query) q
JOIN pages p ON p.id = l.page_id
JOIN documents d ON d.id = p.document_id
WHERE {_TSV} @@ q.query AND d.redo_of IS NULL{{owner}}
ORDER BY score DESC, d.name, p.number, l.position
LIMIT :limit"""
