"""Schema and repository tests on SQLite (and one on a real PostgreSQL where installed)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, func, inspect, select, text

from pipeline.db import job_rows, readings, repo, runs
from pipeline.db.models import Base, Document, JobDocument, Line, Page
from pipeline.db.search import include_object
from pipeline.db.session import (
    alembic_config,
    current_revision,
    make_engine,
    session_scope,
    upgrade,
)
from pipeline.errors import NotFoundError
from pipeline.types import BBox

SHA = hashlib.sha256(b"a").hexdigest()
SHA2 = hashlib.sha256(b"b").hexdigest()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def migrated(url: str) -> Engine:
    upgrade(url)
    return make_engine(url)


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    eng = migrated(sqlite_url)
    yield eng
    eng.dispose()


def schema_diffs(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object}
        )
        return list(compare_metadata(ctx, Base.metadata))


def add_doc(engine: Engine, sha: str = SHA, profile: str = "p1") -> str:
    with session_scope(engine) as s:
        doc, _ = repo.upsert_document(s, sha256=sha, profile=profile, name="a.pdf",
                                      source_uri="file:///a.pdf", size_bytes=10)
        return doc.id



@contextmanager
def engine_at(url: str, revision: str) -> Iterator[Engine]:
    """The database migrated up to `revision` (where a migration's test starts) and an engine on
    it, disposed after."""
    upgrade(url, revision)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()

def add_old_doc(engine: Engine, sha: str = SHA) -> str:
    """A document row on a schema older than the models (which would select columns it lacks)."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO documents (id, sha256, profile, name, source_uri, size_bytes, "
                          "status, pages_done, created_at, updated_at) VALUES ('d-' || :sha, :sha, "
                          "'p1', 'a.pdf', 'file:///a.pdf', 10, 'pending', 0, '2026-11-24 00:00:00', "
                          "'2026-11-24 00:00:00')"), {"sha": sha[:30]})
    return "d-" + sha[:30]


def add_old_read_page(conn: Connection, doc_id: str, lines: list[str]) -> None:
    """A read page (id 7) with these lines, on a schema older than the models, inside `conn`'s
    transaction."""
    conn.execute(text("INSERT INTO pages (id, document_id, number, image_key, width, height, dpi, "
                      "angle, rotation, status, lines_total, lines_done) VALUES "
                      "(7, :d, 1, 'k', 1200, 1600, 150, 0, 0, 'done', :n, :n)"), {"d": doc_id, "n": len(lines)})
    for i, line in enumerate(lines):
        conn.execute(text("INSERT INTO lines (page_id, position, x0, y0, x1, y1, text, "
                          "confidence, status) VALUES (7, :i, 100, :y, 900, :y + 30, :t, 0.9, "
                          "'done')"), {"i": i, "y": 100 + 40 * i, "t": line})


def add_page(engine: Engine, doc_id: str, number: int, n_lines: int) -> tuple[int, list[int]]:
    with session_scope(engine) as s:
        page = repo.save_page(s, doc_id, number=number, image_key=f"k{number}", width=100,
                              height=200, dpi=300, angle=0.5)
        lines = repo.save_lines(s, page.id, [(i, BBox(0, 10 * i, 50, 10 * i + 8), f"c{i}")
                                             for i in range(n_lines)])
        return page.id, [ln.id for ln in lines]


def test_migration_matches_models(engine: Engine, sqlite_url: str) -> None:
    assert schema_diffs(engine) == []
    assert current_revision(sqlite_url) == head_revision()
    upgrade(sqlite_url)  # a second upgrade is a no-op
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert {ix["name"] for ix in inspect(engine).get_indexes("lines")} == {"ix_lines_status"}


def test_an_upgrade_that_rebuilds_a_table_keeps_the_rows_that_refer_to_it(sqlite_url: str) -> None:
    """0006 rebuilds `jobs` (SQLite changes a CHECK by copying the table); with foreign keys on,
    dropping the old copy would have deleted every job's document links (ON DELETE CASCADE)."""
    upgrade(sqlite_url, "0005_page_rotation")
    engine = make_engine(sqlite_url)
    doc_id = add_old_doc(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, settings, status, documents_total, documents_done, "
                          "documents_failed, created_at, accepting) VALUES "
                          "('j1', '{}', 'running', 1, 0, 0, '2026-11-24 00:00:00', 0)"))
        conn.execute(text("INSERT INTO job_documents (job_id, document_id, position, name) "
                          "VALUES ('j1', :d, 0, 'a.pdf')"), {"d": doc_id})
    engine.dispose()
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with session_scope(engine) as s:
            assert [d.id for d in job_rows.job_documents(s, "j1")] == [doc_id]
            assert job_rows.get_job(s, "j1").status == "running"
            job_rows.get_job(s, "j1").status = "cancelled"  # the new status is allowed
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # on again after
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_a_job_links_a_document_once_per_name(backend: str, request: pytest.FixtureRequest) -> None:
    """Two files of the same bytes in one job: the second name used to be dropped, so that
    copy could not be found by its name. 0007 keys a link by its name too, on both backends."""
    from alembic import command

    url = request.getfixturevalue(backend)
    with engine_at(url, "0006_job_cancel") as engine:
        doc_id = add_old_doc(engine)
        with engine.begin() as conn:  # a link made before 0004: no name
            conn.execute(text("INSERT INTO jobs (id, settings, status, documents_total, documents_done, "
                              "documents_failed, created_at, accepting) VALUES "
                              "('j1', '{}', 'running', 1, 0, 0, '2026-11-24 00:00:00', false)"))
            conn.execute(text("INSERT INTO job_documents (job_id, document_id, position) "
                              "VALUES ('j1', :d, 0)"), {"d": doc_id})
        upgrade(url)
        assert schema_diffs(engine) == []
        with session_scope(engine) as s:
            for position, name in enumerate(["copy.pdf", "box/link.pdf", "copy.pdf"], start=1):
                job_rows.link_job_document(s, "j1", doc_id, position, name)  # the same name again: kept once
            assert [n for _, n in job_rows.named_job_documents(s, "j1")] == ["a.pdf", "copy.pdf", "box/link.pdf"]
            assert [d.id for d in job_rows.job_documents(s, "j1")] == [doc_id]
            assert job_rows.job_ids_for_document(s, doc_id) == ["j1"]
            assert job_rows.update_job_counts(s, "j1").documents_total == 3  # three inputs
        command.downgrade(alembic_config(url), "0006_job_cancel")  # one link again, the first
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM job_documents")).all() == [("a.pdf",)]


# Folder names of letters of 2-3 bytes (past 1,024 characters in all), and of 4 bytes (CJK
# Extension B: under 1,024 characters, past a btree entry's 2,704 bytes). Drawn at random, and
# from 42,000 letters: PostgreSQL compresses an index entry that repeats itself into the limit.
RUSSIAN_AND_CHINESE = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя报告档案文件"
RARE_CHINESE = "".join(chr(0x20000 + i) for i in range(42_000))


def deep_folder(root: Path, letters: str, name_bytes: int) -> Path:
    """A folder of scans nested in folders named with 60 of `letters`, holding one file whose
    path from the folder's own name is at most `name_bytes` bytes of UTF-8."""
    rng = np.random.default_rng(0)
    folder = root / "архив"
    deep, used = folder, len("архив/скан.pdf".encode())
    while True:
        part = "".join(rng.choice(list(letters), 60))
        if used + len(part.encode()) + 1 > name_bytes:
            break
        deep, used = deep / part, used + len(part.encode()) + 1
    deep.mkdir(parents=True)
    (deep / "скан.pdf").write_bytes(b"%PDF-1.4 a scan")
    return folder


@pytest.mark.parametrize("letters", [RUSSIAN_AND_CHINESE, RARE_CHINESE], ids=["2-3-byte", "4-byte"])
@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_a_file_with_a_4000_byte_name_is_submitted(backend: str, letters: str, request: pytest.FixtureRequest,
                                                   tmp_path: Path) -> None:
    """A scan deep in folders with long non-ASCII names: its name (its path, ~4,000 bytes of
    UTF-8) keyed its job link, and PostgreSQL refused the link ("index row size exceeds btree
    maximum"), or the name itself (over 1,024 characters), ending the submission. Links are
    keyed by the name's SHA-256 now, and names are unbounded text."""
    from pipeline.storage import LocalStore
    from pipeline.submit import JobOptions, Submitter, iter_local

    url = request.getfixturevalue(backend)
    engine = migrated(url)
    try:
        [src] = iter_local([deep_folder(tmp_path / "in", letters, 3990)])
        assert 3750 < len(src.name.encode()) <= 3990
        sent: list[tuple] = []
        submitter = Submitter(engine, LocalStore(tmp_path / "store"), JobOptions("m", 150, 1),
                              enqueue=lambda *a: sent.append(a))
        job_id, _ = submitter.open_job()
        assert submitter.add(job_id, src) == "queued"
        with session_scope(engine) as s:
            [(doc, name)] = job_rows.named_job_documents(s, job_id)
            assert name == src.name and doc.name == src.name
            # The same name again is the same link; a name differing only at its end is another.
            job_rows.link_job_document(s, job_id, doc.id, 1, src.name)
            job_rows.link_job_document(s, job_id, doc.id, 2, src.name[:-4] + ".PDF")
            assert [n[-8:] for _, n in job_rows.named_job_documents(s, job_id)] == ["скан.pdf", "скан.PDF"]
        if backend == "postgres_url":  # revision 0007 cannot hold them: a downgrade says so first
            from alembic import command

            with pytest.raises(RuntimeError, match="2 job link names, 1 checkpoint keys"):
                command.downgrade(alembic_config(url), "0007_link_per_name")
            assert current_revision(url) == head_revision()
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0008_keys_existing_links_by_their_names_hashes(backend: str, request: pytest.FixtureRequest) -> None:
    """Links made before 0008 get the same key a new link of that name gets (so linking it again
    adds nothing), non-ASCII names included; downgrading restores the key on the name."""
    from alembic import command

    url = request.getfixturevalue(backend)
    with engine_at(url, "0007_link_per_name") as engine:
        doc_id = add_old_doc(engine)
        names = ["a.pdf", "répertoire/Straße 1.pdf", "档案/报告.pdf"]
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO jobs (id, settings, status, documents_total, documents_done, "
                              "documents_failed, created_at, accepting) VALUES "
                              "('j1', '{}', 'running', 3, 0, 0, '2026-11-24 00:00:00', false)"))
            for position, name in enumerate(names):
                conn.execute(text("INSERT INTO job_documents (job_id, document_id, position, name) "
                                  "VALUES ('j1', :d, :p, :n)"), {"d": doc_id, "p": position, "n": name})
        upgrade(url)
        assert schema_diffs(engine) == []
        with session_scope(engine) as s:
            for name in names:
                job_rows.link_job_document(s, "j1", doc_id, 9, name)  # already there: nothing added
            assert [n for _, n in job_rows.named_job_documents(s, "j1")] == names
        command.downgrade(alembic_config(url), "0007_link_per_name")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name FROM job_documents ORDER BY position")).all()
        assert [n for n, in rows] == names
        assert inspect(engine).get_pk_constraint("job_documents")["constrained_columns"] == [
            "job_id", "document_id", "name"]


def test_upgrade_on_in_memory_engine() -> None:
    eng = make_engine("sqlite://")
    upgrade(eng)
    assert schema_diffs(eng) == []


def test_create_job_idempotency_key(engine: Engine) -> None:
    with session_scope(engine) as s:
        a = job_rows.create_job(s, settings={"model": "m"}, idempotency_key="k1", owner="t1")
        b = job_rows.create_job(s, settings={"model": "other"}, idempotency_key="k1", owner="t1")
        c = job_rows.create_job(s, settings={"model": "m"})
        d = job_rows.create_job(s, settings={"model": "m"})
    assert a.id == b.id and b.settings == {"model": "m"}
    assert len({a.id, c.id, d.id}) == 3
    with session_scope(engine) as s:
        assert job_rows.get_job(s, a.id).status == "queued"
        assert job_rows.get_job(s, a.id).created_at.tzinfo is not None  # aware UTC on SQLite too
        with pytest.raises(job_rows.IdempotencyConflictError):
            job_rows.create_job(s, settings={}, idempotency_key="k1", owner="someone-else")
        with pytest.raises(NotFoundError):
            job_rows.get_job(s, "nope")


def test_upsert_document_same_row_and_doneness(engine: Engine) -> None:
    first = add_doc(engine)
    with session_scope(engine) as s:
        doc, done = repo.upsert_document(s, sha256=SHA, profile="p1", name="copy.pdf",
                                         source_uri="file:///copy.pdf", size_bytes=10)
        assert (doc.id, done, doc.name) == (first, False, "a.pdf")
        repo.finish_document(s, doc.id, 0)
    with session_scope(engine) as s:
        doc, done = repo.upsert_document(s, sha256=SHA, profile="p1", name="a.pdf",
                                         source_uri="file:///a.pdf", size_bytes=10)
        assert doc.id == first and done
        other, done2 = repo.upsert_document(s, sha256=SHA, profile="p2", name="a.pdf",
                                            source_uri="file:///a.pdf", size_bytes=10)
        assert other.id != first and not done2  # another profile is another result
        assert s.scalar(select(func.count()).select_from(Document)) == 2


def test_save_page_and_lines_twice_no_duplicates(engine: Engine) -> None:
    doc_id = add_doc(engine)
    page_id, line_ids = add_page(engine, doc_id, 1, 3)
    page_id2, line_ids2 = add_page(engine, doc_id, 1, 3)
    assert (page_id, line_ids) == (page_id2, line_ids2)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Page)) == 1
        assert s.scalar(select(func.count()).select_from(Line)) == 3
        page = s.get_one(Page, page_id)
        assert (page.lines_total, page.lines_done, page.status) == (3, 0, "pending")
        # Segmentation found fewer lines this time, one of them moved: rows follow it.
        lines = repo.save_lines(s, page_id, [(0, BBox(0, 0, 50, 8), "c0"),
                                             (1, BBox(0, 99, 50, 108), None)])
        assert [ln.position for ln in lines] == [0, 1] and lines[1].y0 == 99
        assert s.get_one(Page, page_id).lines_total == 2


def test_set_line_texts_twice_counts_once(engine: Engine) -> None:
    doc_id = add_doc(engine)
    with session_scope(engine) as s:
        repo.start_document(s, doc_id)  # under way, as ingest marks it
    page_id, ids = add_page(engine, doc_id, 1, 3)
    for _ in range(2):
        with session_scope(engine) as s:
            repo.set_line_texts(s, [(ids[0], "one", 0.9), (ids[1], "two", 0.8)], model="m")
    with session_scope(engine) as s:
        page = s.get_one(Page, page_id)
        assert (page.lines_done, page.status) == (2, "pending")
        assert repo.lines_remaining(s, doc_id) == 1
        assert repo.lines_to_recognize(s, ids) == [(ids[2], "c2", doc_id)]
        repo.set_line_texts(s, [(ids[2], "three", 0.7), (ids[0], "changed", 0.1)], model="m")
    with session_scope(engine) as s:
        page = s.get_one(Page, page_id)
        assert (page.lines_done, page.status) == (3, "done")
        assert s.get_one(Line, ids[0]).text == "one"  # a finished line is not rewritten
        assert repo.get_document(s, doc_id).pages_done == 1
        assert repo.documents_of_lines(s, ids) == [doc_id]
        # Saving the same boxes again (a redelivered ingest) keeps the text.
        repo.save_lines(s, page_id, [(i, BBox(0, 10 * i, 50, 10 * i + 8), f"c{i}")
                                     for i in range(3)])
        assert s.get_one(Page, page_id).lines_done == 3


def test_fail_document_keeps_others(engine: Engine) -> None:
    a, b = add_doc(engine), add_doc(engine, SHA2)
    add_page(engine, a, 1, 2)
    with session_scope(engine) as s:
        repo.start_document(s, b)
        repo.fail_document(s, a, "corrupt PDF: no xref table")
    with session_scope(engine) as s:
        doc_a, doc_b = repo.get_document(s, a), repo.get_document(s, b)
        assert (doc_a.status, doc_a.error) == ("failed", "corrupt PDF: no xref table")
        assert (doc_b.status, doc_b.error) == ("processing", None)
        assert s.scalar(select(func.count()).select_from(Page)) == 1  # nothing done is lost
        repo.start_document(s, a)  # redoing it clears the error and the old rows
    with session_scope(engine) as s:
        doc_a = repo.get_document(s, a)
        assert (doc_a.status, doc_a.error) == ("processing", None)
        assert s.scalar(select(func.count()).select_from(Page)) == 0
        assert s.scalar(select(func.count()).select_from(Line)) == 0


def test_load_document_result_reading_order(engine: Engine) -> None:
    doc_id = add_doc(engine)
    # Saved out of order: page 2 first, lines reversed.
    with session_scope(engine) as s:
        for number in (2, 1):
            page = repo.save_page(s, doc_id, number=number, image_key="k", width=100,
                                  height=200, dpi=300, angle=-1.0)
            lines = repo.save_lines(s, page.id, [(i, BBox(0, 10 * i, 50, 10 * i + 8), None)
                                                 for i in (2, 1, 0)])
            repo.set_line_texts(s, [(ln.id, f"p{number}l{ln.position}", 0.5) for ln in lines],
                                model="quire-line-v1")
        repo.finish_document(s, doc_id, 2)
    with session_scope(engine) as s:
        result = repo.load_document_result(s, doc_id)
        assert repo.document_complete(s, doc_id)
    assert (result.name, result.sha256, result.model) == ("a.pdf", SHA, "quire-line-v1")
    assert [p.number for p in result.pages] == [1, 2]
    assert [ln.text for ln in result.pages[0].lines] == ["p1l0", "p1l1", "p1l2"]
    assert result.pages[1].lines[2].bbox == BBox(0, 20, 50, 28)
    assert result.pages[0].angle == -1.0 and result.pages[0].dpi == 300


def test_job_counts_and_status(engine: Engine) -> None:
    a, b = add_doc(engine), add_doc(engine, SHA2)
    with session_scope(engine) as s:
        job = job_rows.create_job(s, settings={})
        for pos, doc in enumerate((a, b, a)):  # the same file twice in one job: one link
            job_rows.link_job_document(s, job.id, doc, pos)
        assert s.scalar(select(func.count()).select_from(JobDocument)) == 2
        job = job_rows.update_job_counts(s, job.id)
        assert (job.status, job.documents_total, job.finished_at) == ("queued", 2, None)
        repo.start_document(s, a)
        assert job_rows.update_job_counts(s, job.id).status == "running"
        repo.finish_document(s, a, 1)
        job = job_rows.update_job_counts(s, job.id)
        assert (job.status, job.documents_done) == ("running", 1)
        repo.fail_document(s, b, "empty file")
        job = job_rows.update_job_counts(s, job.id)
        assert (job.status, job.documents_done, job.documents_failed) == ("partial", 1, 1)
        assert job.finished_at is not None
        assert [d.id for d in job_rows.job_documents(s, job.id)] == [a, b]
        assert job_rows.job_ids_for_document(s, b) == [job.id]
        repo.finish_document(s, b, 1)
        assert job_rows.update_job_counts(s, job.id).status == "done"
        job2 = job_rows.create_job(s, settings={})
        job_rows.link_job_document(s, job2.id, b, 0)
        repo.fail_document(s, b, "x")
        assert job_rows.update_job_counts(s, job2.id).status == "failed"


def test_postgresql_schema_and_upserts(postgres_url: str) -> None:
    eng = migrated(postgres_url)
    try:
        assert schema_diffs(eng) == []
        doc_id = add_doc(eng)
        assert add_doc(eng) == doc_id
        page_id, ids = add_page(eng, doc_id, 1, 2)
        assert add_page(eng, doc_id, 1, 2) == (page_id, ids)
        for _ in range(2):
            with session_scope(eng) as s:
                repo.set_line_texts(s, [(i, "t", 0.5) for i in ids], model="m")
        with session_scope(eng) as s:
            assert s.get_one(Page, page_id).lines_done == 2
            job = job_rows.create_job(s, settings={"a": 1}, idempotency_key="k")
            assert job_rows.create_job(s, settings={}, idempotency_key="k").id == job.id
            assert job.created_at.tzinfo is not None
            job_rows.link_job_document(s, job.id, doc_id, 0)
        with session_scope(eng) as s:
            from pipeline.db import jobs as jobrepo

            assert jobrepo.cancel_job(s, job.id)[0].status == "cancelled"  # 0006's CHECK allows it
            assert repo.get_document(s, doc_id).status == "pending"
    finally:
        eng.dispose()


def test_concurrent_redeliveries_count_once(engine: Engine) -> None:
    """Threads saving the same texts at once (a redelivered batch) still count each line once."""
    import threading

    doc_id = add_doc(engine)
    page_id, ids = add_page(engine, doc_id, 1, 20)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for chunk in (ids[:10], ids[5:15], ids[10:]):
                with session_scope(engine) as s:
                    repo.set_line_texts(s, [(i, "t", 0.5) for i in chunk], model="m")
        except Exception as e:  # noqa: BLE001  (surfaced below; else lost with the thread)
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope(engine) as s:
        page = s.get_one(Page, page_id)
        assert (page.lines_done, page.status) == (20, "done")
        assert repo.get_document(s, doc_id).pages_done == 1


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0010_keeps_every_row_and_downgrades_cleanly(backend: str, request: pytest.FixtureRequest) -> None:
    """0010 rebuilds `jobs` and `documents` on SQLite (a CHECK and a foreign key changed): their
    links, pages and lines must stay; going back drops only unfinished --redo readings."""
    from alembic import command

    url = request.getfixturevalue(backend)
    with engine_at(url, "0007_link_per_name") as engine:
        doc_id = add_old_doc(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO jobs (id, settings, status, documents_total, documents_done, "
                              "documents_failed, created_at, accepting) VALUES "
                              "('j1', '{}', 'running', 1, 0, 0, '2026-11-24 00:00:00', false)"))
            conn.execute(text("INSERT INTO job_documents (job_id, document_id, position, name) "
                              "VALUES ('j1', :d, 0, 'a.pdf')"), {"d": doc_id})
            conn.execute(text("INSERT INTO pages (document_id, number, image_key, width, height, dpi, "
                              "angle, status, lines_total, lines_done) VALUES "
                              "(:d, 1, 'k', 100, 200, 300, 0, 'done', 2, 2)"), {"d": doc_id})
            page = conn.execute(text("SELECT id FROM pages")).scalar()
            for position in (0, 1):
                conn.execute(text("INSERT INTO lines (page_id, position, x0, y0, x1, y1, text, status) "
                                  "VALUES (:g, :p, 0, 0, 9, 9, 'old', 'done')"), {"g": page, "p": position})
        upgrade(url)
        assert schema_diffs(engine) == []
        with session_scope(engine) as s:
            assert [d.id for d in job_rows.job_documents(s, "j1")] == [doc_id]
            assert s.scalar(select(func.count()).select_from(Line)) == 2
            job_rows.get_job(s, "j1").status = "stopped"  # the new status is allowed
            redo, _ = readings.begin_redo(s, repo.get_document(s, doc_id))
        add_page(engine, redo, 1, 3)
        command.downgrade(alembic_config(url), "0007_link_per_name")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT status FROM jobs")).all() == [("failed",)]
            assert conn.execute(text("SELECT document_id FROM job_documents")).all() == [(doc_id,)]
            assert conn.execute(text("SELECT id FROM documents")).all() == [(doc_id,)]
            assert conn.execute(text("SELECT count(*) FROM lines")).scalar() == 2


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0011_keeps_bucket_checkpoints_per_tenant(backend: str, request: pytest.FixtureRequest) -> None:
    """A watcher's or S3 event's checkpoints made before 0011 are its tenant's afterwards, so the
    next pass does not submit the whole bucket again; downgrading merges them back."""
    from alembic import command

    from pipeline.db import jobs as jobrepo
    from pipeline.db.models import text_key
    from pipeline.watch import checkpoint_prefix

    url = request.getfixturevalue(backend)
    taken = {"j1": ("watcher", "s3://inbox/a.pdf"), "j2": ("alice", "s3://inbox/b.pdf")}
    with engine_at(url, "0010_run_stops") as engine:
        with engine.begin() as conn:
            for job, (owner, key) in taken.items():
                conn.execute(text("INSERT INTO jobs (id, settings, status, documents_total, documents_done, "
                                  "documents_failed, created_at, accepting, owner) VALUES (:j, '{}', 'done', "
                                  "1, 1, 0, '2026-11-24 00:00:00', false, :o)"), {"j": job, "o": owner})
                conn.execute(text("INSERT INTO watch_checkpoints (prefix, key_sha256, etag, key, job_id, "
                                  "state, created_at) VALUES ('s3://inbox/', :h, 'e1', :k, :j, 'queued', "
                                  "'2026-11-24 00:00:00')"), {"h": text_key(key), "k": key, "j": job})
        upgrade(url)
        with session_scope(engine) as s:
            for owner, key in taken.values():
                assert jobrepo.get_checkpoint(s, checkpoint_prefix("inbox", owner), key, "e1") is not None
            assert jobrepo.get_checkpoint(s, checkpoint_prefix("inbox", "alice"), "s3://inbox/a.pdf",
                                          "e1") is None  # the watcher's, not Alice's
        command.downgrade(alembic_config(url), "0010_run_stops")
        with engine.connect() as conn:
            prefixes = [p for p, in conn.execute(text("SELECT prefix FROM watch_checkpoints"))]
        assert prefixes == ["s3://inbox/"] * 2


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0012_removes_only_the_empty_jobs_the_old_event_route_left(backend: str,
                                                                    request: pytest.FixtureRequest) -> None:
    """The old POST /v1/events/s3 left an empty job 'queued' for ever on each retry for a deleted
    object; 0012 removes those and keeps every job that holds anything or could still move."""
    from alembic import command

    url = request.getfixturevalue(backend)
    # (id, status, accepting, key, webhook, local_run): only e1 and e2 are the route's leavings.
    jobs = [("e1", "queued", False, None, None, None), ("e2", "queued", False, None, None, None),
            ("keyed", "queued", False, "watch:pass-1", None, None),
            ("open", "queued", True, None, None, None),
            ("hook", "queued", False, None, "http://h/hook", None),
            ("run", "queued", False, None, None, '{"pid": 1}'),
            ("linked", "queued", False, None, None, None),  # a document, its counts not yet made
            ("checkpointed", "queued", False, None, None, None),
            ("done", "done", False, None, None, None)]
    with engine_at(url, "0011_checkpoints_per_owner") as engine:
        doc_id = add_old_doc(engine)
        with engine.begin() as conn:
            for job, status, accepting, key, hook, run in jobs:
                conn.execute(text("INSERT INTO jobs (id, settings, status, documents_total, documents_done, "
                                  "documents_failed, created_at, accepting, idempotency_key, webhook_url, "
                                  "local_run, owner) VALUES (:j, '{}', :s, 0, 0, 0, '2026-11-20 00:00:00', "
                                  ":a, :k, :h, :r, 'alice')"),
                             {"j": job, "s": status, "a": accepting, "k": key, "h": hook, "r": run})
            conn.execute(text("INSERT INTO job_documents (job_id, document_id, position, name, name_sha256) "
                              "VALUES ('linked', :d, 0, 'a.pdf', :n)"),
                         {"d": doc_id, "n": hashlib.sha256(b"a.pdf").hexdigest()})
            conn.execute(text("INSERT INTO watch_checkpoints (prefix, key_sha256, etag, key, job_id, state, "
                              "created_at) VALUES ('s3://inbox/#owner=alice', 'h', 'e', 's3://inbox/a.pdf', "
                              "'checkpointed', 'seen', '2026-11-20 00:00:00')"))
        upgrade(url)
        with engine.connect() as conn:
            kept = {j for j, in conn.execute(text("SELECT id FROM jobs"))}
        assert kept == {j[0] for j in jobs} - {"e1", "e2"}
        command.downgrade(alembic_config(url), "0011_checkpoints_per_owner")  # nothing to put back
        with engine.connect() as conn:
            assert {j for j, in conn.execute(text("SELECT id FROM jobs"))} == kept


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0013_gives_jobs_a_heartbeat_and_downgrades_cleanly(backend: str, request: pytest.FixtureRequest) -> None:
    """A `quire run` job made before 0013 has no heartbeat (it cannot be judged by one); the
    column goes again on the way down, the job kept."""
    from alembic import command

    url = request.getfixturevalue(backend)
    with engine_at(url, "0012_empty_event_jobs") as engine:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO jobs (id, settings, status, documents_total, documents_done, "
                              "documents_failed, created_at, accepting, local_run) VALUES ('j1', '{}', "
                              "'running', 1, 0, 0, '2026-11-24 00:00:00', false, '{\"pid\": 7}')"))
        upgrade(url)
        assert schema_diffs(engine) == []
        with session_scope(engine) as s:
            assert job_rows.get_job(s, "j1").heartbeat_at is None
            assert runs.beat(s, "j1") and job_rows.get_job(s, "j1").heartbeat_at is not None
        command.downgrade(alembic_config(url), "0012_empty_event_jobs")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, status FROM jobs")).all() == [("j1", "running")]
            assert "heartbeat_at" not in {c["name"] for c in inspect(conn).get_columns("jobs")}


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0014_adds_the_pending_deletions_and_downgrades_cleanly(backend: str, request: pytest.FixtureRequest) -> None:
    """The store objects a --redo lets go of are recorded with the change (pending_deletions), on
    a database made before 0014 too; the table goes again on the way down, the rest kept."""
    from alembic import command

    url = request.getfixturevalue(backend)
    with engine_at(url, "0013_run_heartbeat") as engine:
        doc_id = add_old_doc(engine)
        upgrade(url)
        assert schema_diffs(engine) == []
        with session_scope(engine) as s:
            assert readings.pending_deletions(s) == []
            deletion = readings.record_deletion(s, doc_id, {"k/2", "k/1"})
        with session_scope(engine) as s:
            assert readings.pending_deletions(s) == [deletion]
            assert readings.deletion_keys(s, deletion) == (doc_id, ["k/1", "k/2"])
        command.downgrade(alembic_config(url), "0013_run_heartbeat")
        with engine.connect() as conn:
            assert "pending_deletions" not in inspect(conn).get_table_names()
            assert conn.execute(text("SELECT id FROM documents")).all() == [(doc_id,)]


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0015_joins_the_lines_read_before_it_and_downgrades_cleanly(backend: str,
                                                                    request: pytest.FixtureRequest) -> None:
    """Pages read before 0015 are searchable across their line breaks once it has run (a phrase,
    a hyphenated word); the run-on text and its index go again on the way down."""
    from alembic import command

    from pipeline.db.search import search_lines

    url = request.getfixturevalue(backend)
    with engine_at(url, "0014_pending_deletions") as engine:
        doc_id = add_old_doc(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE documents SET status = 'done'"))
            add_old_read_page(conn, doc_id, ["listening. Then he", "says, the archi-", "ves of the county"])
        upgrade(url)
        assert schema_diffs(engine) == []
        with session_scope(engine) as s:
            assert [(h.line, h.runs_on and h.runs_on.line) for h in search_lines(s, '"then he says"')] \
                == [(1, 2)]
            assert [(h.line, h.runs_on and h.runs_on.line) for h in search_lines(s, "archives")] == [(2, 3)]
            assert [h.line for h in search_lines(s, "county")] == [3]
        command.downgrade(alembic_config(url), "0014_pending_deletions")
        with engine.connect() as conn:
            assert "run_on" not in {c["name"] for c in inspect(conn).get_columns("lines")}
            assert conn.execute(text("SELECT count(*) FROM lines")).scalar() == 3
            ids = conn.execute(text("SELECT id FROM lines ORDER BY position")).scalars().all()
        with engine.begin() as conn:  # the line search of 0002 is still kept up to date
            conn.execute(text("UPDATE lines SET text = 'the county hall' WHERE position = 2"))
        if backend == "sqlite_url":
            with engine.connect() as conn:
                assert conn.execute(text("SELECT rowid FROM lines_fts WHERE lines_fts MATCH 'hall'")
                                    ).scalars().all() == [ids[2]]
        upgrade(url)  # and up again
        with session_scope(engine) as s:
            assert [h.line for h in search_lines(s, "archives")] == []  # "hall" replaced "ves..."
            assert [h.line for h in search_lines(s, '"then he says"')] == [1]


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0013_to_head_and_back_keeps_a_read_job(backend: str, request: pytest.FixtureRequest) -> None:
    """The whole chain from 0013 to head and back with a read document, its job, pages and lines
    and a pending deletion in place: every row kept both ways, the new pieces working between."""
    from alembic import command

    from pipeline.db import job_status
    from pipeline.db.search import search_lines

    url = request.getfixturevalue(backend)
    with engine_at(url, "0013_run_heartbeat") as engine:
        doc_id = add_old_doc(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE documents SET status = 'done', page_count = 1, pages_done = 1"))
            conn.execute(text("INSERT INTO jobs (id, settings, status, documents_total, documents_done, "
                              "documents_failed, created_at, accepting, owner) VALUES ('j1', '{}', 'done', "
                              "1, 1, 0, '2026-11-24 00:00:00', false, 'alice')"))
            conn.execute(text("INSERT INTO job_documents (job_id, document_id, position, name, name_sha256) "
                              "VALUES ('j1', :d, 0, 'a.pdf', :n)"),
                         {"d": doc_id, "n": hashlib.sha256(b"a.pdf").hexdigest()})
            add_old_read_page(conn, doc_id, ["the county", "archives hold it"])
        upgrade(url)
        assert schema_diffs(engine) == []
        with session_scope(engine) as s:
            assert [h.line for h in search_lines(s, '"county archives"')] == [1]
            t = job_status.tallies(s, ["j1"])["j1"]
            assert (t.links, t.done, t.lines_total, t.lines_done) == (1, 1, 2, 2)
            assert [d.name for d in job_status.documents_page(s, "j1")] == ["a.pdf"]
            readings.record_deletion(s, doc_id, {"k/1"})
        command.downgrade(alembic_config(url), "0013_run_heartbeat")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM lines")).scalar() == 2
            assert conn.execute(text("SELECT count(*) FROM job_documents")).scalar() == 1
            assert "pending_deletions" not in inspect(conn).get_table_names()
        upgrade(url)
        assert schema_diffs(engine) == []
        with session_scope(engine) as s:
            assert [h.line for h in search_lines(s, '"county archives"')] == [1]


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0017_records_run_outputs_indexes_redo_of_and_downgrades_cleanly(backend: str,
                                                                         request: pytest.FixtureRequest) -> None:
    """What a rerun over many files looks up per file is indexed (a --redo waiting, the files
    --out holds); the records go with their document, and the pieces go on the way down."""
    from alembic import command

    from pipeline.db import outputs

    url = request.getfixturevalue(backend)
    with engine_at(url, "0016_job_document_order") as engine:
        doc_id = add_old_doc(engine)
        upgrade(url)
        assert schema_diffs(engine) == []
        assert "ix_documents_redo_of" in {ix["name"] for ix in inspect(engine).get_indexes("documents")}
        long_path = "/out/" + "é" * 3000 + ".txt"  # longer than an index entry holds as text
        with session_scope(engine) as s:
            outputs.record(s, [outputs.Written(long_path, doc_id, "f1", 10, 1, 2)])
        with session_scope(engine) as s:
            outputs.record(s, [outputs.Written(long_path, doc_id, "f2", 11, 3, 4)])  # rewritten
        with session_scope(engine) as s:
            assert outputs.recorded(s, [long_path, "/out/other.txt"]) == {
                long_path: outputs.Written(long_path, doc_id, "f2", 11, 3, 4)}
        with engine.begin() as conn:  # a deleted document's records go with it
            conn.execute(text("DELETE FROM documents"))
            assert conn.execute(text("SELECT count(*) FROM run_outputs")).scalar() == 0
        command.downgrade(alembic_config(url), "0016_job_document_order")
        with engine.connect() as conn:
            assert "run_outputs" not in inspect(conn).get_table_names()
            assert "ix_documents_redo_of" not in {ix["name"] for ix in inspect(conn).get_indexes("documents")}


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0019_adds_the_content_claims_and_downgrades_cleanly(backend: str,
                                                             request: pytest.FixtureRequest) -> None:
    """A clean-up's claims on the files whose objects it deletes (content_claims) hold a new
    document of those bytes back, on a database made before 0019 too; the table goes on the way
    down, the rest kept."""
    from alembic import command

    from pipeline.db import locks

    url = request.getfixturevalue(backend)
    with engine_at(url, "0018_file_hashes") as engine:
        doc_id = add_old_doc(engine)
        upgrade(url)
        assert schema_diffs(engine) == []
        assert "ix_content_claims_sha256" in {
            ix["name"] for ix in inspect(engine).get_indexes("content_claims")}
        with session_scope(engine) as s:
            claims = locks.claim(s, [SHA2])
        with pytest.raises(locks.ContentClaimedError), session_scope(engine) as s:
            repo.upsert_document(s, sha256=SHA2, profile="p1", name="b.pdf",
                                 source_uri="file:///b.pdf", size_bytes=1)
        with session_scope(engine) as s:
            locks.release(s, claims)
        add_doc(engine, SHA2)
        command.downgrade(alembic_config(url), "0018_file_hashes")
        with engine.connect() as conn:
            assert "content_claims" not in inspect(conn).get_table_names()
            assert len(conn.execute(text("SELECT id FROM documents")).all()) == 2
            assert (doc_id,) in conn.execute(text("SELECT id FROM documents")).all()


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0020_adds_the_webhook_resend_columns_and_downgrades_cleanly(
        backend: str, request: pytest.FixtureRequest) -> None:
    """A job finished before 0020 keeps no resend time (its webhook is left as it was), and a job
    ended after it is owed its webhook; the columns and index go on the way down, the jobs kept."""
    from alembic import command

    from pipeline.db import jobs as jobrepo

    url = request.getfixturevalue(backend)
    with engine_at(url, "0019_content_claims") as engine:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO jobs (id, settings, status, documents_total, documents_done, "
                              "documents_failed, created_at, finished_at, accepting, webhook_url) VALUES "
                              "('j1', '{}', 'done', 0, 0, 0, '2026-11-24 00:00:00', "
                              "'2026-11-24 00:00:00', false, 'http://h/')"))
        upgrade(url)
        assert schema_diffs(engine) == []
        with session_scope(engine) as s:
            old = job_rows.get_job(s, "j1")
            assert (old.webhook_due_at, old.webhook_attempts) == (None, 0)
            job, _ = jobrepo.create_keyed_job(s, settings={}, owner=None, idempotency_key=None,
                                              webhook_url="http://h/")
            assert jobrepo.refresh_job(s, job.id).webhook_due_at is not None
        command.downgrade(alembic_config(url), "0019_content_claims")
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("jobs")}
            assert not {"webhook_due_at", "webhook_attempts"} & columns
            assert len(conn.execute(text("SELECT id FROM jobs")).all()) == 2


@pytest.mark.parametrize("backend", ["sqlite_url", "postgres_url"])
def test_0021_finds_prices_and_dates_read_before_it_and_downgrades_cleanly(
        backend: str, request: pytest.FixtureRequest) -> None:
    """Lines read before 0021 are searched by their words as typed on both backends; on
    PostgreSQL the stored words are what the runtime parses (pipeline.db.search.words_of), and
    the expression indexes come back on the way down."""
    from alembic import command

    from pipeline.db import runon
    from pipeline.db.search import search_lines, words_of

    url = request.getfixturevalue(backend)
    texts = ["TOTAL 12.50 on 2024-03-05", "mail a@b.example <b>x</b> C++ ~y", "it is self-",
             "evident that x_y holds"]
    with engine_at(url, "0020_webhook_resend") as engine:
        doc_id = add_old_doc(engine)
        with engine.begin() as conn:
            add_old_read_page(conn, doc_id, texts)
            conn.execute(text("UPDATE documents SET status = 'done'"))
        with engine.begin() as conn:
            runon.fill_run_on(conn, [7])
        upgrade(url)
        assert schema_diffs(engine) == []
        with session_scope(engine) as s:
            assert [h.line for h in search_lines(s, "12.50")] == [1]
            assert [h.line for h in search_lines(s, "2024-03-05")] == [1]
            assert [(h.line, h.runs_on and h.runs_on.line) for h in search_lines(s, "self-evident")] == [(3, 4)]
        if backend == "postgres_url":
            with engine.connect() as conn:
                same = conn.execute(text(f"SELECT bool_and(words = {words_of('text')} AND "
                                         f"run_on_words IS NOT DISTINCT FROM {words_of('run_on')}) "
                                         "FROM lines")).scalar()
                assert same is True
        command.downgrade(alembic_config(url), "0020_webhook_resend")
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("lines")}
            assert not {"words", "run_on_words"} & columns
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("lines")}
            if backend == "postgres_url":
                assert {"ix_lines_text_tsv", "ix_lines_run_on_tsv"} <= indexes
        upgrade(url)
        with session_scope(engine) as s:
            assert [h.line for h in search_lines(s, "12.50")] == [1]
