"""Full-text search over recognized lines: SQLite FTS5 (embedded) or PostgreSQL tsvector."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from pipeline.db.models import UTCDateTime
from pipeline.errors import ConfigError
from pipeline.search import (
    HYPHENS,
    MARK_END,
    MARK_START,
    RunOn,
    SearchHit,
    fts5_query,
    join_lines,
    one_word,
    query_terms,
    split_marked,
    tsquery,
)
from pipeline.types import BBox

# Created by migrations 0002_search (each line) and 0015_run_on_search (each line run on to the
# next) on SQLite, and 0021_search_words on PostgreSQL (before it, GIN indexes on expressions);
# the models do not declare them.
FTS_TABLE = "lines_fts"
RUN_ON_FTS = "lines_run_on_fts"
# PostgreSQL: each line's words (lines.words) and its run-on text's (lines.run_on_words), stored
# tsvector columns, each GIN-indexed. Stored, not computed per row: ranking and the run-on
# search's tests of each line read them, and computing them took 4x as long (docs/BENCHMARKS.md).
WORDS, RUN_ON_WORDS = "words", "run_on_words"
PG_INDEX, RUN_ON_INDEX = "ix_lines_words", "ix_lines_run_on_words"
# PostgreSQL's parser keeps "12.50", "2024-03-05", "a@b.com" and "self-evident" as tokens of
# their own (and the compound's parts at other positions), where SQLite's FTS5 and the query
# (pipeline.search.query_terms) see words of letters and digits. These characters become spaces
# before parsing, so that both backends find the same lines. Frozen in 0021_search_words.
GLUE = "+-./:@~<>&_"


_GLUED_MARKS = re.compile(f"{MARK_END}([{re.escape(GLUE)}]+){MARK_START}")


def words_of(column: str) -> str:
    """The SQL tsvector PostgreSQL indexes for a text `column` (0021_search_words's expression)."""
    return f"to_tsvector('simple', {unglued(column)})"


def unglued(column: str) -> str:
    return f"translate(coalesce({column}, ''), '{GLUE}', '{' ' * len(GLUE)}')"


def is_search_object(name: str | None, type_: str) -> bool:
    """True for the FTS tables, their shadow tables, the tsvector columns and their GIN indexes
    (outside the models)."""
    if name is None:
        return False
    if type_ == "table":
        return any(name == t or name.startswith(t + "_") for t in (FTS_TABLE, RUN_ON_FTS))
    if type_ == "column":
        return name in (WORDS, RUN_ON_WORDS)
    return type_ == "index" and name in (PG_INDEX, RUN_ON_INDEX)


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic autogenerate filter: compare everything but the search objects."""
    return not is_search_object(name, type_)


def search_lines(
    s: Session, query: str, *, limit: int = 20, owner: str | None = None,
    superseded: bool = False,
) -> list[SearchHit]:
    """Lines whose recognized text matches `query` (all words, "phrases", prefix*), best first.

    SQLite: FTS5 ranked by bm25; PostgreSQL: the GIN-indexed tsvector ranked by ts_rank.
    Words that a line break cuts (a phrase, all the words, a hyphenated word) are found in the
    lines' run-on text (pipeline.db.runon) where neither line alone matches: one hit on the
    line where they start, its `runs_on` the next line.
    owner: only documents of that owner's jobs (an API token's id); None searches everything.
    Only the current reading of each file name is searched: a file replaced under its name
    (a rescan) no longer holds its old text. superseded=True searches those old readings too,
    each hit flagged `superseded` (see `SUPERSEDED`).
    """
    limit = max(1, min(int(limit), 500))
    dialect = s.get_bind().dialect.name
    terms = query_terms(query)
    if dialect == "sqlite":
        match = fts5_query(terms)
        sql, run_on_sql = SQLITE_SEARCH, SQLITE_RUN_ON
    elif dialect == "postgresql":
        match = tsquery(terms)
        sql, run_on_sql = PG_SEARCH, PG_RUN_ON
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
    params = {"q": match, "limit": 2 * limit, "owner": owner, "a": MARK_START, "b": MARK_END}
    if dialect == "sqlite":
        # A tenant's (owner's) hits may be few among everyone's best matches: no window then.
        windowed = owner is None
        rows, own_marks = _sqlite_own_lines(s, sql.format(where=where), params, windowed)
    else:
        rows, own_marks = list(s.execute(text(sql.format(where=where)), params)), {}
    # Run-on hits compete with the lines' own on score (both full-text ranks of a line's text,
    # the run-on one of two lines'); a stable sort keeps a line's own hit first on a tie.
    # One word runs on to the next line only where the line ends hyphenated (see one_word).
    run_on_where = (HYPHENATED[dialect] if one_word(terms) else "") + where
    rows += s.execute(text(run_on_sql.format(where=run_on_where)), params).all()
    rows.sort(key=lambda r: -float(r.score))
    names = _names(s, {r.document_id for r in rows}, owner)
    hits, seen = [], set()
    for r in rows:
        runs_on = None
        if dialect == "postgresql":
            marked = reglued(r.marked, r.run_on if "run_on" in r._fields else r.text)
        else:
            marked = r.marked if "run_on" in r._fields else own_marks.get(r.line_id, "")
        if "run_on" in r._fields:
            found = _run_on(r, marked)
            if found is None:
                continue
            marked, runs_on = found
        place = (r.sha256, r.number, r.position, r.text, runs_on.text if runs_on else None)
        if place in seen:
            continue
        seen.add(place)
        shown = names.get(r.document_id)
        hits.append(SearchHit(
            document_id=r.document_id, document_name=shown.name if shown else r.name,
            page=r.number, line=r.position + 1, text=r.text, bbox=BBox(r.x0, r.y0, r.x1, r.y1),
            confidence=r.confidence or 0.0, score=float(r.score), marked=marked or "",
            superseded=shown.superseded if shown else False,
            read_at=shown.read_at if shown else None, runs_on=runs_on))
    return hits[:limit]


def _sqlite_own_lines(s: Session, sql: str, params: dict[str, Any],
                      windowed: bool = True) -> tuple[list[Any], dict[int, str]]:
    """The lines' own hits on SQLite (SQLITE_SEARCH) and their marks by line id. The window of
    the best-ranked matches gives the same hits as all of them unless the filters left fewer
    than the limit of it, or the last hit ties with the window's last match (ties are ordered by
    name and place, which the window did not look at): then every match is ranked."""
    query = text(sql)
    rows: list[Any] = []
    windows = (max(SQLITE_WINDOW, 2 * params["limit"]), -1) if windowed else (-1,)
    for window in windows:
        rows = list(s.execute(query, {**params, "window": window}))
        if window < 0 or (rows and rows[0].ranked_rows < window) or (
                len(rows) == params["limit"] and rows[-1].rank < rows[0].edge):
            break
    if not rows:
        return [], {}
    marks = text(SQLITE_MARKS).bindparams(bindparam("ids", expanding=True))
    found = s.execute(marks, {**params, "ids": [r.line_id for r in rows]})
    return rows, {r.line_id: r.marked for r in found}


def reglued(marked: str | None, shown: str | None) -> str:
    """PostgreSQL's marks on the unglued text (`unglued`: GLUE characters as spaces) put on the
    text as shown; "" where they do not fit it (then the hit is shown unmarked)."""
    if not marked or not shown:
        return ""
    out, i = [], 0
    for ch in marked:
        if ch in (MARK_START, MARK_END):
            out.append(ch)
        elif i < len(shown):
            out.append(shown[i])
            i += 1
        else:
            return ""
    if i != len(shown):
        return ""
    # ts_headline marks each word: "[12].[50]" is shown as one, "[12.50]", as SQLite shows it.
    return _GLUED_MARKS.sub(r"\1", "".join(out))


def _run_on(r: Any, marked_window: str) -> tuple[str, RunOn] | None:
    """A run-on row's first line marked, and its next line; None where the run-on text has gone
    stale (a line changed since it was joined): then it is no hit."""
    if not r.text or not r.next_text:
        return None
    join = join_lines(r.text, r.next_text)
    if join.window != r.run_on:
        return None
    marked = split_marked(marked_window, join) or ("", "")
    return marked[0], RunOn(line=r.position + 2, text=r.next_text,
                            bbox=BBox(r.nx0, r.ny0, r.nx1, r.ny1),
                            confidence=r.next_confidence or 0.0, marked=marked[1])


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
# Ranked in two passes: the best :window matches by bm25 alone (FTS5's own, fast), and only
# those joined to their rows, filtered and ordered; joining every match first took half the
# time of a common word (docs/BENCHMARKS.md). `ranked_rows` and `edge` tell `_sqlite_own_lines`
# whether the window could have left a hit out; :window -1 takes every match.
SQLITE_SEARCH = f"""
WITH ranked AS MATERIALIZED (
  SELECT rowid AS id, bm25({FTS_TABLE}) AS rank FROM {FTS_TABLE}
  WHERE {FTS_TABLE} MATCH :q ORDER BY rank LIMIT :window)
SELECT d.id AS document_id, d.name, d.sha256, p.number, l.position, l.x0, l.y0, l.x1, l.y1, l.text,
       l.confidence, -ranked.rank AS score, l.id AS line_id, ranked.rank,
       (SELECT count(*) FROM ranked) AS ranked_rows, (SELECT max(rank) FROM ranked) AS edge
FROM ranked
JOIN lines l ON l.id = ranked.id
JOIN pages p ON p.id = l.page_id
JOIN documents d ON d.id = p.document_id
WHERE d.redo_of IS NULL{{where}}
ORDER BY ranked.rank, d.name, p.number, l.position
LIMIT :limit"""
SQLITE_WINDOW = 500
# The hits' marks, for those lines only: highlight() over every match cost as much as the rest.
# `+rowid`: one pass over the matches, filtered; FTS5 looking each id up (rowid = ?) set up a
# prefix query's doclists again for each, 30 ms for `pro*` against 1 ms.
SQLITE_MARKS = f"""
SELECT rowid AS line_id, highlight({FTS_TABLE}, 0, :a, :b) AS marked FROM {FTS_TABLE}
WHERE {FTS_TABLE} MATCH :q AND +rowid IN :ids"""

# Marked by ts_headline on the unglued text, as it was indexed; `reglued` puts the marks back
# on the text.
_HEADLINE = ("ts_headline('simple', {text}, q.query, "
             "'StartSel=' || :a || ', StopSel=' || :b || ', HighlightAll=true') AS marked")
PG_SEARCH = f"""
SELECT d.id AS document_id, d.name, d.sha256, p.number, l.position, l.x0, l.y0, l.x1, l.y1, l.text,
       l.confidence, ts_rank(l.{WORDS}, q.query) AS score,
       {_HEADLINE.format(text=unglued("l.text"))}
FROM lines l
CROSS JOIN (SELECT to_tsquery('simple', :q) AS query) q
JOIN pages p ON p.id = l.page_id
JOIN documents d ON d.id = p.document_id
WHERE l.{WORDS} @@ q.query AND d.redo_of IS NULL{{where}}
ORDER BY score DESC, d.name, p.number, l.position
LIMIT :limit"""

# Lines run on to the next (lines.run_on), where the line alone does not match and the next line
# alone does not: words within one line are that line's own hit, never also its neighbour's.
# SQLite: the lines' own matches once (`own`, a set probed per candidate; an FTS5 lookup per
# candidate took 6 s for a common word on 200,000 lines). PostgreSQL: each candidate's two texts
# tested directly, linear and about as fast as the line search (an anti-join on the lines' own
# matches let the planner pick nested loops: 10 s and worse).
_NEXT = """, l.run_on, n.text AS next_text, n.confidence AS next_confidence,
       n.x0 AS nx0, n.y0 AS ny0, n.x1 AS nx1, n.y1 AS ny1"""
_NEXT_JOIN = "JOIN lines n ON n.page_id = l.page_id AND n.position = l.position + 1"
SQLITE_RUN_ON = f"""
WITH own AS MATERIALIZED (SELECT rowid AS id FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q)
SELECT d.id AS document_id, d.name, d.sha256, p.number, l.position, l.x0, l.y0, l.x1, l.y1, l.text,
       l.confidence, -bm25({RUN_ON_FTS}) AS score,
       highlight({RUN_ON_FTS}, 0, :a, :b) AS marked{_NEXT}
FROM {RUN_ON_FTS}
JOIN lines l ON l.id = {RUN_ON_FTS}.rowid
{_NEXT_JOIN}
JOIN pages p ON p.id = l.page_id
JOIN documents d ON d.id = p.document_id
WHERE {RUN_ON_FTS} MATCH :q AND d.redo_of IS NULL
  AND l.id NOT IN (SELECT id FROM own) AND n.id NOT IN (SELECT id FROM own){{where}}
ORDER BY bm25({RUN_ON_FTS}), d.name, p.number, l.position
LIMIT :limit"""

PG_RUN_ON = f"""
SELECT d.id AS document_id, d.name, d.sha256, p.number, l.position, l.x0, l.y0, l.x1, l.y1, l.text,
       l.confidence, ts_rank(l.{RUN_ON_WORDS}, q.query) AS score,
       {_HEADLINE.format(text=unglued("l.run_on"))}{_NEXT}
FROM lines l
CROSS JOIN (SELECT to_tsquery('simple', :q) AS query) q
{_NEXT_JOIN}
JOIN pages p ON p.id = l.page_id
JOIN documents d ON d.id = p.document_id
WHERE l.{RUN_ON_WORDS} @@ q.query AND d.redo_of IS NULL
  AND NOT l.{WORDS} @@ q.query AND NOT n.{WORDS} @@ q.query{{where}}
ORDER BY score DESC, d.name, p.number, l.position
LIMIT :limit"""

# A line whose text ends with a hyphen (pipeline.search.HYPHENS): the only lines a one-word query
# can run on from. Cheap, so tested before the full-text conditions of the candidates.
_ENDS = ", ".join("'" + h + "'" for h in HYPHENS)
HYPHENATED = {"sqlite": f"\n  AND substr(rtrim(l.text), -1) IN ({_ENDS})",
              "postgresql": f"\n  AND right(rtrim(l.text), 1) IN ({_ENDS})"}
