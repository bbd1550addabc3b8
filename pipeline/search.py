"""Full-text search over recognized lines: the hit type and safe query building (no SQL here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pipeline.types import BBox

# A quoted phrase, or a run of non-space characters.
_TERM = re.compile(r'"([^"]*)"?|(\S+)')
_WORD = re.compile(r"\w+", re.UNICODE)
MARK_START, MARK_END = "\x02", "\x03"  # around matched words in SearchHit.marked


@dataclass(frozen=True)
class SearchHit:
    """One matching line: where it is (document, page, line, box) and what it says."""

    document_id: str
    document_name: str
    page: int  # 1-based page number
    line: int  # 1-based line number on the page, in reading order
    text: str
    bbox: BBox
    confidence: float
    score: float  # higher is better (bm25 / ts_rank, made comparable in sign only)
    marked: str = ""  # text with matches between MARK_START and MARK_END
    # The file was since replaced under its name (a rescan): this reading is no longer its text.
    superseded: bool = False
    read_at: datetime | None = None  # when this reading was made

    def highlighted(self, start: str = "[", end: str = "]") -> str:
        return (self.marked or self.text).replace(MARK_START, start).replace(MARK_END, end)

    def to_dict(self) -> dict[str, object]:
        return {
            "document_id": self.document_id, "document": self.document_name, "page": self.page,
            "line": self.line, "text": self.text, "bbox": self.bbox.as_list(),
            "confidence": round(self.confidence, 4), "score": round(self.score, 6),
            "highlight": self.highlighted("<mark>", "</mark>") if self.marked else None,
            "superseded": self.superseded,
            "read_at": self.read_at.isoformat() if self.read_at else None,
        }


def query_terms(user_text: str) -> list[tuple[str, bool]]:
    """(phrase, prefix) pairs from what a person typed: "quoted phrases" stay together, a
    trailing * asks for a prefix; everything else that is not a word character is dropped,
    so operators and stray quotes in the input can never become query syntax."""
    terms: list[tuple[str, bool]] = []
    for match in _TERM.finditer(user_text):
        phrase, bare = match.group(1), match.group(2)
        raw = phrase if phrase is not None else bare
        words = _WORD.findall(raw)
        if words:
            terms.append((" ".join(words), bare is not None and bare.endswith("*")))
    return terms


def fts5_query(user_text: str) -> str | None:
    """An SQLite FTS5 MATCH expression: every term must appear (AND), each a quoted string.
    None when nothing searchable is left (the caller returns no hits)."""
    parts = []
    for words, prefix in query_terms(user_text):
        quoted = '"' + words.replace('"', '""') + '"'
        parts.append(quoted + " *" if prefix else quoted)
    return " ".join(parts) or None


def tsquery(user_text: str) -> str | None:
    """The same terms for PostgreSQL's to_tsquery: each word quoted (only word characters are
    left, so nothing in it is syntax), a phrase's words in sequence (<->), a prefix as :*, every
    term required (&). None when nothing searchable is left."""
    parts = []
    for words, prefix in query_terms(user_text):
        phrase = " <-> ".join(f"'{word}'" for word in words.split())
        parts.append(f"({phrase}:*)" if prefix else f"({phrase})")
    return " & ".join(parts) or None


def search_lines(session, query: str, *, limit: int = 20, owner: str | None = None,
                 superseded: bool = False) -> list[SearchHit]:
    """See pipeline.db.search.search_lines (the SQL lives with the database code)."""
    from pipeline.db.search import search_lines as run

    return run(session, query, limit=limit, owner=owner, superseded=superseded)
