"""Full-text search over recognized lines: SQLite FTS5 (embedded) or PostgreSQL tsvector."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from pipeline.db.models import UTCDateTime
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
    s: Session, query: str, *, limit: int = 20, owner: str | None = None,
    superseded: bool = False,
) -> list[SearchHit]:
    """Lines whose recognized text matches `query` (all words, "phrases", prefix*), best first.

    SQLite: FTS5 ranked by bm25; PostgreSQL: the GIN-indexed tsvector ranked by ts_rank.
    owner: only documents of that owner's jobs (an API token's id); None searches everything.
    Only the current reading of each file name is searched: a file replaced under its name
    (a rescan) no longer holds its old text. superseded=True searches those old readings too,
    each hit flagged `superseded` (see `SUPERSEDED`).
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
    link_owner = LINK_OWNER if owner is not None else ""
    where = OWNER_CLAUSE if owner is not None else ""
    if not superseded:
        where += "\n  AND NOT " + SUPERSEDED.format(owner=link_owner)
    # The same file read under two settings (another model, --decode) has its lines twice: the
    # same text at the same place is one hit, the best ranked. Twice the rows allow for that.
    rows = s.execute(text(sql.format(where=where)),
                     {"q": match, "limit": 2 * limit, "owner": owner, "a": MARK_START,
                      "b": MARK_END}).all()
    names = _names(s, {r.document_id for r in rows}, owner)
    hits, seen = [], set()
    for r in rows:
        place = (r.sha256, r.number, r.position, r.text)
        if place in seen:
            continue
        seen.add(place)
        shown = names.get(r.document_id)
        hits.append(SearchHit(
            document_id=r.document_id, document_name=shown.name if shown else r.name,
            page=r.number, line=r.position + 1, text=r.text, bbox=BBox(r.x0, r.y0, r.x1, r.y1),
            confidence=r.confidence or 0.0, score=float(r.score), marked=r.marked or "",
            superseded=shown.superseded if shown else False,
            read_at=shown.read_at if shown else None))
    return hits[:limit]


@dataclass(frozen=True)
class _Shown:
    """How a document's hits are named: a name it was sent by, whether every name it was sent
    by now holds other bytes, and when it was read."""

    name: str
    superseded: bool
    read_at: datetime | None


def _names(s: Session, document_ids: set[str], owner: str | None) -> dict[str, _Shown]:
    """Each document's name for its hits: one it is still the current reading of, its first
    name where that is one (the name it has always been shown by); else, superseded, its first
    name. With an owner, only that owner's names count (tenants name shared files apart)."""
    if not document_ids:
        return {}
    sql = text(LINKS.format(owner=LINK_OWNER if owner is not None else "",
                            replaced=REPLACED_LATER)).bindparams(
        bindparam("ids", expanding=True)).columns(created_at=UTCDateTime(), updated_at=UTCDateTime())
    best: dict[str, tuple[tuple, _Shown]] = {}
    for r in s.execute(sql, {"ids": sorted(document_ids), "owner": owner}):
        key = (bool(r.replaced), r.name != r.first_name, r.created_at, r.position)
        if r.document_id not in best or key < best[r.document_id][0]:
            best[r.document_id] = (key, _Shown(r.name, bool(r.replaced), r.updated_at))
    return {doc_id: shown for doc_id, (_, shown) in best.items()}


OWNER_CLAUSE = """
  AND EXISTS (SELECT 1 FROM job_documents jd JOIN jobs j ON j.id = jd.job_id
              WHERE jd.document_id = d.id AND j.owner = :owner)"""
LINK_OWNER = " AND j.owner = :owner"

# A name (link jd of job j to document d) now holds other bytes: a later job of the same owner
# sent that name with another file (a rescan), which was read. A rescan that failed, or is not
# read yet, leaves the old reading current, as `quire export NAME` does. Plain SQL for both
# backends; job_documents.name_sha256 is indexed for it.
REPLACED_LATER = """EXISTS (
      SELECT 1 FROM job_documents later JOIN jobs lj ON lj.id = later.job_id
      JOIN documents ld ON ld.id = later.document_id
      WHERE later.name_sha256 = jd.name_sha256 AND coalesce(lj.owner, '') = coalesce(j.owner, '')
        AND lj.created_at > j.created_at AND ld.sha256 <> d.sha256 AND ld.status = 'done')"""

# A document is superseded when every name it was sent by (the owner's, with an owner) was
# replaced. One no job names (made outside a run) is never superseded.
SUPERSEDED = """(EXISTS (SELECT 1 FROM job_documents jd JOIN jobs j ON j.id = jd.job_id
                WHERE jd.document_id = d.id{owner})
   AND NOT EXISTS (SELECT 1 FROM job_documents jd JOIN jobs j ON j.id = jd.job_id
                   WHERE jd.document_id = d.id{owner} AND NOT """ + REPLACED_LATER + "))"

# The names the documents of some hits were sent by, each flagged when replaced since.
LINKS = """
SELECT jd.document_id, jd.name, jd.position, j.created_at, d.name AS first_name, d.updated_at,
       CASE WHEN {replaced} THEN 1 ELSE 0 END AS replaced
FROM job_documents jd
JOIN jobs j ON j.id = jd.job_id
JOIN documents d ON d.id = jd.document_id
WHERE jd.document_id IN :ids{owner}"""

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
WHERE {FTS_TABLE} MATCH :q AND d.redo_of IS NULL{{where}}
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
WHERE {_TSV} @@ q.query AND d.redo_of IS NULL{{where}}
ORDER BY score DESC, d.name, p.number, l.position
LIMIT :limit"""
