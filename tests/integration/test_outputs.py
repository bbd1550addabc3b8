"""A letter processed by `quire run` exports to every format from its rows, and is searchable."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pikepdf
import pytest
from lxml import etree
from typer.testing import CliRunner

from pipeline.cli import app
from tests.model_fixtures import LETTER_LINES, make_letter_page
from tests.pagegen import make_pdf
from tests.xml_checks import check_alto, check_hocr, page_schema

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils missing")
DPI = 150
FORMATS = {"txt": "txt", "json": "json", "hocr": "hocr", "alto": "alto.xml", "page": "page.xml",
           "pdf": "ocr.pdf", "pdfa": "pdfa.pdf"}


def quire(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def processed(tmp_path_factory, letter_reader):
    """(home, pdf, out dir) after `quire run --format <all>` on a one-page letter."""
    root = tmp_path_factory.mktemp("outputs")
    pdf = make_pdf([make_letter_page(DPI)], root / "letter.pdf", dpi=DPI)
    model = letter_reader
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUIRE_HOME", str(root / "home"))
        mp.setenv("QUIRE_MODEL", str(model))
        mp.setenv("QUIRE_RENDER__DPI", str(DPI))
        for name in ("QUIRE_DATABASE_URL", "QUIRE_STORAGE_URL"):
            mp.delenv(name, raising=False)
        result = quire("run", str(pdf), "--out", str(root / "out"), "--no-progress",
                       "--format", ",".join(FORMATS))
        assert result.exit_code == 0, result.output
        yield root / "home", pdf, root / "out"


@pytest.fixture
def env(processed, monkeypatch):
    home = processed[0]
    monkeypatch.setenv("QUIRE_HOME", str(home))
    for name in ("QUIRE_DATABASE_URL", "QUIRE_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    return home


def sql(home: Path, query: str) -> list[tuple]:
    with sqlite3.connect(home / "quire.sqlite") as conn:
        return conn.execute(query).fetchall()


def test_run_writes_every_format_and_they_agree_with_the_rows(processed, env):
    _, _, out = processed
    texts = [r[0] for r in sql(env, "SELECT text FROM lines ORDER BY position")]
    assert texts == list(LETTER_LINES)
    assert {p.name for p in out.iterdir()} == {f"letter.{ext}" for ext in FORMATS.values()}
    check_hocr((out / "letter.hocr").read_bytes())
    alto = check_alto((out / "letter.alto.xml").read_bytes())
    strings = [s.get("CONTENT") for s in alto.iter("{*}String")]
    assert strings == " ".join(LETTER_LINES).split()
    page = etree.fromstring((out / "letter.page.xml").read_bytes())
    page_schema().assertValid(page)
    assert [u.text for u in page.iterfind(".//{*}TextLine/{*}TextEquiv/{*}Unicode")] == list(LETTER_LINES)


def test_searchable_pdf_text_matches_the_sql_text_and_size_matches_the_source(processed, env):
    _, source, out = processed
    pdf_text = subprocess.run(["pdftotext", str(out / "letter.ocr.pdf"), "-"], check=True,
                              capture_output=True, text=True).stdout
    sql_text = "\n".join(r[0] for r in sql(env, "SELECT text FROM lines ORDER BY position"))
    assert pdf_text.split() == sql_text.split()
    assert [ln for ln in pdf_text.splitlines() if ln.strip()] == list(LETTER_LINES)
    # The source PDF's own page with the text layer added: about the source's size, its image
    # stream carried over byte for byte.
    assert (out / "letter.ocr.pdf").stat().st_size < source.stat().st_size * 1.02 + 8000
    with pikepdf.open(source) as original, pikepdf.open(out / "letter.ocr.pdf") as made:
        [(_, before)] = original.pages[0].get_images().items()
        [(_, after)] = made.pages[0].get_images().items()
        assert after.read_raw_bytes() == before.read_raw_bytes()


def test_the_pdf_a_is_the_source_page_with_the_sql_text_and_validates(processed, env):
    from pikepdf import pdfa

    _, source, out = processed
    assert pdfa.validate_written(out / "letter.pdfa.pdf", "2b").passed
    pdf_text = subprocess.run(["pdftotext", str(out / "letter.pdfa.pdf"), "-"], check=True,
                              capture_output=True, text=True).stdout
    assert [ln for ln in pdf_text.splitlines() if ln.strip()] == list(LETTER_LINES)
    with pikepdf.open(source) as original, pikepdf.open(out / "letter.pdfa.pdf") as made:
        assert len(made.pages) == 1 and len(made.pages[0].get_images()) == len(original.pages[0].get_images())


def test_export_by_id_path_or_name_reproduces_the_run_outputs(processed, env, tmp_path):
    _, pdf, out = processed
    [(doc_id,)] = sql(env, "SELECT id FROM documents")
    for ref, fmt in [(doc_id, "alto"), (str(pdf), "page"), ("letter.pdf", "hocr"), (doc_id, "json")]:
        result = quire("export", ref, "--format", fmt)
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == (out / f"letter.{FORMATS[fmt]}").read_bytes(), fmt
    target = tmp_path / "copy.pdf"
    result = quire("export", "letter.pdf", "--format", "pdf", "--out", str(target))
    assert result.exit_code == 0 and target.read_bytes() == (out / "letter.ocr.pdf").read_bytes()
    text = quire("export", doc_id, "-f", "txt")
    assert text.stdout == "\n".join(LETTER_LINES) + "\n"
    piped = quire("export", "letter.pdf", "--format", "pdf")  # stdout not a terminal: the bytes
    assert piped.exit_code == 0 and piped.stdout_bytes == (out / "letter.ocr.pdf").read_bytes()


def test_export_errors_name_the_problem(env, tmp_path):
    result = quire("export", "letter.pdf", "--format", "docx")
    assert result.exit_code == 2
    assert "unknown format 'docx'; valid formats: txt, json, hocr, alto, page, pdf, pdfa" in result.output
    missing = quire("export", "nothing-like-this.pdf")
    assert missing.exit_code != 0 and "no document with" in missing.output


def test_search_finds_a_known_phrase_and_not_a_missing_one(env):
    result = quire("search", '"Dear Mr. Holloway"')
    assert result.exit_code == 0, result.output
    [hit] = result.output.strip().splitlines()
    name, page, line, _box, text = hit.split("\t")
    assert (name, page, line, text) == ("letter.pdf", "page 1", "line 3", "[Dear Mr. Holloway],")
    data = json.loads(quire("search", "county archives", "--json").output)
    assert [(h["page"], h["line"], h["text"]) for h in data] == [(1, 1, "Quire County Archives")]
    assert len(data[0]["bbox"]) == 4 and data[0]["runs_on"] is None
    # A phrase the line break cuts, joined as the run read the page: one hit on its first line.
    [cut] = quire("search", '"archives 12 march"').output.strip().splitlines()
    assert cut.split("\t")[2] == "line 1-2"
    assert cut.split("\t")[4] == "Quire County [Archives] / [12 March] 1931"
    assert quire("search", "Zanzibar").exit_code == 1
    for hostile in ['"', "AND(", "NEAR(a b", "*", "county OR", "-march"]:
        assert quire("search", "--json", "--", hostile).exit_code == 0, hostile


def test_fts_follows_the_rows_when_a_document_is_redone(processed, env):
    from pipeline.db import repo
    from pipeline.db.search import search_lines
    from pipeline.db.session import make_engine, session_scope

    _, pdf, _ = processed
    engine = make_engine(f"sqlite:///{env / 'quire.sqlite'}")
    try:
        [(doc_id,)] = sql(env, "SELECT id FROM documents")
        with session_scope(engine) as s:
            repo.start_document(s, doc_id)  # what a redo does first: pages and lines go
        with session_scope(engine) as s:
            assert search_lines(s, "Holloway") == []
        result = quire("run", str(pdf), "--no-progress", "--format", "txt")
        assert result.exit_code == 0 and "1 done" in result.output
        with session_scope(engine) as s:
            assert [h.line for h in search_lines(s, "Holloway")] == [3]
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE lines SET text = 'Dear Mrs. Hartley,' WHERE position = 2")
        with session_scope(engine) as s:
            assert search_lines(s, "Holloway") == [] and len(search_lines(s, "Hartley")) == 1
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE lines SET text = 'Dear Mr. Holloway,' WHERE position = 2")
            conn.exec_driver_sql("INSERT INTO lines_fts(lines_fts) VALUES ('integrity-check')")
    finally:
        engine.dispose()


def test_view_writes_a_page_with_a_box_per_line(env, tmp_path):
    target = tmp_path / "view.html"
    result = quire("view", "letter.pdf", "--out", str(target), "--no-serve", "--no-open")
    assert result.exit_code == 0, result.output
    html = target.read_text()
    assert html.count('<rect class="box') == len(LETTER_LINES)
    assert "data:image/jpeg;base64," in html and "Dear Mr. Holloway," in html
    folder = tmp_path / "pages"
    into = quire("view", "letter.pdf", "--out", f"{folder}/", "--no-serve", "--no-open")
    assert into.exit_code == 0 and (folder / "letter.html").read_text() == html  # a folder, not a file


def test_postgresql_search_ranks_and_quotes(postgres_url):
    from pipeline.db import repo
    from pipeline.db.search import search_lines
    from pipeline.db.session import make_engine, session_scope, upgrade
    from pipeline.types import BBox

    upgrade(postgres_url)
    engine = make_engine(postgres_url)

    def read_letter(profile: str) -> None:
        """The letter's three first lines read under `profile`, as a run would store them."""
        with session_scope(engine) as s:
            doc, _ = repo.upsert_document(s, sha256=hashlib.sha256(b"pg").hexdigest(), profile=profile,
                                          name="a.pdf", source_uri="file:///a.pdf", size_bytes=1)
            page = repo.save_page(s, doc.id, number=1, image_key=f"k-{profile}", width=100,
                                  height=100, dpi=150, angle=0.0)
            lines = repo.save_lines(s, page.id, [(i, BBox(0, 10 * i, 50, 10 * i + 8), None)
                                                 for i in range(3)])
            repo.set_line_texts(s, [(ln.id, t, 0.9) for ln, t in zip(lines, LETTER_LINES)], model="m")

    try:
        read_letter("p")
        with session_scope(engine) as s:
            [hit] = search_lines(s, '"Mr. Holloway"')
            assert (hit.page, hit.line, hit.bbox.as_list()) == (1, 3, [0, 20, 50, 28])
            assert hit.highlighted() == "Dear [Mr]. [Holloway],"
            assert search_lines(s, "Zanzibar") == [] and search_lines(s, '"') == []
            # A prefix, as on SQLite; what would be tsquery syntax is only ever words.
            [prefixed] = search_lines(s, "Holl*")
            assert prefixed.highlighted() == "Dear Mr. [Holloway],"
            assert len(search_lines(s, "Dear Holl* !&|:*'")) == 1
            assert search_lines(s, '"Dear Holl*"') == []  # a phrase is whole words
            assert search_lines(s, "archives", owner="someone-else") == []
            for column, index in (("words", "ix_lines_words"), ("run_on_words", "ix_lines_run_on_words")):
                plan = s.connection().exec_driver_sql(
                    f"SET enable_seqscan = off; EXPLAIN SELECT id FROM lines WHERE "
                    f"{column} @@ to_tsquery('simple', 'x')").fetchall()
                assert index in " ".join(r[0] for r in plan)
        read_letter("q")  # the same file read under other settings: its lines are listed once
        with session_scope(engine) as s:
            assert len(search_lines(s, '"Mr. Holloway"')) == 1
    finally:
        engine.dispose()
