"""Words a line break cuts are found: a phrase or all the words starting on one line and ending on
the next, and a word hyphenated at a line end, as ONE hit on the line where they start that runs
on to the next. Words within one line stay that line's own hit. SQLite FTS5 and PostgreSQL alike,
with the rows as `quire run` and the workers store them (lines read in any order)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from sqlalchemy import Engine

from pipeline.db import job_rows, repo
from pipeline.db.search import search_lines
from pipeline.db.session import session_scope
from pipeline.search import SearchHit
from pipeline.types import BBox

PAGE = ["It was quiet for", "about a minute, listening. Then he", "says, the archi-",
        "ves of the county are closed."]


def box(i: int, x0: int = 100, y0: int = 100) -> BBox:
    return BBox(x0, y0 + 40 * i, x0 + 900, y0 + 40 * i + 30)


def send(engine: Engine, pages: list[list[str]], *, name: str = "book.pdf", owner: str | None = None,
         boxes: list[list[BBox]] | None = None, finish: bool = True) -> str:
    """A job sending a document whose pages hold these lines (boxes: one column, top to bottom,
    unless given), read last line first as recognize tasks may, then finished. Its id."""
    with session_scope(engine) as s:
        job = job_rows.create_job(s, settings={}, owner=owner)
        doc, _ = repo.upsert_document(s, sha256=hashlib.sha256(repr(pages).encode() + name.encode())
                                      .hexdigest(), profile="p", name=name,
                                      source_uri="file:///x", size_bytes=1)
        job_rows.link_job_document(s, job.id, doc.id, 0, name)
        doc_id = doc.id
    for number, texts in enumerate(pages, 1):
        with session_scope(engine) as s:
            page = repo.save_page(s, doc_id, number=number, image_key=f"k-{doc_id}-{number}",
                                  width=1200, height=1600, dpi=150, angle=0.0)
            lines = repo.save_lines(s, page.id, [
                (i, boxes[number - 1][i] if boxes else box(i), None) for i in range(len(texts))])
            ids = [line.id for line in lines]
        for i in reversed(range(len(texts))):
            with session_scope(engine) as s:
                repo.set_line_texts(s, [(ids[i], texts[i], 0.9)], model="m")
    if finish:
        with session_scope(engine) as s:
            repo.finish_document(s, doc_id, len(pages))
    return doc_id


def find(engine: Engine, words: str, **kwargs) -> list[SearchHit]:
    with session_scope(engine) as s:
        return search_lines(s, words, **kwargs)


def marked(text: str) -> list[str]:
    """The marked words of a highlighted text (FTS5 marks a phrase as one span, PostgreSQL each
    word: compared as words)."""
    return " ".join(re.findall(r"\[([^]]*)\]", text)).split()


def where(hits: list[SearchHit]) -> list[tuple[int, int, int | None]]:
    return [(h.page, h.line, h.runs_on.line if h.runs_on else None) for h in hits]


def test_a_phrase_across_a_line_break_is_one_hit_on_the_line_it_starts(engine):
    send(engine, [PAGE])
    [hit] = find(engine, '"then he says"')
    assert where([hit]) == [(1, 2, 3)]
    assert hit.text == PAGE[1] and hit.bbox == box(1)
    assert hit.runs_on is not None and hit.runs_on.text == PAGE[2] and hit.runs_on.bbox == box(2)
    assert marked(hit.highlighted()) == ["Then", "he"]
    assert marked(hit.runs_on.highlighted()) == ["says"]
    # All the words, each on its own line, are found the same way.
    assert where(find(engine, "quiet minute")) == [(1, 1, 2)]
    assert find(engine, '"he says the"')[0].runs_on is not None


def test_a_word_hyphenated_at_a_line_end_is_found_whole_and_by_its_parts(engine):
    send(engine, [PAGE])
    [hit] = find(engine, "archives")
    assert where([hit]) == [(1, 3, 4)]
    assert hit.runs_on is not None
    assert hit.highlighted() == "says, the [archi-]"
    assert marked(hit.runs_on.highlighted()) == ["ves"]
    assert where(find(engine, '"the archives of the county"')) == [(1, 3, 4)]
    assert where(find(engine, "archi")) == [(1, 3, None)]  # its parts, as before
    assert where(find(engine, "ves")) == [(1, 4, None)]
    assert where(find(engine, "archives*")) == [(1, 3, 4)]


def test_words_within_one_line_are_that_lines_hit_only(engine):
    send(engine, [PAGE])
    # "minute" is in line 2, and so in the run-on text of lines 1 and 2: still one hit, line 2's.
    assert where(find(engine, "minute")) == [(1, 2, None)]
    assert where(find(engine, '"then he"')) == [(1, 2, None)]
    assert where(find(engine, "says")) == [(1, 3, None)]
    # A phrase found within a line is not found again spanning it and the next.
    assert where(find(engine, '"the county"')) == [(1, 4, None)]


def test_lines_are_not_joined_across_pages_or_columns(engine):
    send(engine, [["a letter ends with Then he"], ["says the next page"]])
    assert find(engine, '"then he says"') == []
    # Two columns: reading order goes from the bottom of the left one to the top of the right.
    send(engine, [["left column ends Then he", "right column says"]], name="cols.pdf",
         boxes=[[box(5), box(0, x0=1100)]])
    assert find(engine, '"then he says"') == []
    assert len(find(engine, "column")) == 2


def test_limit_owner_and_superseded_still_apply(engine):
    for n in range(4):
        send(engine, [[f"copy {n} of what Then he", "says next"]], name=f"c{n}.pdf")
    assert len(find(engine, '"then he says"')) == 4
    assert len(find(engine, '"then he says"', limit=2)) == 2
    tenant = send(engine, [["a tenant's Then he", "says too"]], name="t.pdf", owner="tenant")
    assert [h.document_id for h in find(engine, '"then he says"', owner="tenant")] == [tenant]
    # The tenant rescans t.pdf: its old reading is searched only when asked for.
    new = send(engine, [["no phrase here"]], name="t.pdf", owner="tenant")
    assert new and find(engine, '"then he says"', owner="tenant") == []
    [old] = find(engine, '"then he says"', owner="tenant", superseded=True)
    assert old.document_id == tenant and old.superseded and old.runs_on is not None


def test_the_run_on_text_follows_the_lines(engine):
    """Joined as soon as a page is all read (before the document is finished), and unjoined when
    segmentation changes a line; a run-on text made stale behind the code's back is no hit."""
    from sqlalchemy import text

    doc = send(engine, [PAGE], finish=False)
    assert where(find(engine, "archives")) == [(1, 3, 4)]
    with session_scope(engine) as s:
        page_id = s.execute(text("SELECT id FROM pages WHERE document_id = :d"), {"d": doc}).scalar()
        repo.save_lines(s, page_id, [(i, box(i) if i != 3 else box(7), None) for i in range(4)])
    assert find(engine, "archives") == []  # line 4 moved: unread again
    with engine.begin() as conn:
        conn.execute(text("UPDATE lines SET text = 'Then she' WHERE page_id = :p AND position = 1"),
                     {"p": page_id})
    assert find(engine, '"then he says"') == []
    with session_scope(engine) as s:
        repo.finish_document(s, doc, 1)  # the finish stage joins them again
    assert where(find(engine, '"then she says"')) == [(1, 2, 3)]


def test_json_output_carries_the_next_line(tmp_path, monkeypatch):
    from pipeline.db.session import make_engine, upgrade
    from tests.cli_home import quire, quire_home

    home = quire_home(tmp_path, tmp_path / "model", 150, monkeypatch)
    next(home)
    url = f"sqlite:///{tmp_path / 'home' / 'quire.sqlite'}"
    (tmp_path / "home").mkdir()
    upgrade(url)
    engine = make_engine(url)
    try:
        send(engine, [PAGE])
    finally:
        engine.dispose()
    [hit] = json.loads(quire("search", "--json", '"then he says"').output)
    assert (hit["page"], hit["line"], hit["text"], hit["bbox"]) == (1, 2, PAGE[1], box(1).as_list())
    assert hit["highlight"] == "about a minute, listening. <mark>Then he</mark>"
    assert hit["runs_on"] == {"line": 3, "text": PAGE[2], "bbox": box(2).as_list(),
                              "confidence": 0.9, "highlight": "<mark>says</mark>, the archi-"}
    [within] = json.loads(quire("search", "--json", "minute").output)
    assert within["runs_on"] is None
    result = quire("search", "archives")
    assert result.output.split("\t")[2] == "line 3-4"
    assert result.output.rstrip().endswith("says, the [archi-] / [ves] of the county are closed.")
    with pytest.raises(StopIteration):
        next(home)


RECEIPT = ["TOTAL 12.50 paid on 2024-03-05", "Ask info@shop.example about it",
           "a self-evident, state-of-the-art sum", "it is self-", "evident that it holds"]


def test_prices_dates_addresses_and_compounds_are_found_as_typed(engine):
    """As one typed them: PostgreSQL's parser had made "12.50" and "2024-03-05" words of their
    own, which a search for them never found there."""
    send(engine, [RECEIPT])
    [price] = find(engine, "12.50")
    assert where([price]) == [(1, 1, None)] and marked(price.highlighted()) == ["12.50"]
    assert price.highlighted() == "TOTAL [12.50] paid on 2024-03-05"
    assert marked(find(engine, "2024-03-05")[0].highlighted()) == ["2024-03-05"]
    assert where(find(engine, "info@shop.example")) == [(1, 2, None)]
    assert where(find(engine, "shop")) == [(1, 2, None)]  # a part of it, as on SQLite
    assert where(find(engine, '"a self-evident, state-of-the-art sum"')) == [(1, 3, None)]
    assert where(find(engine, "state-of-the*")) == [(1, 3, None)]


def test_a_compound_cut_at_its_hyphen_is_found_as_typed(engine):
    """"self-" + "evident" is joined as "selfevident" (a hyphen at the line end cannot say which
    it was): "self-evident" finds it too, one hit running on, its parts marked on both lines."""
    send(engine, [RECEIPT])
    hits = sorted(find(engine, "self-evident"), key=lambda h: h.line)
    assert where(hits) == [(1, 3, None), (1, 4, 5)]
    assert hits[1].highlighted() == "it is [self-]"
    assert hits[1].runs_on is not None and hits[1].runs_on.highlighted() == "[evident] that it holds"
    assert where(find(engine, '"is self-evident that"')) == [(1, 4, 5)]
    assert sorted(where(find(engine, "self-evid*"))) == [(1, 3, None), (1, 4, 5)]
    # A word on its own at either side of the break stays that line's own hit.
    assert sorted(where(find(engine, "evident"))) == [(1, 3, None), (1, 5, None)]
    assert where(find(engine, "selfevident")) == [(1, 4, 5)]
