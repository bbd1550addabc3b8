"""Arguments a user gets wrong end `quire train`, `eval`, `export`, `status` and `submit` with one line and a
nonzero exit status, before any long work, never with a traceback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app


def quire(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def trained(monkeypatch) -> list[Any]:
    """The configs `quire train` would have trained with; no model is built."""
    import pipeline.training.loop as loop_module

    seen: list[Any] = []

    def fake_train(cfg: Any) -> dict[str, Any]:
        seen.append(cfg)
        return {"step": cfg.steps, "finished": True}

    monkeypatch.setattr(loop_module, "train", fake_train)
    return seen


@pytest.mark.parametrize("option, value", [("--epochs", "0"), ("--epochs", "-1"), ("--steps", "0"),
                                           ("--batch-size", "0"), ("--val-every", "0")])
def test_train_refuses_counts_below_one(tmp_path, trained, option, value):
    (tmp_path / "lines").mkdir()
    result = quire("train", "--out", str(tmp_path / "model"), "--data", str(tmp_path / "lines"),
                   option, value)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert trained == []  # refused before training started


def test_train_function_refuses_zero_epochs_before_loading_a_model(tmp_path):
    """`python -m pipeline.training.train --epochs 0` used to run the 60,000-step default."""
    from pipeline.training.loop import train
    from pipeline.training.run_config import TrainConfig

    with pytest.raises(ValueError, match="--epochs must be at least 1, not 0"):
        train(TrainConfig(out_dir=str(tmp_path / "model"), data=str(tmp_path / "missing"), epochs=0))


@pytest.fixture
def line_folder(tmp_path, monkeypatch) -> Path:
    """A folder of two line images with ground truth; the recognizer reads every line as 'hello'."""
    from pipeline.training import cli_eval

    folder = tmp_path / "lines"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((32, 128), 255, np.uint8)).save(folder / f"{name}.png")
        (folder / f"{name}.gt.txt").write_text("hello", encoding="utf-8")
    monkeypatch.setattr(cli_eval, "_recognizer_fn",
                        lambda *_a, **_k: (lambda crops: [("hello", 0.9) for _ in crops], {"model": "fake"},
                                           None))
    return folder


@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--beam", "0"), ("--worst", "-1")])
def test_eval_refuses_bad_counts(line_folder, option, value):
    result = quire("eval", str(line_folder), option, value, "--no-progress")
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output


@pytest.mark.parametrize("slash", ["", "/"])
def test_eval_refuses_a_folder_as_json_before_evaluating(line_folder, tmp_path, slash):
    view = tmp_path / "viewdir"
    view.mkdir()
    result = quire("eval", str(line_folder), "--json", f"{view}{slash}", "--no-progress")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (f"quire: --json {view}{slash} is a folder; give a file name, "
                                     f"e.g. {view / 'eval.json'}")
    assert "CER" not in result.stdout  # nothing was scored
    assert list(view.iterdir()) == []


def test_eval_json_makes_its_missing_folders(line_folder, tmp_path):
    target = tmp_path / "nodir2" / "deeper" / "x.json"
    result = quire("eval", str(line_folder), "--json", str(target), "--no-progress")
    assert result.exit_code == 0, result.output
    report = json.loads(target.read_text(encoding="utf-8"))
    assert report["lines"] == 2 and report["cer"] == 0.0


def test_eval_refuses_a_json_file_it_cannot_write_before_evaluating(line_folder, tmp_path):
    """The folder could be made but the file not written (no permission, a read-only disk, a
    name too long): found out only after the whole evaluation."""
    target = tmp_path / ("x" * 300 + ".json")  # too long a name for any user, root included
    result = quire("eval", str(line_folder), "--json", str(target), "--no-progress")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"quire: --json {target}: cannot write it: File name too long")
    assert "CER" not in result.stdout  # refused before the model loaded


def test_eval_json_checked_up_front_leaves_no_file_behind_on_a_failed_evaluation(line_folder, tmp_path):
    target = tmp_path / "report.json"
    for image in line_folder.glob("*.png"):
        image.write_bytes(b"not a png")  # nothing can be scored
    result = quire("eval", str(line_folder), "--json", str(target), "--no-progress")
    assert result.exit_code == 2, result.output
    assert not target.exists()


def test_lines_refuses_a_model_folder_as_out(tmp_path):
    """`quire lines SCANS --out models/quire-line-v1` wrote line pairs and sources.tsv in among
    the shipped model's weights (here a model folder of the test's own, so a failing run spoils
    nothing shipped)."""
    scan = tmp_path / "scan.png"
    page = np.full((300, 800), 255, np.uint8)
    page[100:130, 50:750] = 0  # one line of "writing"
    Image.fromarray(page).save(scan)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    result = quire("lines", str(scan), "--out", str(model), "--no-draft", "--no-progress")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (f"quire: --out {model} holds a model (config.json): line pairs go "
                                     "in a folder of their own, e.g. my-lines/")
    assert [p.name for p in model.iterdir()] == ["config.json"]


@pytest.fixture
def exported_env(tmp_path, sqlite_url, monkeypatch) -> Iterator[None]:
    """A database holding one done document, memo.pdf, of one page and one line."""
    from pipeline.config import get_settings
    from pipeline.db import repo
    from pipeline.db.session import make_engine, session_scope, upgrade
    from pipeline.types import BBox

    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        doc, _ = repo.upsert_document(s, sha256=hashlib.sha256(b"memo").hexdigest(), profile="p",
                                      name="memo.pdf", source_uri="file:///memo.pdf", size_bytes=4)
        page = repo.save_page(s, doc.id, number=1, image_key="k", width=100, height=50, dpi=300,
                              angle=0.0)
        [line] = repo.save_lines(s, page.id, [(0, BBox(0, 0, 90, 20), None)])
        repo.set_line_texts(s, [(line.id, "Dear Sir", 0.9)], model="m")
        repo.finish_document(s, doc.id, 1)
    engine.dispose()
    monkeypatch.setenv("QUIRE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("QUIRE_STORAGE_URL", (tmp_path / "store").as_uri())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_export_into_a_folder_writes_the_default_name_there(exported_env, tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    result = quire("export", "memo.pdf", "--format", "hocr", "--out", str(existing))
    assert result.exit_code == 0, result.output
    assert b">Sir</span>" in (existing / "memo.hocr").read_bytes()
    assert f"wrote {existing / 'memo.hocr'}" in result.stderr
    # A path ending in / is a folder, made when missing.
    result = quire("export", "memo.pdf", "--out", f"{tmp_path / 'new'}/")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "memo.txt").read_text().strip() == "Dear Sir"
    # A file path is still written as given.
    result = quire("export", "memo.pdf", "--out", str(tmp_path / "plain.txt"))
    assert result.exit_code == 0 and (tmp_path / "plain.txt").read_text().strip() == "Dear Sir"


def test_status_with_an_api_nobody_serves_is_one_line(monkeypatch, capsys):
    """As the `quire` command runs it (pipeline.cli.main): one line, not httpx's traceback."""
    from pipeline.cli import main
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr("sys.argv", ["quire", "status", "job1", "--api", url])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 1
    assert err.startswith(f"quire: cannot reach the job API (--api {url}): ") and "refused" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_other_unanswered_requests_name_their_server():
    import httpx

    from pipeline.errors import unreachable_server

    timeout = httpx.ConnectTimeout("timed out",
                                   request=httpx.Request("GET", "https://hub.example/api/models/x"))
    assert unreachable_server(timeout) == "cannot reach https://hub.example: timed out"
    # A read that fails with no message still gives a reason.
    empty = httpx.ReadError("", request=httpx.Request("GET", "http://127.0.0.1:1/v1/jobs/j"))
    assert unreachable_server(empty) == "cannot reach the job API (--api http://127.0.0.1:1): ReadError"


@pytest.mark.parametrize("command", [["search", "Sir"], ["export", "memo.pdf"], ["view", "memo.pdf"],
                                     ["status", "job1"], ["cancel", "job1"], ["token", "list"]])
def test_commands_that_read_results_say_where_they_looked_and_make_nothing(tmp_path, monkeypatch, capsys,
                                                                           command):
    """Run in a folder without ./quire-data (the usual slip: another folder than the run's), a
    command that reads results says so instead of answering from a new, empty database."""
    from pipeline.cli import main
    from pipeline.config import get_settings

    monkeypatch.chdir(tmp_path)
    for name in ("QUIRE_HOME", "QUIRE_DATABASE_URL", "QUIRE_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    monkeypatch.setattr("sys.argv", ["quire", *command])
    with pytest.raises(SystemExit) as stop:
        main()
    get_settings.cache_clear()
    err = capsys.readouterr().err
    assert stop.value.code == 1
    assert err.startswith(f"quire: no Quire data at {tmp_path / 'quire-data' / 'quire.sqlite'}: "), err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_option_value_is_named_as_the_option_typed(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main

    monkeypatch.delenv("QUIRE_DEVICE", raising=False)
    (tmp_path / "a.png").write_bytes(b"not read: the option is refused first")
    monkeypatch.setattr("sys.argv", ["quire", "run", str(tmp_path / "a.png"), "--device", "gpu"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    assert capsys.readouterr().err == "quire: bad setting --device='gpu': use auto, cpu, cuda or cuda:N\n"


def test_submit_refuses_a_named_pipe_before_reading_it(tmp_path):
    """Hashing a named pipe waits for a writer for ever: it is refused, as a missing file is."""
    import os

    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    result = quire("submit", str(fifo))
    assert result.exit_code == 2
    assert f"{fifo}: is not a regular file (a named pipe)" in result.output


def test_train_help_says_how_to_use_the_tuned_model_and_how_long_a_fine_tune_takes():
    """It sent the user to `quire recognize` (ready-cut line images), not `quire run` on scans, and
    said neither where the best model is nor how long a fine-tune takes."""
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    said = " ".join(result.output.split())
    assert "`quire run SCANS --model MODEL/best`" in said and "MODEL/held-out" in said
    assert "400 lines took 6-7 minutes for 10 epochs" in said
    assert "each beside NAME.gt.txt holding its text, UTF-8, on one line" in said
