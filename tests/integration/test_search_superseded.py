"""Search finds what each file name holds now: a file replaced under its name (a rescan) is
searched as its new reading, its old one only when asked for, marked superseded. SQLite FTS5 and
PostgreSQL alike, with the rows as runs and API jobs store them."""

from __future__ import annotations

import hashlib

from sqlalchemy import Engine

from pipeline.db import job_rows, repo
from pipeline.db.search import search_lines
from pipeline.db.session import session_scope
from pipeline.types import BBox


def send(engine: Engine, names: list[str], content: bytes, text: str, *, owner: str | None = None,
         read: bool = True) -> str:
    """A job (a run, or a tenant's API job) sending `content` under `names`; read: its one line
    holds `text`. The document's id."""
    with session_scope(engine) as s:
        job = job_rows.create_job(s, settings={}, owner=owner)
        doc, done = repo.upsert_document(s, sha256=hashlib.sha256(content).hexdigest(), profile="p",
                                         name=names[0], source_uri="file:///x", size_bytes=1)
        for position, name in enumerate(names):
            job_rows.link_job_document(s, job.id, doc.id, position, name)
        if read and not done:
            page = repo.save_page(s, doc.id, number=1, image_key=f"k-{doc.id}", width=100,
                                  height=100, dpi=150, angle=0.0)
            [line] = repo.save_lines(s, page.id, [(0, BBox(0, 0, 50, 8), None)])
            repo.set_line_texts(s, [(line.id, text, 0.9)], model="m")
            repo.finish_document(s, doc.id, 1)
        return doc.id


def found(engine: Engine, words: str, **kwargs) -> list[tuple[str, str, bool]]:
    with session_scope(engine) as s:
        return [(h.document_name, h.document_id, h.superseded)
                for h in search_lines(s, words, **kwargs)]


def test_a_rescan_replaces_the_old_reading_which_is_found_only_when_asked_for(engine):
    old = send(engine, ["E/letters/item_000.pdf"], b"scan 1", "Dear Mr Holloway")
    assert found(engine, "Holloway") == [("E/letters/item_000.pdf", old, False)]
    new = send(engine, ["E/letters/item_000.pdf"], b"rescan", "Dear Mr Hartley")

    assert found(engine, "Holloway") == []
    assert found(engine, "Dear") == [("E/letters/item_000.pdf", new, False)]
    assert found(engine, "Holloway", superseded=True) == [("E/letters/item_000.pdf", old, True)]
    with session_scope(engine) as s:
        [hit] = search_lines(s, "Holloway", superseded=True)
        assert hit.read_at is not None and hit.to_dict()["superseded"] is True

    # The first scan put back under the name: its reading is current again, the rescan's is not.
    send(engine, ["E/letters/item_000.pdf"], b"scan 1", "")
    assert found(engine, "Holloway") == [("E/letters/item_000.pdf", old, False)]
    assert found(engine, "Hartley") == []


def test_a_rescan_not_read_yet_or_failed_leaves_the_old_reading_current(engine):
    old = send(engine, ["letter.pdf"], b"scan 1", "Dear Mr Holloway")
    pending = send(engine, ["letter.pdf"], b"rescan", "", read=False)
    assert found(engine, "Holloway") == [("letter.pdf", old, False)]
    with session_scope(engine) as s:
        repo.fail_document(s, pending, "damaged")
    assert found(engine, "Holloway") == [("letter.pdf", old, False)]


def test_a_copy_still_holding_the_old_bytes_names_the_hits(engine):
    old = send(engine, ["in/letter.pdf", "in/copy.pdf"], b"scan 1", "Dear Mr Holloway")
    send(engine, ["in/letter.pdf"], b"rescan", "Dear Mr Hartley")
    # in/letter.pdf holds the rescan now; in/copy.pdf still holds the first scan.
    assert found(engine, "Holloway") == [("in/copy.pdf", old, False)]


def test_a_name_is_replaced_only_by_its_own_tenant(engine):
    alice = send(engine, ["letter.pdf"], b"alice's", "Dear Mr Holloway", owner="alice")
    bob = send(engine, ["letter.pdf"], b"bob's", "Dear Mr Holloway", owner="bob")
    assert sorted(found(engine, "Holloway")) == sorted([("letter.pdf", alice, False),
                                                        ("letter.pdf", bob, False)])
    assert found(engine, "Holloway", owner="alice") == [("letter.pdf", alice, False)]
    send(engine, ["letter.pdf"], b"alice's rescan", "Dear Mr Hartley", owner="alice")
    assert found(engine, "Holloway", owner="alice") == []
    assert found(engine, "Holloway", owner="bob") == [("letter.pdf", bob, False)]
    assert found(engine, "Holloway", owner="alice", superseded=True) == [("letter.pdf", alice, True)]


def test_hits_past_the_best_ranked_matches_are_found_where_ties_or_filters_reach_them(engine, monkeypatch):
    """SQLite ranks the best matches first and joins only those (a window): hits it left out, tied
    with its last or behind hits the filters drop, are still found, in name order on a tie."""
    monkeypatch.setattr("pipeline.db.search.SQLITE_WINDOW", 1)  # then twice the rows it asks for
    # The same line in 15 files, the first named sent first and the second last: whichever end
    # of a tie a window keeps, it leaves one of the first three names out.
    for n in (0, *range(2, 15), 1):
        send(engine, [f"tied/item_{n:02d}.pdf"], f"tied {n}".encode(), "Dear Mr Holloway")
    assert [name for name, _, _ in found(engine, "Holloway", limit=3)] == [
        "tied/item_00.pdf", "tied/item_01.pdf", "tied/item_02.pdf"]

    for n in range(12):  # the best-ranked lines (the shortest), every one rescanned since
        send(engine, [f"old/item_{n:02d}.pdf"], f"old {n}".encode(), "Hartley")
        send(engine, [f"old/item_{n:02d}.pdf"], f"new {n}".encode(), "Dear Mr Smith")
    current = send(engine, ["kept.pdf"], b"kept", "Dear Mr Hartley of the county record office")
    assert found(engine, "Hartley", limit=1) == [("kept.pdf", current, False)]
