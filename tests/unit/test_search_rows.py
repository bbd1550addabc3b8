"""What `quire search` prints: a file read twice with different results names each reading."""

from __future__ import annotations

from pipeline.cli_outputs import hit_rows
from pipeline.search import MARK_END, MARK_START, SearchHit
from pipeline.types import BBox


def hit(document_id: str, name: str, text: str, line: int = 1) -> SearchHit:
    word = text.split()[0]
    return SearchHit(document_id=document_id, document_name=name, page=1, line=line, text=text,
                     bbox=BBox(10, 20, 300, 44), confidence=0.9, score=1.0,
                     marked=text.replace(word, f"{MARK_START}{word}{MARK_END}", 1))


def test_one_reading_per_file_prints_just_the_names():
    rows = hit_rows([hit("d1", "letter.pdf", "Archives of the county"),
                     hit("d2", "memo.pdf", "Archives closed on Monday")])
    assert rows == ["letter.pdf\tpage 1\tline 1\t[10,20,300,44]\t[Archives] of the county",
                    "memo.pdf\tpage 1\tline 1\t[10,20,300,44]\t[Archives] closed on Monday"]


def test_two_readings_of_one_file_carry_their_document_ids():
    rows = hit_rows([hit("d1", "letter.pdf", "Archives of the county"),
                     hit("d7", "letter.pdf", "Archives of tne county", line=2),
                     hit("d2", "memo.pdf", "Archives closed")])
    assert [r.split("\t")[0] for r in rows] == ["letter.pdf (d1)", "letter.pdf (d7)", "memo.pdf"]


def test_a_superseded_reading_says_so_with_its_id_and_date():
    from dataclasses import replace
    from datetime import UTC, datetime

    old = replace(hit("d1", "letter.pdf", "Archives of the county"), superseded=True,
                  read_at=datetime(2025, 3, 1, 14, 2, 9, tzinfo=UTC))
    rows = hit_rows([hit("d9", "letter.pdf", "Archives of the town"), old])
    # The current reading needs no id: it is the only current one of that name.
    assert [r.split("\t")[0] for r in rows] == [
        "letter.pdf", "letter.pdf (superseded: d1, read 2025-03-01 14:02 UTC)"]
    assert old.to_dict()["superseded"] is True and old.to_dict()["read_at"] == "2025-03-01T14:02:09+00:00"
