"""`quire run` over many files and again over the same files, as the user sees it: --out files an
earlier run wrote are left alone while unchanged, the summary stays short and names every failure,
and the bar counts pages as files are reached and ends at the pages read. Recognition is stood in
for: this is the driver's behaviour, not the model's."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import get_settings
from pipeline.types import LineText
from tests.model_fixtures import render_line

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")


class StandIn:
    def recognize(self, crops):
        return [LineText("a letter from the archive", 0.9) for _ in crops]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    from pipeline.runner import LocalRunner

    home = tmp_path / "home"
    monkeypatch.setenv("QUIRE_HOME", str(home))
    monkeypatch.setenv("QUIRE_RENDER__DPI", "150")
    monkeypatch.setenv("QUIRE_RENDER__ROTATE_PAGES", "false")  # turning reads lines with the model
    for name in ("QUIRE_DATABASE_URL", "QUIRE_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(LocalRunner, "_default_recognizer", lambda self: StandIn())
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def quire(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def page(i: int) -> np.ndarray:
    """A small page of two lines, its own by `i`."""
    image = np.full((140, 600), 255, np.uint8)
    for row, text in enumerate((f"Box {i // 10} folio {i}", "a letter from the archive")):
        line = render_line(text, 40)[:, :580]
        image[20 + 60 * row:60 + 60 * row, 10:10 + line.shape[1]] = line
    return image


def pngs(folder: Path, n: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:04d}.png" for i in range(start, start + n)]
    for i, path in zip(range(start, start + n), paths):
        Image.fromarray(page(i)).save(path)
    return paths


def pdf(path: Path, first: int, pages: int) -> Path:
    images = [Image.fromarray(page(first + k)).convert("RGB") for k in range(pages)]
    images[0].save(path, "PDF", resolution=150.0, save_all=True, append_images=images[1:])
    return path


def seen(out: Path) -> dict[str, tuple[int, int]]:
    """Each file in --out: (inode, modification time). A file written again is a new inode."""
    return {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_rerun_leaves_unchanged_outputs_alone_and_writes_missing_edited_or_reread_ones(tmp_path, home):
    scans, out = tmp_path / "scans", tmp_path / "out"
    pngs(scans, 4)
    run = ("run", scans, "--out", out, "--format", "txt,json", "--no-progress")
    first = quire(*run)
    assert first.exit_code == 0 and f"--out {out}: 8 files written" in first.stdout, first.output
    original = {name: (out / name).read_bytes() for name in seen(out)}
    before = seen(out)

    (out / "0000.txt").unlink()  # deleted
    (out / "0001.json").write_text("{}")  # edited
    same_size = out / "0002.txt"  # edited to the same size, its modification time set back
    stat = same_size.stat()
    same_size.write_bytes(b"x" * stat.st_size)
    os.utime(same_size, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    again = quire(*run)
    assert again.exit_code == 0, again.output
    assert f"--out {out}: 3 files written, 5 left as an earlier run wrote them" in again.stdout, again.stdout
    assert {name: (out / name).read_bytes() for name in original} == original
    now = seen(out)
    rewritten = {"0000.txt", "0001.json", "0002.txt"}
    assert {name: now[name] for name in now if name not in rewritten} == \
        {name: before[name] for name in before if name not in rewritten}  # not touched at all

    # Another format asked for: only its files are made; the others stay as they are.
    alto = quire("run", scans, "--out", out, "--format", "txt,json,alto", "--no-progress")
    assert f"--out {out}: 4 files written, 8 left as an earlier run wrote them" in alto.stdout, alto.stdout
    assert {name: seen(out)[name] for name in now} == now

    # Read again (--redo), even where that run wrote elsewhere: every file here holds the earlier
    # reading, and is written again.
    redo = quire("run", scans, "--redo", "--format", "txt,json", "--no-progress")
    assert redo.exit_code == 0 and "4 documents: 4 done" in redo.stdout, redo.output
    after_redo = quire(*run)
    assert f"--out {out}: 8 files written" in after_redo.stdout, after_redo.stdout
    assert all(seen(out)[name][0] != now[name][0] for name in now)
    settled = seen(out)
    assert f"--out {out}: 0 files written, 8 left" in quire(*run).stdout
    assert seen(out) == settled


def test_a_quire_whose_exporters_changed_writes_the_outputs_again(tmp_path, home, monkeypatch):
    """A checkout updated with git keeps its version number; its exports may still differ."""
    from pipeline import run_outputs

    scans, out = tmp_path / "scans", tmp_path / "out"
    pngs(scans, 2)
    run = ("run", scans, "--out", out, "--format", "txt", "--no-progress")
    assert f"--out {out}: 2 files written" in quire(*run).stdout
    assert f"--out {out}: 0 files written, 2 left" in quire(*run).stdout
    exporters = tmp_path / "exporters"  # the package's code, one template changed
    shutil.copytree(Path(run_outputs.exporters_package.__file__).parent, exporters)
    template = exporters / "templates" / "alto.xml.j2"
    template.write_text(template.read_text() + "\n")
    digest = run_outputs.exporters_code.__wrapped__
    monkeypatch.setattr(run_outputs, "exporters_code", lambda: digest(exporters))
    assert f"--out {out}: 2 files written" in quire(*run).stdout


def test_the_summary_of_a_rerun_is_short_and_names_every_failure(tmp_path, home, monkeypatch):
    scans, out = tmp_path / "scans", tmp_path / "out"
    pngs(scans, 12)
    (scans / "empty.png").write_bytes(b"")
    (scans / "broken.pdf").write_bytes(b"%PDF-1.4\nnonsense\n")
    (scans / "torn.tif").write_bytes(b"II*\x00nonsense")
    bad = [scans / name for name in ("broken.pdf", "empty.png", "torn.tif")]
    first = quire("run", scans, "--out", out, "--no-progress")
    assert first.exit_code == 1 and "15 documents: 12 done, 0 already done (skipped), 3 failed" in first.stdout

    again = quire("run", scans, "--out", out, "--no-progress")
    assert again.exit_code == 1
    lines = again.stdout.splitlines()
    job = re.search(r"job (\S+) \(`quire status", again.stdout)[1]
    assert lines[0].startswith("15 documents: 0 done, 12 already done (skipped), 3 failed")
    assert lines[2] == f"  --out {out}: 0 files written, 24 left as an earlier run wrote them"
    assert lines[3] == (f"  already done (skipped): {scans / '0000.png'}, {scans / '0001.png'}, "
                        f"{scans / '0002.png'} and 9 more (`quire status {job} --list done` lists "
                        "every document done)")
    assert [line.split(":")[0] for line in lines[4:]] == [f"  FAILED {path}" for path in bad]
    assert len(lines) == 7  # whatever the number of files done before

    done = quire("status", job, "--list", "done").stdout.splitlines()
    assert done == [f"scans/{i:04d}.png" for i in range(12)]
    failed = quire("status", job, "--list", "failed").stdout.splitlines()
    assert [line.split(":")[0] for line in failed] == [f"scans/{p.name}" for p in bad]
    assert failed[1] == "scans/empty.png: file is empty"

    # Past the limit, the rest of the failures are counted and left to `quire status`.
    monkeypatch.setattr("pipeline.cli_run_summary.LISTED", 2)
    capped = quire("run", scans, "--out", out, "--no-progress").stdout.splitlines()
    assert [line for line in capped if line.startswith("  FAILED")] == [
        line for line in lines if line.startswith("  FAILED")][:2]
    job = re.search(r"job (\S+) \(`quire status", capped[1])[1]
    assert capped[-1] == (f"  ... and 1 more failed: `quire status {job} --list failed` lists them all "
                          "with their reasons")


def test_the_bar_counts_pages_as_files_are_reached_and_ends_at_the_pages_read(tmp_path, home, monkeypatch):
    """The bar's total used to come from opening every file before the first page was read (a
    silent wait of minutes on a large archive); now each PDF's pages are counted once, as the run
    renders it, and files done before or copies are not opened for it."""
    import pipeline.pdf_render
    import pipeline.process
    from pipeline.errors import CorruptDocumentError

    scans = tmp_path / "scans"
    scans.mkdir()
    pdf(scans / "a_before.pdf", 0, 1)
    assert quire("run", scans / "a_before.pdf", "--no-progress").exit_code == 0  # done before
    pdf(scans / "b.pdf", 10, 3)
    shutil.copy(scans / "b.pdf", scans / "c_copy.pdf")
    pdf(scans / "d_torn.pdf", 20, 3)  # its page 2 fails (below): its page 3 is never read
    pdf(scans / "e.pdf", 30, 2)

    counted: list[str] = []
    real_info, real_segmented = pipeline.pdf_render._pdf_info, pipeline.process.segmented

    def pdf_info(path, first=None, last=None):
        if first is None:  # its page count (a range is asked for the pages' sizes)
            counted.append(Path(path).name)
        return real_info(path, first, last)

    segmented: list[int] = []

    def torn(page_image, **kwargs):
        segmented.append(1)
        if len(segmented) == 5:  # b's three pages, then d's first two
            raise CorruptDocumentError("page 2 is damaged", source="d_torn.pdf")
        return real_segmented(page_image, **kwargs)

    monkeypatch.setattr(pipeline.pdf_render, "_pdf_info", pdf_info)
    monkeypatch.setattr(pipeline.process, "segmented", torn)
    result = CliRunner().invoke(app, ["run", str(scans)], catch_exceptions=False)
    assert "5 documents: 2 done, 1 copy of those (same bytes, read once), 1 already done (skipped), " \
           "1 failed; 5 pages" in result.stdout, result.output
    assert sorted(counted) == ["b.pdf", "d_torn.pdf", "e.pdf"]  # once each, by the render
    last = [line for line in re.split(r"[\r\n]", result.stderr) if line.startswith("OCR")][-1]
    assert "100%" in last and " 6/6 " in last and "documents=5/5" in last, last


def test_the_folders_given_are_walked_once_for_the_files_to_read_and_those_passed_over(
        tmp_path, home, monkeypatch):
    """Listing 100,000 files took about 2 s, and it was done twice before the first file was
    read: once for the documents, again for the "passed over" lines. One walk yields both."""
    scans = tmp_path / "scans"
    pngs(scans / "box1", 2)
    (scans / "box1" / "notes.txt").write_text("a note")
    (scans / "elsewhere").symlink_to(scans / "box1")
    os.mkfifo(scans / "pipe.pdf")
    listed: list[Path] = []  # each folder listed (os.walk lists with os.scandir)
    real_scandir = os.scandir

    def scandir(path="."):
        listed.append(Path(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = quire("run", scans, "--no-progress")
    assert result.exit_code == 0, result.output
    assert listed.count(scans) == 1 and listed.count(scans / "box1") == 1, listed
    err = result.stderr.splitlines()
    assert "quire: 1 link to a folder passed over, not followed (a link back up would loop); give the " \
           "folder it leads to: elsewhere" in err, err
    assert "quire: 1 file passed over, not a regular file (never opened: a pipe would hang): " \
           "pipe.pdf (a named pipe)" in err, err
    assert "quire: 1 file passed over, not a PDF or an image by its suffix: box1/notes.txt" in err, err
    assert "2 documents: 2 done" in result.stdout


def test_the_bar_of_a_rerun_with_every_file_done_before_counts_documents_not_0_pages(tmp_path, home):
    """No page is read on such a rerun: the bar of pages said "0page" from start to end. It
    counts the documents settled until a page is to be read, and pages from then on."""
    scans = tmp_path / "scans"
    pngs(scans, 3)
    assert quire("run", scans, "--no-progress").exit_code == 0
    result = quire("run", scans)
    assert result.exit_code == 0 and "3 already done (skipped)" in result.stdout, result.output
    shown = [line for line in re.split(r"[\r\n]", result.stderr) if line.startswith("OCR")]
    assert not any("page" in line for line in shown), shown
    assert "100%" in shown[-1] and " 3/3 " in shown[-1] and "document/s" in shown[-1], shown[-1]

    # New files after those done before: documents first, then pages, with the documents beside.
    pngs(scans, 2, start=3)
    mixed = quire("run", scans)
    shown = [line for line in re.split(r"[\r\n]", mixed.stderr) if line.startswith("OCR")]
    assert "100%" in shown[-1] and " 2/2 " in shown[-1] and "page/s" in shown[-1] \
        and "documents=5/5" in shown[-1], shown[-1]


def test_one_counted_for_every_command_its_thousands_grouped_where_a_run_s_summary_asks():
    """The run's summary had its own copy of `counted` that differed only in the separators."""
    import pipeline.cli_run_summary
    from pipeline.cli_common import counted

    assert pipeline.cli_run_summary.counted is counted
    assert counted(12000, "file", grouped=True) == "12,000 files"
    assert counted(1, "copy", "copies", grouped=True) == "1 copy"
    assert counted(2500, "copy", "copies", grouped=True) == "2,500 copies"
    assert counted(12000, "task") == "12000 tasks"  # other commands' messages as they were


def test_the_bar_shows_large_counts_in_full():
    """tqdm shows a round count as a power of ten: `lines=2e+5` at the end of a 100,000-file run."""
    import io

    from tqdm import tqdm

    from pipeline.run_progress import RunProgress

    shown = io.StringIO()
    progress = RunProgress(tqdm(file=shown, mininterval=0), documents=120_000)
    for _ in range(3):
        progress.reach(pages=1)
    progress.read(3)
    progress.read_lines(250_000)
    for _ in range(3):
        progress.settle()
    progress.close()
    last = re.split(r"[\r\n]", shown.getvalue().strip())[-1]
    assert "documents=3/120,000" in last and "lines=250,000" in last, last
