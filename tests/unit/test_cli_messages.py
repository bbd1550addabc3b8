"""What a new user reads from `quire` on the embedded default: help that names every format and
where each default comes from, and messages whose counts, states and hints are right."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import get_settings
from pipeline.exporters import ALIASES, formats
from tests.cli_home import quire_home

README = Path(__file__).parents[2] / "README.md"


def quire(*args: str):
    return CliRunner().invoke(app, list(args))


def typed_formats() -> list[str]:
    """The format names as the command line spells them (txt, not text)."""
    typed = {name: alias for alias, name in ALIASES.items() if alias == "txt"}
    return [typed.get(name, name) for name in formats()]


def test_export_and_run_help_and_the_readme_name_every_format():
    """`quire export --help` and the README's command lines left out pdfa, which both take."""
    export_help = " ".join(quire("export", "--help").output.split())
    run_help = " ".join(quire("run", "--help").output.split())
    readme = README.read_text(encoding="utf-8")
    run_line = re.search(r"^quire run PATH\.\.\. .*$", readme, re.MULTILINE)
    export_line = re.search(r"^quire export DOC .*$", readme, re.MULTILINE)
    assert run_line is not None and export_line is not None
    for name in typed_formats():
        assert re.search(rf"\b{name}\b", export_help), (name, export_help)
        assert re.search(rf"\b{name}\b", run_help), (name, run_help)
        assert re.search(rf"[ ,|]{name}[ ,|\]]", run_line.group(0)), (name, run_line.group(0))
        assert re.search(rf"[ |]{name}[ |]", export_line.group(0)), (name, export_line.group(0))


def test_run_help_says_where_each_default_comes_from_and_gives_an_example():
    """--model, --beam, --device and --decode showed no default at all."""
    text = " ".join(quire("run", "--help").output.split())
    for default in ("QUIRE_MODEL, else quire-line-v1", "QUIRE_RECOGNIZE__BEAM, else 1",
                    "QUIRE_RENDER__DPI, else 300", "QUIRE_DEVICE, else auto",
                    "QUIRE_RECOGNIZE__DECODE, else auto"):
        assert default in text, default
    assert "Example: `quire run scans/ --out results/" in text


@pytest.fixture
def home(tmp_path, monkeypatch) -> Iterator[Path]:
    yield from quire_home(tmp_path, None, None, monkeypatch)


def test_a_failed_document_is_said_to_have_failed_with_its_reason(home, tmp_path, monkeypatch):
    """`quire export empty.pdf` said "document empty.pdf (...) is failed: file is empty"."""
    monkeypatch.chdir(tmp_path)
    Path("empty.pdf").write_bytes(b"")
    ran = quire("run", "empty.pdf", "--no-progress")
    assert ran.exit_code == 1 and "FAILED empty.pdf: file is empty" in ran.stdout, ran.output
    for command in ("export", "view"):
        result = quire(command, "empty.pdf", "--no-serve") if command == "view" else quire(command, "empty.pdf")
        assert result.exit_code == 1, result.output
        assert re.fullmatch(r"quire: document empty\.pdf \([0-9a-f-]+\) failed: file is empty\n",
                            result.stderr), result.stderr


def test_delete_of_a_name_never_read_does_not_say_to_process_it_first(home, tmp_path):
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    quire("run", str(empty), "--no-progress")
    result = quire("delete", "never.pdf", "--yes")
    assert result.exit_code == 1, result.output
    assert "quire: no document with id or name 'never.pdf' in sqlite:///" in result.stderr
    assert result.stderr.rstrip().endswith("; nothing deleted for it"), result.stderr
    assert "process it first" not in result.stderr
    # export still says how to get a document that is not there
    assert "process it first (`quire run`" in quire("export", "never.pdf").stderr


def test_files_passed_over_in_a_folder_are_counted_in_the_right_number(home, tmp_path):
    """"1 file passed over, not PDFs or images by their suffix"."""
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "empty.pdf").write_bytes(b"")
    (scans / "notes.txt").write_text("notes")
    one = quire("run", str(scans), "--no-progress")
    assert "quire: 1 file passed over, not a PDF or an image by its suffix: notes.txt" in one.stderr, one.output
    (scans / "more.txt").write_text("more")
    two = quire("run", str(scans), "--no-progress")
    assert "quire: 2 files passed over, not PDFs or images by their suffix: more.txt, notes.txt" in two.stderr


def test_a_folder_with_no_documents_names_what_it_held(home, tmp_path):
    """The run failed with "no PDF or image files found" without the "passed over" line that
    names what was there (letter.docx), which it printed only when there was something to read."""
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "letter.docx").write_bytes(b"PK")
    result = quire("run", str(scans), "--no-progress")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "quire: 1 file passed over, not a PDF or an image by its suffix: letter.docx",
        f"quire: no PDF or image files found in {scans}"]


def test_eval_counts_one_line_image_left_out_in_the_singular(tmp_path, monkeypatch):
    from pipeline.training import cli_eval

    lines = tmp_path / "lines"
    lines.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((20, 120), 255, dtype=np.uint8)).save(lines / f"{name}.png")
    (lines / "a.gt.txt").write_text("read")
    monkeypatch.setattr(cli_eval, "_recognizer_fn", lambda *args: (
        lambda crops: [("read", 1.0)] * len(crops), {}, None))
    monkeypatch.setattr("pipeline.training.preflight.unwritable_notice", lambda *args: "")
    result = quire("eval", str(lines), "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"{lines}: left out 1 line image without a .gt.txt" in result.stderr, result.stderr


def test_a_stopped_run_names_its_job_for_quire_status(home, tmp_path, monkeypatch):
    """Ctrl-C printed no job id, so `quire status JOB` (as the README says) had nothing to go on."""
    from pipeline.runner import LocalRunner

    scan = tmp_path / "scan.png"
    page = np.full((300, 800), 255, np.uint8)
    page[100:130, 50:750] = 0
    Image.fromarray(page).save(scan)

    def interrupted(self, events):
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalRunner, "_consume", interrupted)
    result = quire("run", str(scan), "--no-progress")
    assert result.exit_code == 130, result.output
    found = re.search(r"; job ([0-9a-f-]{36}) \(`quire status \1`\)\n", result.stderr)
    assert found is not None, result.stderr
    status = quire("status", found.group(1))
    assert status.exit_code == 0 and f"job {found.group(1)}: stopped" in status.stdout, status.output


def test_eval_errors_read_as_every_command_s_do(tmp_path):
    """`quire eval` alone began its errors with "error:", every other command with "quire:"."""
    missing = quire("eval", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and missing.stderr == f"quire: {tmp_path / 'nowhere'}: not a directory\n"
    (tmp_path / "empty").mkdir()
    empty = quire("eval", str(tmp_path / "empty"))
    assert empty.exit_code == 2 and empty.stderr.startswith(f"quire: {tmp_path / 'empty'}: no line images")


def test_view_on_a_port_in_use_says_so_in_one_line(home, tmp_path, monkeypatch):
    """`quire view --port N` with N taken ended in a traceback (OSError: Address already in use)."""
    import socket

    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((200, 800), 255, np.uint8)).save("blank.png")  # one page, no line
    assert quire("run", "blank.png", "--no-progress").exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = quire("view", "blank.png", "--port", str(port), "--no-open")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"quire: cannot serve the viewer on 127.0.0.1:{port} (Address already "
                                    "in use); give another --port"), result.stderr
    assert "Traceback" not in result.output
    [page] = (home / "viewer").glob("*/blank.html")
    assert f"(the page is written to {page})" in result.stderr


def test_an_out_path_through_a_file_is_one_line_before_any_work(home, tmp_path, monkeypatch):
    """export and view --out under a file (scan.png/x.txt) ended in a FileExistsError traceback,
    lines --out in a NotADirectoryError one; run read every document, then failed each."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((200, 800), 255, np.uint8)).save("blank.png")
    assert quire("run", "blank.png", "--no-progress").exit_code == 0
    for args in (["export", "blank.png"], ["view", "blank.png", "--no-serve", "--no-open"]):
        result = quire(*args, "--out", "blank.png/sub/x")
        assert result.exit_code == 2, result.output
        assert result.stderr == "quire: cannot write blank.png/sub/x: blank.png is a file, not a folder\n"
    for command in ("run", "lines"):
        result = quire(command, "blank.png", "--out", "blank.png/sub", "--no-progress")
        assert result.exit_code == 2, result.output
        assert result.stderr == "quire: --out blank.png/sub: blank.png is a file, so the " \
                                "folder cannot be made\n"


def test_an_unknown_format_lists_the_names_users_type():
    """`quire export X -f docx` listed "text", which the help, the README and the defaults call txt."""
    result = quire("export", "x.pdf", "-f", "docx")
    assert result.exit_code == 2
    assert result.stderr == ("quire: unknown format 'docx'; valid formats: txt, json, hocr, alto, "
                             "page, pdf, pdfa\n"), result.stderr
    assert quire("export", "x.pdf", "-f", "").stderr.endswith("valid formats: txt, json, hocr, alto, "
                                                              "page, pdf, pdfa\n")


def test_search_says_when_the_limit_leaves_hits_out(home, monkeypatch):
    """`quire search WORDS --limit 3` printed 3 hits and no sign that there were more."""
    from pipeline.db.session import open_database
    from pipeline.search import SearchHit
    from pipeline.types import BBox

    open_database(get_settings().resolved_database_url())  # an empty database: search reads one
    found = [SearchHit(document_id="d1", document_name="letter.pdf", page=1, line=n, text="Archives",
                       bbox=BBox(0, 0, 10, 10), confidence=0.9, score=1.0, marked="Archives")
             for n in range(1, 601)]
    hits = 5
    monkeypatch.setattr("pipeline.db.search.search_lines",
                        lambda s, words, limit, superseded: found[:min(limit, hits)])
    three = quire("search", "Archives", "--limit", "3")
    assert three.exit_code == 0 and len(three.stdout.splitlines()) == 3, three.output
    assert three.stderr == "quire: the first 3 hits shown; --limit N shows more (at most 500)\n"
    assert quire("search", "Archives", "--limit", "3", "--json").stderr == three.stderr
    five = quire("search", "Archives", "--limit", "5")  # all there are: nothing left out
    assert len(five.stdout.splitlines()) == 5 and five.stderr == ""
    hits = 600
    most = quire("search", "Archives", "--limit", "500")
    assert len(most.stdout.splitlines()) == 500
    assert most.stderr == ("quire: the first 500 hits shown, the most search gives (there may be more); "
                           "more words narrow it\n")
    assert quire("search", "Archives", "--limit", "501").exit_code == 2


def test_status_and_cancel_take_a_job_id_s_first_characters(home):
    """`quire status 32ebb9c9` (the start of a job's id, as git takes a commit's) said "no job"."""
    from pipeline.db.models import Job
    from pipeline.db.session import open_database, session_scope

    ids = ["32ebb9c9-1111-4111-8111-111111111111", "32ebb9c9-2222-4222-8222-222222222222",
           "7a1b2c3d-3333-4333-8333-333333333333"]
    with session_scope(open_database(get_settings().resolved_database_url())) as s:
        for n, job_id in enumerate(ids):
            s.add(Job(id=job_id, settings={}, status="queued" if n == 2 else "done"))
    one = quire("status", "7a1b2c3d")
    assert one.exit_code == 0 and one.stdout.startswith(f"job {ids[2]}: queued"), one.output
    assert quire("status", "32ebb9c9-2").stdout.startswith(f"job {ids[1]}: done")
    assert quire("status", "7a1b2c3d", "--list", "all").exit_code == 0
    several = quire("status", "32ebb9c9")
    assert several.exit_code == 2 and several.stderr == (
        f"quire: several jobs' ids start with 32ebb9c9: {ids[0]}, {ids[1]}; give more of the one you mean\n")
    assert quire("cancel", "32ebb9c9").stderr == several.stderr
    for unknown in ("0000000a", "7a1b2c3"):  # no job starts so; too short to be taken as a start
        none = quire("status", unknown)
        assert none.exit_code == 1 and none.stderr == f"quire: no job {unknown}\n"
    cancelled = quire("cancel", "7a1b2c3d")
    assert cancelled.exit_code == 0 and cancelled.stdout.startswith(f"job {ids[2]}: cancelled"), cancelled.output


def test_unreadable_line_images_are_said_in_words_not_python_class_names(tmp_path, monkeypatch):
    """eval and recognize said "not a readable image (UnidentifiedImageError)" or "(OSError)"."""
    from pipeline.recognize import Recognizer
    from pipeline.training import cli_eval

    lines = tmp_path / "lines"
    lines.mkdir()
    Image.fromarray(np.full((20, 120), 255, dtype=np.uint8)).save(lines / "ok.png")
    Image.fromarray(np.full((20, 120), 128, dtype=np.uint8)).save(lines / "cut.jpg")
    (lines / "cut.jpg").write_bytes((lines / "cut.jpg").read_bytes()[:300])
    (lines / "notes.png").write_bytes(b"not an image")
    (lines / "empty.png").write_bytes(b"")
    for name in ("ok", "cut", "notes", "empty"):
        (lines / f"{name}.gt.txt").write_text("read")
    said = {"cut.jpg": "cut short: the image data ends early (copy the file again)",
            "empty.png": "file is empty",
            "notes.png": "not an image Pillow can read (damaged, or in a format it does not know)"}
    monkeypatch.setattr(cli_eval, "_recognizer_fn", lambda *args: (
        lambda crops: [("read", 1.0)] * len(crops), {}, None))
    monkeypatch.setattr("pipeline.training.preflight.unwritable_notice", lambda *args: "")
    evaluated = quire("eval", str(lines), "--no-progress")
    assert evaluated.exit_code == 1, evaluated.output
    for name, reason in said.items():
        assert f"skipped {name}: {reason}\n" in evaluated.stderr, evaluated.stderr

    class Reader:
        def recognize(self, crops):
            raise AssertionError("no line to read")

    monkeypatch.setattr(Recognizer, "from_settings", classmethod(lambda cls, *a, **k: Reader()))
    (lines / "ok.png").unlink()
    recognized = quire("recognize", str(lines), "--no-progress")
    assert recognized.exit_code == 1, recognized.output
    assert sorted(recognized.stderr.splitlines()) == [f"quire: {lines / name}: {reason}"
                                                      for name, reason in sorted(said.items())]
    assert "Error" not in evaluated.output + recognized.output


def test_a_truncated_jpeg_fails_with_its_reason_in_one_pair_of_parentheses(home, tmp_path, monkeypatch):
    """It failed with "page 1 is truncated or damaged (image file is truncated (0 bytes not processed))"."""
    monkeypatch.chdir(tmp_path)
    noise = np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)
    Image.fromarray(noise).save("whole.jpg")
    Path("cut.jpg").write_bytes(Path("whole.jpg").read_bytes()[:-200])
    result = quire("run", "cut.jpg", "--no-progress")
    assert result.exit_code == 1, result.output
    failed = re.search(r"FAILED cut\.jpg: (.*)", result.stdout)
    assert failed is not None, result.output
    assert re.fullmatch(r"page 1 is truncated or damaged \(image file is truncated: \d+ bytes not processed\)",
                        failed.group(1)), failed.group(1)


def test_build_lm_errors_read_as_every_command_s_do(tmp_path):
    """`quire build-lm` alone began its errors with "error:", every other command with "quire:"."""
    wrong = quire("build-lm", str(tmp_path / "lm.txt"))
    assert wrong.exit_code == 2 and wrong.stderr == f"quire: {tmp_path / 'lm.txt'}: give a model folder or a .npz file\n"
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    bad = quire("build-lm", str(tmp_path / "lm.npz"), "--text", str(tmp_path / "latin1.txt"))
    assert bad.exit_code == 2 and bad.stderr.startswith(f"quire: {tmp_path / 'latin1.txt'}: cannot read it as "
                                                        "UTF-8 text ("), bad.stderr
    (tmp_path / "lines").mkdir()
    empty = quire("build-lm", str(tmp_path / "lm.npz"), "--text", str(tmp_path / "lines"))
    assert empty.exit_code == 2 and empty.stderr.startswith("quire: "), empty.stderr


def test_a_run_that_reads_no_page_gives_no_rate(home, tmp_path, monkeypatch):
    """A rerun of files all done before said "0 pages, 0 lines in 0.2 s (0.0 pages/min)"."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((200, 800), 255, np.uint8)).save("blank.png")  # one page, no line
    first = quire("run", "blank.png", "--no-progress")
    assert first.exit_code == 0, first.output
    assert re.match(r"1 document: 1 done, 0 already done \(skipped\), 0 failed; 1 page, 0 lines in "
                    r"\d+\.\d s \(\d+\.\d pages/min\)\n", first.stdout), first.stdout
    again = quire("run", "blank.png", "--no-progress")
    assert again.exit_code == 0, again.output
    assert re.match(r"1 document: 0 done, 1 already done \(skipped\), 0 failed; no page read \(\d+\.\d s\)\n",
                    again.stdout), again.stdout


def test_eval_and_recognize_say_they_take_cuda_n_as_run_does(tmp_path):
    """`quire eval --device` said "auto, cpu or cuda" though it takes cuda:N as run does; a device
    torch does not know (gpu) ended in a RuntimeError traceback."""
    for command in ("run", "recognize", "eval"):
        text = " ".join(quire(command, "--help").output.split())
        assert "--device <str> auto (CUDA when present), cpu, cuda or cuda:N." in text, (command, text)
    assert "cuda or cuda:N. Default: QUIRE_DEVICE, else auto." in " ".join(quire("recognize", "--help").output.split())
    (tmp_path / "lines").mkdir()
    wrong = quire("eval", str(tmp_path / "lines"), "--device", "gpu")
    assert wrong.exit_code == 2 and wrong.stderr == "quire: bad setting --device='gpu': use auto, cpu, cuda or cuda:N\n"


def test_an_out_folder_inside_the_folder_given_is_passed_over_in_one_line(home, tmp_path, monkeypatch):
    """`cd scans && quire run . --out out`, run again, called Quire's own out/*.txt and *.json
    "files passed over, not PDFs or images by their suffix"."""
    scans = tmp_path / "scans"
    scans.mkdir()
    monkeypatch.chdir(scans)
    Image.fromarray(np.full((200, 800), 255, np.uint8)).save("blank.png")
    first = quire("run", ".", "--out", "out", "-f", "txt,json,alto,pdf", "--no-progress")
    assert first.exit_code == 0 and first.stderr == "", first.output
    assert len(list((scans / "out").iterdir())) == 4
    again = quire("run", ".", "--out", "out", "-f", "txt,json,alto,pdf", "--no-progress")
    assert again.exit_code == 0, again.output
    assert again.stderr == "quire: 1 folder passed over, Quire's own outputs (--out): out\n", again.stderr
    assert "1 document: 0 done, 1 already done (skipped)" in again.stdout
