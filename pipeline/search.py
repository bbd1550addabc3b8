"""Full-text search over recognized lines: the hit type and safe query building (no SQL here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pipeline.types import BBox

# A quoted phrase, or a run of non-space characters.
_TERM = re.compile(r'"([^"]*)"?|(\S+)')
# A word: letters and digits, as both indexes tokenize (an underscore separates, as there).
_WORD = re.compile(r"[^\W_]+")
MARK_START, MARK_END = "\x02", "\x03"  # around matched words in SearchHit.marked
# A word broken at a line end: a hyphen (ASCII, U+2010, the old "¬", a soft hyphen) after a letter.
HYPHENS = "-\u2010\u00ac\u00ad"


@dataclass(frozen=True)
class RunOn:
    """The next line of a hit whose words start on the hit's line and end on this one."""

    line: int  # 1-based, the hit's line + 1
    text: str
    bbox: BBox
    confidence: float
    marked: str = ""

    def highlighted(self, start: str = "[", end: str = "]") -> str:
        return _marks(self.marked or self.text, start, end)

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "text": self.text, "bbox": self.bbox.as_list(),
                "confidence": round(self.confidence, 4),
                "highlight": _marks(self.marked, "<mark>", "</mark>") if self.marked else None}


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
    # The matched words run on to the next line (a phrase or a hyphenated word cut by the line
    # break): this hit's own fields are its first line's, the second line is here.
    runs_on: RunOn | None = None

    def highlighted(self, start: str = "[", end: str = "]") -> str:
        return _marks(self.marked or self.text, start, end)

    def to_dict(self) -> dict[str, object]:
        return {
            "document_id": self.document_id, "document": self.document_name, "page": self.page,
            "line": self.line, "text": self.text, "bbox": self.bbox.as_list(),
            "confidence": round(self.confidence, 4), "score": round(self.score, 6),
            "highlight": self.highlighted("<mark>", "</mark>") if self.marked else None,
            "superseded": self.superseded,
            "read_at": self.read_at.isoformat() if self.read_at else None,
            "runs_on": self.runs_on.to_dict() if self.runs_on else None,
        }


def _marks(marked: str, start: str, end: str) -> str:
    return marked.replace(MARK_START, start).replace(MARK_END, end)


@dataclass(frozen=True)
class Join:
    """How a line and the next one read as one text (`window`): `head` of the first, then `sep`,
    then `tail` of the second; `cut` (the hyphen, trailing space) and `lead` (leading space)
    are what the window leaves out of them."""

    head: str
    cut: str
    sep: str
    lead: str
    tail: str

    @property
    def window(self) -> str:
        return self.head + self.sep + self.tail


def join_lines(first: str, second: str) -> Join:
    """`first` followed by `second` as print reads them: a word hyphenated at the line end
    ("archi-" + "ves of") is joined whole ("archives of"); otherwise the lines are joined by a
    space. Only a lowercase continuation is taken as a broken word, so "Smith-" + "Jones" keeps
    its hyphen's meaning of two words."""
    body, rest = first.rstrip(), second.lstrip()
    if (len(body) >= 2 and body[-1] in HYPHENS and body[-2].isalpha()
            and rest[:1].islower()):
        return Join(body[:-1], first[len(body) - 1:], "", second[:len(second) - len(rest)], rest)
    return Join(first, "", " ", "", second)


def split_marked(marked: str, join: Join) -> tuple[str, str] | None:
    """The marked window text (`join.window` with MARK_START/MARK_END around matches) as the two
    lines' own texts, each marked; a match crossing the break is marked in both. None when
    `marked` is not that window marked (then the caller shows the lines unmarked)."""
    if marked.replace(MARK_START, "").replace(MARK_END, "") != join.window:
        return None
    i, seen, inside = 0, 0, False
    while i < len(marked) and (seen < len(join.head) or marked[i] == MARK_END):
        inside = (inside or marked[i] == MARK_START) and marked[i] != MARK_END
        seen += marked[i] not in (MARK_START, MARK_END)
        i += 1
    hyphen = join.cut.rstrip()
    first = marked[:i] + hyphen + (MARK_END if inside else "") + join.cut[len(hyphen):]
    skipped = 0
    while i < len(marked) and skipped < len(join.sep):  # the space between, never part of a mark
        if marked[i] == MARK_START:
            inside = True
        elif marked[i] == MARK_END:
            inside = False
        else:
            skipped += 1
        i += 1
    return first, join.lead + (MARK_START if inside else "") + marked[i:]


@dataclass(frozen=True)
class Term:
    """One thing a search asks for: words in sequence (a phrase, or one word), the last one a
    prefix when `prefix`. `forms` are the ways it may be written, any of which matches: the words
    as typed first, then for a hyphenated compound the same with one hyphen closed each
    ("self-evident" is also "selfevident"), as a compound cut at its hyphen by a line break is
    joined (join_lines cannot tell "self-" + "evident" from "archi-" + "ves")."""

    forms: tuple[tuple[str, ...], ...]
    prefix: bool = False


MAX_FORMS = 6  # a compound of many parts is searched with its first hyphens closed


def query_terms(user_text: str) -> list[Term]:
    """The terms of what a person typed: "quoted phrases" stay together, a trailing * asks for a
    prefix, words joined by a hyphen are a phrase; everything else that is not a letter or digit
    separates words, so operators and stray quotes in the input can never become query syntax.
    Words are what both full-text indexes take them to be (pipeline.db.search): letters and
    digits, so "12.50" is the phrase 12 50 as the indexed text is."""
    terms: list[Term] = []
    for match in _TERM.finditer(user_text):
        phrase, bare = match.group(1), match.group(2)
        raw = phrase if phrase is not None else bare
        spans = list(_WORD.finditer(raw))
        if not spans:
            continue
        words = tuple(m.group() for m in spans)
        gaps = [raw[spans[i].end():spans[i + 1].start()] for i in range(len(spans) - 1)]
        hyphens = [i for i, gap in enumerate(gaps) if len(gap) == 1 and gap in HYPHENS]
        forms = [words] + [words[:i] + (words[i] + words[i + 1],) + words[i + 2:]
                           for i in hyphens[:MAX_FORMS - 1]]
        terms.append(Term(tuple(forms), prefix=bare is not None and bare.endswith("*")))
    return terms


def one_word(terms: list[Term]) -> bool:
    """Whether the query is a single word (or prefix) however written: a line break can then only
    matter where it hyphenates a word, not as a space between two."""
    return len(terms) == 1 and all(len(form) == 1 for form in terms[0].forms)


def fts5_query(terms: list[Term]) -> str | None:
    """An SQLite FTS5 MATCH expression: every term must appear (AND), each form a quoted string,
    a term's forms any one (OR). None when nothing searchable is left (the caller returns no
    hits)."""
    parts = []
    for term in terms:
        forms = ['"' + " ".join(form).replace('"', '""') + '"' + (" *" if term.prefix else "")
                 for form in term.forms]
        parts.append(_any_of(forms, " OR "))
    return " AND ".join(parts) or None


def tsquery(terms: list[Term]) -> str | None:
    """The same terms for PostgreSQL's to_tsquery: each word quoted (only letters and digits are
    left, so nothing in it is syntax), a phrase's words in sequence (<->), a prefix as :*, a
    term's forms any one (|), every term required (&). None when nothing searchable is left."""
    parts = []
    for term in terms:
        forms = []
        for form in term.forms:
            phrase = " <-> ".join(f"'{word}'" for word in form)
            forms.append(f"({phrase}:*)" if term.prefix else f"({phrase})")
        parts.append(_any_of(forms, " | "))
    return " & ".join(parts) or None


def _any_of(forms: list[str], operator: str) -> str:
    """A term's forms joined by the query language's OR, grouped where there are several."""
    return forms[0] if len(forms) == 1 else "(" + operator.join(forms) + ")"


def search_lines(session, query: str, *, limit: int = 20, owner: str | None = None,
                 superseded: bool = False) -> list[SearchHit]:
    """See pipeline.db.search.search_lines (the SQL lives with the database code)."""
    from pipeline.db.search import search_lines as run

    return run(session, query, limit=limit, owner=owner, superseded=superseded)
