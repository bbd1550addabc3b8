"""`quire run` end to end on the embedded default: PDF in, text out, rows in SQLite, objects in the store."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.cli_home import db_rows, quire, quire_home
from tests.model_fixtures import LETTER_LINES, make_letter_page
from tests.pagegen import make_pdf

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")
DPI = 150


@pytest.fixture(scope="module")
def letter(tmp_path_factory, letter_reader) -> tuple[Path, Path]:
    """(a one-page letter PDF, a model that reads its lines)."""
    root = tmp_path_factory.mktemp("letter")
    pdf = make_pdf([make_letter_page(DPI)], root / "letter.pdf", dpi=DPI)
    return pdf, letter_reader


@pytest.fixture
def env(tmp_path, letter, monkeypatch):
    yield from quire_home(tmp_path, letter[1], DPI, monkeypatch)


def test_run_writes_text_json_rows_and_objects_then_skips_on_rerun(tmp_path, letter, env):
    pdf, _ = letter
    docs = tmp_path / "in"
    (docs / "sub").mkdir(parents=True)
    shutil.copy(pdf, docs / "sub" / "letter.pdf")
    (docs / "notes.gt.txt").write_text("not a document, and not picked up from a folder walk")
    out = tmp_path / "out"

    result = quire("run", str(docs), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "1 document: 1 done" in result.output and "pages/min" in result.output
    assert f"read with {letter[1]} (" in result.output  # which model read it
    assert "1 file passed over, not a PDF or an image by its suffix: notes.gt.txt" in result.output

    # A link to a folder is not followed (a link back up would loop), and the run says so.
    linked = tmp_path / "linked"
    (linked / "box").mkdir(parents=True)
    (linked / "box" / "scans").symlink_to(docs / "sub", target_is_directory=True)
    (linked / "box" / "readme.txt").write_text("about the box")
    none = quire("run", str(linked), "--no-progress")
    assert none.exit_code == 2 and "no PDF or image files found" in none.output
    assert "1 link to a folder passed over, not followed" in none.output and "box/scans" in none.output

    # --out mirrors the input folder's tree.
    assert (out / "sub" / "letter.txt").read_text() == "\n".join(LETTER_LINES) + "\n"
    data = json.loads((out / "sub" / "letter.json").read_text())
    [page] = data["pages"]
    assert [line["text"] for line in page["lines"]] == list(LETTER_LINES)
    assert page["width"] == int(8.5 * DPI) and page["dpi"] == DPI
    tops = [line["bbox"][1] for line in page["lines"]]
    assert tops == sorted(tops) and all(0.9 < line["confidence"] <= 1 for line in page["lines"])

    rows = db_rows(env, "SELECT l.text FROM lines l JOIN pages p ON p.id = l.page_id ORDER BY l.position")
    assert [r[0] for r in rows] == list(LETTER_LINES)
    assert db_rows(env, "SELECT status, page_count FROM documents") == [("done", 1)]
    stored = {p.relative_to(env / "store").as_posix() for p in (env / "store").rglob("*") if p.is_file()}
    assert any(k.endswith("/source") for k in stored)
    assert any(k.endswith("/pages/0001.jpg") for k in stored)  # a PDF's grey page: JPEG
    assert any(k.endswith("/exports/text.txt") for k in stored)

    (out / "sub" / "letter.txt").unlink()
    # The same bytes under another name in another folder: read once, found by either name.
    (docs / "box2").mkdir()
    shutil.copy(pdf, docs / "box2" / "copy.pdf")
    again = quire("run", str(docs), "--out", str(out), "--no-progress")
    assert again.exit_code == 0
    assert "2 already done (skipped)" in again.output
    assert (out / "sub" / "letter.txt").read_text() == "\n".join(LETTER_LINES) + "\n"  # from SQL
    assert (out / "box2" / "copy.txt").read_text() == "\n".join(LETTER_LINES) + "\n"
    assert json.loads((out / "box2" / "copy.json").read_text())["document"] == "in/box2/copy.pdf"
    assert len(db_rows(env, "SELECT id FROM lines")) == len(LETTER_LINES)  # nothing redone
    exported = quire("export", "copy.pdf")
    assert exported.exit_code == 0 and exported.stdout.startswith(LETTER_LINES[0]), exported.output
    redone = quire("run", str(docs / "sub" / "letter.pdf"), "--redo", "--no-progress")
    assert redone.exit_code == 0 and "1 document: 1 done" in redone.output, redone.output
    assert len(db_rows(env, "SELECT id FROM lines")) == len(LETTER_LINES)  # read again, not added


def test_same_named_files_of_two_boxes_run_one_by_one_are_told_apart(tmp_path, letter, env):
    pdf, _ = letter
    scans = tmp_path / "scans"
    (scans / "box1").mkdir(parents=True)
    (scans / "box2").mkdir()
    shutil.copy(pdf, scans / "box1" / "0001.pdf")
    make_pdf([make_letter_page(DPI)] * 2, scans / "box2" / "0001.pdf", dpi=DPI)  # other bytes, same name
    for box in ("box1", "box2"):
        assert quire("run", str(scans / box), "--no-progress").exit_code == 0

    assert db_rows(env, "SELECT name, page_count FROM documents ORDER BY name") == [
        ("box1/0001.pdf", 1), ("box2/0001.pdf", 2)]
    found = quire("search", LETTER_LINES[0].split()[0])
    assert "box1/0001.pdf\tpage 1" in found.stdout and "box2/0001.pdf\tpage 2" in found.stdout
    second = json.loads(quire("export", "box2/0001.pdf", "--format", "json").stdout)
    assert len(second["pages"]) == 2
    # The file name alone still finds it, saying which of the two it took.
    either = CliRunner().invoke(app, ["export", "0001.pdf"])
    assert either.exit_code == 0 and either.stdout.startswith(LETTER_LINES[0])
    assert "2 different files are named '0001.pdf'" in either.stderr and "box1/0001.pdf" in either.stderr


def test_each_copy_of_a_file_in_one_run_is_found_by_its_own_name(tmp_path, letter, env):
    """A copy, or a link, of a file in the same run is read once; the job used to keep the first
    file's name only, so `quire export copy.pdf` found nothing and `status` listed one file."""
    pdf, _ = letter
    docs = tmp_path / "in"
    docs.mkdir()
    shutil.copy(pdf, docs / "letter.pdf")
    shutil.copy(pdf, docs / "copy.pdf")
    (docs / "link.pdf").symlink_to("letter.pdf")
    out = tmp_path / "out"
    result = quire("run", str(docs), "--out", str(out), "--no-progress")
    # Nothing was read before this run: the copies are not "already done".
    assert result.exit_code == 0, result.output
    assert ("3 documents: 1 done, 2 copies of those (same bytes, read once), 0 already done (skipped), "
            "0 failed") in result.output, result.output
    assert sorted(p.name for p in out.glob("*.txt")) == ["copy.txt", "letter.txt", "link.txt"]
    again = quire("run", str(docs), "--no-progress")  # read by the run before: already done
    assert "3 documents: 0 done, 3 already done (skipped), 0 failed" in again.output, again.output

    for name in ("copy.pdf", "link.pdf"):
        exported = json.loads(quire("export", name, "--format", "json").stdout)
        assert exported["document"] == f"in/{name}"
        assert [ln["text"] for ln in exported["pages"][0]["lines"]] == list(LETTER_LINES)
    assert quire("export", "link.pdf", "--out", f"{tmp_path / 'exp'}/").exit_code == 0
    assert [p.name for p in (tmp_path / "exp").iterdir()] == ["link.txt"]
    viewed = quire("view", "copy.pdf", "--no-serve", "--no-open", "--out", f"{tmp_path / 'view'}/")
    assert viewed.exit_code == 0 and (tmp_path / "view" / "copy.html").exists()

    [(job_id,)] = db_rows(env, "SELECT id FROM jobs ORDER BY created_at LIMIT 1")
    view = json.loads(quire("status", job_id, "--json").stdout)
    assert [d["name"] for d in view["documents"]] == ["in/copy.pdf", "in/letter.pdf", "in/link.pdf"]
    assert view["documents_count"]["done"] == 3 and view["lines"]["total"] == len(LETTER_LINES)


def test_copies_in_two_folders_are_exported_and_viewed_under_their_own_paths(tmp_path, letter, env):
    """The same bytes in D/sub1 and D/sub2 are one document: `export sub2/same.pdf` and `view`
    labelled it D/sub1/same.pdf (only the file name was matched), and `view` of either wrote
    the same same.html."""
    pdf, _ = letter
    for sub in ("sub1", "sub2"):
        (tmp_path / "D" / sub).mkdir(parents=True)
        shutil.copy(pdf, tmp_path / "D" / sub / "same.pdf")
    assert quire("run", str(tmp_path / "D"), "--no-progress").exit_code == 0

    assert "<title>D/sub2/same.pdf</title>" in quire("export", "sub2/same.pdf", "--format", "hocr").stdout
    for ref, name in (("sub1/same.pdf", "D/sub1/same.pdf"), ("D/sub2/same.pdf", "D/sub2/same.pdf"),
                      (str(tmp_path / "D" / "sub2" / "same.pdf"), "D/sub2/same.pdf")):  # the file itself
        assert json.loads(quire("export", ref, "--format", "json").stdout)["document"] == name, ref
    # Into a folder, each goes where `quire run --out` puts it.
    assert quire("export", "sub2/same.pdf", "--out", f"{tmp_path / 'exp'}/").exit_code == 0
    assert [p.relative_to(tmp_path / "exp").as_posix() for p in (tmp_path / "exp").rglob("*.*")] == [
        "sub2/same.txt"]
    views = tmp_path / "views"
    for sub in ("sub1", "sub2"):
        viewed = quire("view", f"{sub}/same.pdf", "--no-serve", "--no-open", "--out", f"{views}/")
        assert viewed.exit_code == 0, viewed.output
        assert f"<h1>D/{sub}/same.pdf</h1>" in (views / sub / "same.html").read_text()
    shown = {quire("view", f"{sub}/same.pdf", "--no-serve", "--no-open").stdout.strip()
             for sub in ("sub1", "sub2")}  # under QUIRE_HOME: two pages too
    assert len(shown) == 2 and all(uri.endswith("/same.html") for uri in shown), shown


def test_a_rescanned_file_is_searched_as_its_new_text_and_its_old_text_only_on_request(
        tmp_path, letter, env):
    """A file replaced by a rescan (new bytes, same name) and run again: search showed the old
    reading's lines under that name, with no sign they were old, though the file and `quire
    export` of the name give the new text."""
    pdf, _ = letter
    letters = tmp_path / "E" / "letters"
    letters.mkdir(parents=True)
    shutil.copy(pdf, letters / "item_000.pdf")
    assert quire("run", str(tmp_path / "E"), "--no-progress").exit_code == 0
    [(old_id,)] = db_rows(env, "SELECT id FROM documents")
    page = make_letter_page(DPI).copy()  # the rescan: the letter without "Dear Mr. Holloway,"
    top = int(DPI * (1.0 + 0.45 * 2))
    page[top - 5 : top + int(DPI * 0.3)] = 255
    make_pdf([page], letters / "item_000.pdf", dpi=DPI)
    assert quire("run", str(tmp_path / "E"), "--no-progress").exit_code == 0
    assert "Holloway" not in quire("export", "E/letters/item_000.pdf").stdout

    gone = CliRunner().invoke(app, ["search", '"Mr. Holloway"'])
    assert gone.exit_code == 1 and gone.stdout == "", gone.output
    assert "superseded readings of replaced files do (--superseded shows them)" in gone.stderr
    [now] = quire("search", "County").stdout.splitlines()
    assert now.startswith("E/letters/item_000.pdf\tpage 1\tline 1\t"), now  # the rescan's line

    [old] = quire("search", "--superseded", '"Mr. Holloway"').stdout.splitlines()
    label = rf"E/letters/item_000\.pdf \(superseded: {old_id}, read \d{{4}}-\d\d-\d\d \d\d:\d\d UTC\)"
    assert re.fullmatch(label + r"\tpage 1\tline 3\t\[[0-9,]+\]\tDear \[Mr\. Holloway\],", old), old
    both = json.loads(quire("search", "--superseded", "--json", "County").stdout)
    assert sorted((h["document_id"] == old_id, h["superseded"]) for h in both) == [
        (False, False), (True, True)]


def test_a_run_done_before_writes_the_same_outputs_as_the_first(tmp_path, letter, env):
    """Read now, an export was named by the document's first name (`in/letter.pdf`); already
    done, by the file name alone (`letter.pdf`): the two runs' ALTO, hOCR, PAGE and JSON differed."""
    pdf, _ = letter
    docs = tmp_path / "in"
    (docs / "box").mkdir(parents=True)
    shutil.copy(pdf, docs / "letter.pdf")
    shutil.copy(pdf, docs / "box" / "copy.pdf")  # read once, in the first run too
    formats = "txt,json,hocr,alto,page,pdf"
    for out in ("out1", "out2"):
        result = quire("run", str(docs), "--out", str(tmp_path / out), "--format", formats, "--no-progress")
        assert result.exit_code == 0, result.output
    assert "2 already done (skipped)" in result.output

    def outputs(out: str) -> dict[str, bytes]:
        return {p.relative_to(tmp_path / out).as_posix(): p.read_bytes()
                for p in sorted((tmp_path / out).rglob("*.*"))}

    first = outputs("out1")
    assert first == outputs("out2")
    assert sorted(first) == [f"{stem}.{ext}" for stem in ("box/copy", "letter")
                             for ext in ("alto.xml", "hocr", "json", "ocr.pdf", "page.xml", "txt")]
    # Each named as the run stores and `quire export` shows it: its path in the folder given.
    for stem, name in (("box/copy", "in/box/copy.pdf"), ("letter", "in/letter.pdf")):
        assert json.loads(first[f"{stem}.json"])["document"] == name
        assert f"<fileName>{name}</fileName>".encode() in first[f"{stem}.alto.xml"]


def test_a_sideways_scan_is_read_upright_and_its_searchable_pdf_shown_upright(tmp_path, letter, env,
                                                                               monkeypatch):
    import subprocess

    import pikepdf

    from pipeline.orientation import turn

    # The letter scanned on its side (landscape, its text running up the page).
    sideways = make_pdf([turn(make_letter_page(DPI), 270)], tmp_path / "sideways.pdf", dpi=DPI)
    out = tmp_path / "out"
    result = quire("run", str(sideways), "--out", str(out), "--format", "text,json,pdf", "--no-progress")
    assert result.exit_code == 0, result.output

    assert (out / "sideways.txt").read_text() == "\n".join(LETTER_LINES) + "\n"
    [page] = json.loads((out / "sideways.json").read_text())["pages"]
    assert page["rotation"] == 90 and (page["width"], page["height"]) == (int(8.5 * DPI), 11 * DPI)
    assert db_rows(env, "SELECT rotation, width FROM pages") == [(90, int(8.5 * DPI))]
    with pikepdf.open(out / "sideways.ocr.pdf") as pdf:
        assert int(pdf.pages[0].obj.Rotate) == 90  # the source page, shown upright
    shown = subprocess.run(["pdftotext", "-layout", str(out / "sideways.ocr.pdf"), "-"], check=True,
                           capture_output=True, text=True).stdout
    assert [line.strip() for line in shown.splitlines() if line.strip()] == list(LETTER_LINES)

    # Turned off, the page is read as it came: on its side, where no line of the letter is found.
    monkeypatch.setenv("QUIRE_RENDER__ROTATE_PAGES", "false")
    kept = quire("run", str(sideways), "--out", str(tmp_path / "kept"), "--no-progress")
    assert kept.exit_code == 0, kept.output
    assert (tmp_path / "kept" / "sideways.txt").read_text() != (out / "sideways.txt").read_text()
    assert sorted(db_rows(env, "SELECT rotation FROM pages")) == [(0,), (90,)]
    monkeypatch.delenv("QUIRE_RENDER__ROTATE_PAGES")
    flag = quire("run", str(sideways), "--no-rotate-pages", "--no-progress")  # the same setting
    assert flag.exit_code == 0 and "1 already done" in flag.output, flag.output
    # Two readings of one file now: export says which it gives and how to pick the other.
    exported = quire("export", "sideways.pdf")
    assert exported.exit_code == 0 and "'sideways.pdf' was read 2 times with different settings" in exported.output
    [(other,)] = db_rows(env, "SELECT d.id FROM documents d JOIN pages p ON p.document_id = d.id "
                              "WHERE p.rotation = 90")
    assert f"pass an id to choose another: {other}" in exported.output
    assert quire("export", other).stdout == "\n".join(LETTER_LINES) + "\n"


def test_bad_files_fail_alone_with_reasons_and_exit_1(tmp_path, letter, env):
    pdf, _ = letter
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nnonsense\n")
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    out = tmp_path / "out"

    result = quire("run", str(empty), str(pdf), str(broken), str(text), "--out", str(out), "--no-progress")
    assert result.exit_code == 1
    assert f"FAILED {empty}: file is empty" in result.output
    assert f"FAILED {broken}: PDF is damaged or unreadable" in result.output
    assert f"FAILED {text}: not a PDF or an image" in result.output
    assert (out / "letter.txt").read_text() == "\n".join(LETTER_LINES) + "\n"  # the good one went on
    statuses = dict(db_rows(env, "SELECT name, status FROM documents"))
    assert statuses == {"empty.pdf": "failed", "letter.pdf": "done", "broken.pdf": "failed", "readme.txt": "failed"}
    errors = dict(db_rows(env, "SELECT name, error FROM documents WHERE status = 'failed'"))
    assert errors["broken.pdf"].startswith("PDF is damaged")


def test_phone_photos_and_sane_scans_are_read_from_a_folder(tmp_path, letter, env):
    """An iPhone saves HEIC, and SANE's scanimage writes PNM (gray .pgm, 1-bit .pbm): each is
    found in the folder walk and read to its text, as the same page as a PNG would be."""
    import pillow_heif
    from PIL import Image

    from tests.model_fixtures import make_letter_page

    page = Image.fromarray(make_letter_page(DPI))
    folder = tmp_path / "box"
    folder.mkdir()
    pillow_heif.from_pillow(page.convert("RGB")).save(folder / "photo.heic", quality=-1)  # lossless
    page.save(folder / "scan.pgm")
    bitmap = page.point(lambda v: 255 if v > 128 else 0).convert("1")
    bitmap.save(folder / "fax.pbm")
    # P1, "plain" PBM: each pixel written as a digit, 1 for black (Pillow writes only raw P4).
    digits = np.where(np.asarray(bitmap), "0", "1")
    (folder / "plain.pbm").write_text(f"P1\n{bitmap.width} {bitmap.height}\n"
                                      + "\n".join("".join(row) for row in digits) + "\n")
    out = tmp_path / "out"
    result = quire("run", str(folder), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "4 documents: 4 done" in result.output
    for name in ("photo", "scan", "fax", "plain"):
        assert (out / f"{name}.txt").read_text() == "\n".join(LETTER_LINES) + "\n", name


def test_unknown_format_lists_valid_ones(tmp_path, letter, env):
    result = quire("run", str(letter[0]), "--format", "txt,docx", "--no-progress")
    assert result.exit_code == 2
    assert "unknown format 'docx'; valid formats:" in result.output


def test_out_may_be_the_input_folder_but_not_a_file(tmp_path, letter, env):
    """A rerun into the input folder does not read its own searchable PDFs as new documents; a
    file given as --out is refused before any work."""
    folder = tmp_path / "box"
    folder.mkdir()
    shutil.copy(letter[0], folder / "letter.pdf")
    for _ in range(2):
        result = quire("run", str(folder), "--out", str(folder), "--format", "txt,pdf", "--no-progress")
        assert result.exit_code == 0, result.output
    assert "1 file passed over, Quire's own searchable PDFs" in result.output
    assert "1 document: 0 done, 1 already done" in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["letter.ocr.pdf", "letter.pdf", "letter.txt"]
    (tmp_path / "afile").write_text("")
    refused = quire("run", str(letter[0]), "--out", str(tmp_path / "afile"), "--no-progress")
    assert refused.exit_code == 2 and "--out" in refused.output and "is a file" in refused.output
    assert db_rows(env, "SELECT count(*) FROM jobs") == [(2,)]  # the two runs above; none for it


def test_a_folder_holding_quire_home_does_not_read_quires_own_store(tmp_path, letter, env):
    """`cd scans && quire run .` keeps its data in ./quire-data: the page images it stored there
    are not scans, so a rerun reads nothing new (before, each run read the last run's images)."""
    shutil.copy(letter[0], tmp_path / "letter.pdf")
    for _ in range(2):
        result = quire("run", str(tmp_path), "--no-progress")
        assert result.exit_code == 0, result.output
    assert "1 document: 0 done, 1 already done" in result.output
    assert "passed over, Quire's own store and database (QUIRE_HOME)" in result.output
    assert str(env / "store") in result.output and "pages/0001." not in result.output
    assert db_rows(env, "SELECT name FROM documents") == [(f"{tmp_path.name}/letter.pdf",)]


def test_missing_path_is_named(tmp_path, env):
    result = quire("run", str(tmp_path / "nope.pdf"))
    assert result.exit_code == 2 and "no such file or folder" in result.output


def test_bad_environment_value_is_named_without_a_traceback(letter, env, monkeypatch, capsys):
    """A typo in a QUIRE_* variable names the variable, its value and what it should be."""
    from pipeline.cli import main

    monkeypatch.setenv("QUIRE_RECOGNIZE__DECODE", "fast")
    monkeypatch.setattr("sys.argv", ["quire", "run", str(letter[0]), "--no-progress"])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "QUIRE_RECOGNIZE__DECODE='fast'" in err and "'ctc'" in err
    assert "Traceback" not in err and "pydantic" not in err
    # A device torch would only refuse after the pages were segmented fails at once too.
    monkeypatch.setenv("QUIRE_RECOGNIZE__DECODE", "rescore")
    monkeypatch.setenv("QUIRE_DEVICE", "gpu")
    monkeypatch.setattr("sys.argv", ["quire", "run", str(letter[0])])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "QUIRE_DEVICE='gpu': use auto, cpu, cuda or cuda:N" in err


def test_recognize_prints_tsv_per_image(tmp_path, letter, env):
    from PIL import Image

    from pipeline.config import RenderOptions
    from pipeline.render import render_pages
    from pipeline.segment import segment_page

    [page] = list(render_pages(letter[0], RenderOptions(dpi=DPI)))
    paths = []
    for i, crop in enumerate(segment_page(page.image, dpi=DPI).crops):
        paths.append(tmp_path / f"line{i}.png")
        Image.fromarray(crop).save(paths[-1])
    result = quire("recognize", *map(str, paths), "--tsv")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [r[0] for r in rows] == list(map(str, paths))
    assert [r[1] for r in rows] == list(LETTER_LINES)
    assert all(0.9 < float(r[2]) <= 1.0 for r in rows)
    assert "looks like a page" not in result.output
    whole = tmp_path / "page.png"
    Image.fromarray(page.image).save(whole)
    warned = quire("recognize", str(whole))
    assert warned.exit_code == 0 and f"{whole} (1275x1650) looks like a page" in warned.output
    for precision in ("fp32", "bf16"):  # bf16 autocast reads the same text
        again = quire("recognize", *map(str, paths), "--tsv", "--precision", precision)
        assert [r.split("\t")[1] for r in again.stdout.strip().splitlines()] == list(LETTER_LINES)
    wrong = quire("recognize", *map(str, paths), "--precision", "fp16")
    assert wrong.exit_code == 2 and "--precision must be one of auto, bf16, fp32" in wrong.output


def test_recognize_reads_a_folder_in_chunks_and_names_a_bad_image(tmp_path, letter, env, monkeypatch):
    """A tesstrain-style folder (line images beside .gt.txt files), read a few images at a time:
    every line comes out in path order, and a corrupt image fails alone, by name."""
    from PIL import Image

    from pipeline import cli
    from pipeline.config import RenderOptions
    from pipeline.render import render_pages
    from pipeline.segment import segment_page

    monkeypatch.setattr(cli, "RECOGNIZE_CHUNK", 2)
    folder = tmp_path / "gt" / "letter"
    folder.mkdir(parents=True)
    [page] = list(render_pages(letter[0], RenderOptions(dpi=DPI)))
    for i, (crop, text) in enumerate(zip(segment_page(page.image, dpi=DPI).crops, LETTER_LINES)):
        Image.fromarray(crop).save(folder / f"line{i:02d}.png")
        (folder / f"line{i:02d}.gt.txt").write_text(text)
    (folder / "line01b.png").write_bytes(b"\x89PNG not really")
    result = quire("recognize", str(tmp_path / "gt"), "--tsv")
    assert result.exit_code == 1
    rows = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [Path(r[0]).name for r in rows] == [f"line{i:02d}.png" for i in range(len(LETTER_LINES))]
    assert [r[1] for r in rows] == list(LETTER_LINES)
    assert f"{folder / 'line01b.png'}: not an image Pillow can read (damaged, or in a format it does not know)" in result.stderr
    pdf = quire("recognize", str(letter[0]))  # a whole document given by mistake
    assert pdf.exit_code == 1
    assert "a PDF, not a line image: `quire run` reads whole documents" in pdf.stderr
    (tmp_path / "empty").mkdir()
    empty = quire("recognize", str(tmp_path / "empty"))
    assert empty.exit_code == 2 and "no line images found" in empty.stderr


def test_db_upgrade_creates_the_schema(tmp_path, env):
    url = f"sqlite:///{tmp_path / 'server.sqlite'}"
    result = quire("db", "upgrade", "--url", url)
    assert result.exit_code == 0 and "up to date" in result.output
    tables = {r[0] for r in sqlite3.connect(tmp_path / "server.sqlite").execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "documents", "job_documents", "pages", "lines"} <= tables


def test_progress_bar_counts_pages_and_lines(tmp_path, letter, env):
    result = quire("run", str(letter[0]), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "OCR" in result.output and "1/1" in result.output and "page" in result.output
    assert f"lines={len(LETTER_LINES)}" in result.output


def test_sigterm_ends_a_run_like_ctrl_c_and_the_same_command_goes_on(tmp_path, letter, env):
    """kill, systemd or a container stopping send SIGTERM: the job must be closed with what was
    done kept, not left queued, and the rerun reads only what is left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    docs = tmp_path / "in"
    docs.mkdir()
    for n in range(8):
        make_pdf([make_letter_page(DPI)] * 5, docs / f"doc{n}.pdf", dpi=DPI)
    make_pdf([make_letter_page(DPI)], docs / "doc0.pdf", dpi=DPI)  # done quickly, before the signal
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(docs), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if db_rows(env, "SELECT count(*) FROM documents WHERE status = 'done'")[0][0] >= 1:
                    break
            except sqlite3.OperationalError:  # not made yet, or being written
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be stopped"
        os.kill(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted; documents and pages finished so far are kept" in output, output
    [(job_id, status, done, failed)] = db_rows(
        env, "SELECT id, status, documents_done, documents_failed FROM jobs")
    assert status == "stopped" and done >= 1 and failed >= 1
    assert db_rows(env, "SELECT count(*) FROM documents WHERE status IN ('pending', 'processing')") == [(0,)]
    errors = {e for (e,) in db_rows(env, "SELECT error FROM documents WHERE status = 'failed'")}
    assert errors == {"quire run was stopped (Ctrl-C or SIGTERM) before this document was finished"}
    shown = quire("status", job_id).output
    assert f"job {job_id}: stopped" in shown and "of 8 documents" in shown, shown
    assert "quire run was stopped (Ctrl-C or SIGTERM), after reaching" in shown, shown

    again = quire("run", str(docs), "--no-progress")
    assert again.exit_code == 0 and f"{done} already done (skipped)" in again.output, again.output
    assert f"went on from job {job_id}, stopped before it finished" in again.output
    assert db_rows(env, "SELECT count(*) FROM documents WHERE status = 'done'") == [(8,)]
    # Its files are all done now, by the run that went on: it still says it was stopped.
    shown = quire("status", job_id).output
    assert f"job {job_id}: stopped" in shown and "went on from there" in shown, shown
