"""Fine-tuning on a user's own line folder: held-out lines, varied lines, what the tuned model keeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline import char_lm
from pipeline.training.data import FolderLines, Rehearsal, batches, folder_pairs, rehearsal_count
from tests.model_fixtures import build_random_model, render_line

WORDS = ("Dear Sir", "TOTAL 12.50", "No. 7", "the fake friend", "Anno 1847", "received",
         "with thanks", "Bentham", "12 March", "London", "yours truly", "p. 31")


def _line_folder(folder: Path, texts: tuple[str, ...] = WORDS) -> Path:
    folder.mkdir(parents=True)
    for i, text in enumerate(texts):
        Image.fromarray(render_line(text)).save(folder / f"line{i:02d}.png")
        (folder / f"line{i:02d}.gt.txt").write_text(text + "\n", encoding="utf-8")
    return folder


def test_every_nth_line_is_held_out_the_same_way_each_run(tmp_path: Path) -> None:
    folder = _line_folder(tmp_path / "lines")
    train, held = folder_pairs(str(folder), 0.25)
    assert [p.name for p, _ in held] == ["line03.png", "line07.png", "line11.png"]
    assert len(train) == 9 and not {p for p, _ in train} & {p for p, _ in held}
    assert folder_pairs(str(folder), 0.25) == (train, held)
    assert folder_pairs(str(folder), 0.0) == (folder_pairs(str(folder))[0], [])
    # Too few lines to spare one for every tenth: all are trained on.
    assert folder_pairs(str(folder), 0.05)[1] == []
    with pytest.raises(ValueError, match="below 0.5"):
        folder_pairs(str(folder), 0.5)
    with pytest.raises(FileNotFoundError, match=r"no line image \(.png, .jpg, .tif, ...\) with a transcription"):
        folder_pairs(str(_line_folder(tmp_path / "empty", ())))


def test_folder_lines_vary_each_epoch_and_keep_their_ink(tmp_path: Path) -> None:
    folder = _line_folder(tmp_path / "lines")
    pairs = folder_pairs(str(folder))[0]
    plain = FolderLines(pairs)
    original, text = plain[1]
    assert text == "TOTAL 12.50"
    assert np.array_equal(original, np.asarray(Image.open(pairs[1][0]).convert("L")))

    varied = FolderLines(pairs, vary_seed=3)
    first = varied[1][0]
    assert np.array_equal(first, varied[1][0])  # the same seed, epoch and line: the same variation
    varied.epoch = 1
    images = [varied[1][0]]
    for epoch in range(2, 8):
        varied.epoch = epoch
        images.append(varied[1][0])
    changed = [image for image in [first, *images]
               if image.shape != original.shape or not np.array_equal(image, original)]
    assert len(changed) >= 5  # most epochs show the line differently
    ink = int((original < 128).sum())
    for image in changed:
        # Varied, never wiped out or smeared over: the ink stays within a factor of two.
        assert image.dtype == np.uint8 and image.ndim == 2
        assert 0.5 * ink <= int((image < 128).sum()) <= 2 * ink


def test_rehearsal_adds_new_synthetic_lines_to_each_epoch(tmp_path: Path) -> None:
    assert rehearsal_count(9, 0.25) == 3 and rehearsal_count(9, 0.5) == 9 and rehearsal_count(9, 0.0) == 0
    with pytest.raises(ValueError, match="from 0 to below 1"):
        rehearsal_count(9, 1.0)
    pairs = folder_pairs(str(_line_folder(tmp_path / "lines")))[0]
    lines = FolderLines(pairs, rehearsal=Rehearsal(4, 32, 256, seed=5))
    assert len(lines) == len(pairs) + 4
    assert lines[1][1] == "TOTAL 12.50"  # the folder's own lines come first, as they were
    image, text = lines[len(pairs)]
    assert image.shape == (32, 256) and image.dtype == np.uint8 and text.strip() and text not in WORDS
    assert int((image < 128).sum()) > 20  # a drawn line, not a blank
    assert np.array_equal(lines[len(pairs)][0], image)  # the same epoch: the same line
    lines.epoch = 1
    assert lines[len(pairs)][1] != text  # a new epoch: new lines


def test_rehearsed_batches_mix_synthetic_lines_into_the_folders(tmp_path: Path) -> None:
    from pipeline.model_input import encoder_channels
    from pipeline.training.model import LineModelConfig, build_line_model

    model, processor = build_line_model(LineModelConfig.tiny())
    pairs = folder_pairs(str(_line_folder(tmp_path / "lines")))[0]
    stream = batches("unused", processor, encoder_channels(model), 64, batch_size=4, num_workers=0, seed=1,
                     lines=pairs, rehearse=0.25)
    epoch = [text for _ in range(4) for text in next(stream)["texts"]]  # 12 + 4 lines: 4 batches
    assert sorted(t for t in epoch if t in WORDS) == sorted(WORDS)
    assert len([t for t in epoch if t not in WORDS]) == 4


def test_a_broken_training_image_is_named(tmp_path: Path) -> None:
    folder = _line_folder(tmp_path / "lines", WORDS[:2])
    (folder / "line01.png").write_bytes(b"not a png")
    lines = FolderLines(folder_pairs(str(folder))[0])
    with pytest.raises(OSError, match=r"line01.png: cannot read this training line image: not an image Pillow can read \("):
        lines[1]


def test_a_fine_tuned_model_keeps_its_language_model_and_rescore_and_measures_held_out_lines(
    tmp_path: Path,
) -> None:
    """`quire train --model M --data FOLDER`: the user's tuned model reads as M did (with M's
    character language model and M's decoding), and CER is measured on lines it never trained on."""
    import typer

    from pipeline.recognize import Recognizer
    from pipeline.training.cli_train import train_command

    base = build_random_model(tmp_path / "base")
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "quire_decoding": "rescore"}))
    lm = char_lm.build(list(WORDS) * 3, 4)
    lm.save(base / char_lm.FILE_NAME)
    folder = _line_folder(tmp_path / "lines")
    app = typer.Typer()
    app.command()(train_command)
    out = tmp_path / "tuned"

    def args(epochs: int) -> list[str]:
        return ["--out", str(out), "--model", str(base), "--data", str(folder), "--epochs", str(epochs),
                "--hold-out", "0.25", "--rehearse", "0", "--batch-size", "4", "--num-workers", "0",
                "--threads", "1", "--warmup", "1"]

    result = CliRunner().invoke(app, args(2))
    assert result.exit_code == 0, result.output
    assert "3 of" in result.output and "held out to measure CER on" in result.output
    # They are kept beside the model, to be measured as quire run reads them.
    kept = sorted(p.name for p in (out / "held-out").iterdir())
    assert kept == ["line03.gt.txt", "line03.png", "line07.gt.txt", "line07.png", "line11.gt.txt",
                    "line11.png"]
    assert (out / "held-out" / "line07.gt.txt").read_text() == WORDS[7] + "\n"
    assert (out / char_lm.FILE_NAME).read_bytes() == (base / char_lm.FILE_NAME).read_bytes()
    assert json.loads((out / "config.json").read_text())["quire_decoding"] == "rescore"
    history = json.loads((out / "checkpoint" / "history.json").read_text())
    # The base model's reading first (step 0), then one validation an epoch.
    assert [h["step"] for h in history] == [0, 2, 4] and all("cer_held_out" in h for h in history)
    assert "held-out lines: CER" in result.output and "at step 0 ->" in result.output
    # 9 lines to train on at 4 a step (the last short batch dropped): 2 steps an epoch.
    assert history[-1]["step"] == 4 and history[-1]["lines_seen"] == 16

    reader = Recognizer(str(out), device="cpu")
    assert reader.decode == "rescore" and reader.fusion is not None

    def best_step(validations) -> int:  # the first of the lowest held-out CERs, the base model's included
        return min(validations, key=lambda h: h["cer_held_out"])["step"]

    # The model at its best validation is kept apart, a model folder of its own.
    assert json.loads((out / "best" / "best.json").read_text())["step"] == best_step(history)
    best_reader = Recognizer(str(out / "best"), device="cpu")
    assert best_reader.decode == "rescore" and best_reader.fusion is not None

    # A language model the user built for the tuned model is theirs: a resume leaves it be.
    own = char_lm.build(["Anno Domini"] * 3, 3)
    own.save(out / char_lm.FILE_NAME)
    again = CliRunner().invoke(app, args(3))
    assert again.exit_code == 0, again.output
    assert char_lm.load(out / char_lm.FILE_NAME).order == 3
    # The resumed run had to beat the first run's best, not start the count again.
    history = json.loads((out / "checkpoint" / "history.json").read_text())
    assert [h["step"] for h in history] == [0, 2, 4, 6]
    assert json.loads((out / "best" / "best.json").read_text())["step"] == best_step(history)


def test_quire_train_rehearses_a_quarter_by_default_counted_in_its_epochs(tmp_path: Path) -> None:
    import typer

    from pipeline.training.cli_train import train_command

    app = typer.Typer()
    app.command()(train_command)
    out = tmp_path / "tuned"
    result = CliRunner().invoke(app, [
        "--out", str(out), "--model", str(build_random_model(tmp_path / "base")),
        "--data", str(_line_folder(tmp_path / "lines")), "--epochs", "1", "--hold-out", "0.25",
        "--batch-size", "4", "--num-workers", "0", "--threads", "1", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    assert "each epoch adds 3 synthetic lines" in result.output
    history = json.loads((out / "checkpoint" / "history.json").read_text())
    # 9 folder lines to train on and 3 synthetic ones, at 4 a step: 3 steps.
    assert history[-1]["step"] == 3 and history[-1]["lines_seen"] == 12


def test_a_short_fine_tune_warms_up_within_its_first_tenth() -> None:
    from pipeline.training.optimization import lr_lambda, warmup_steps
    from pipeline.training.run_config import TrainConfig

    def schedule(steps: int, warmup: int = 1000) -> list[float]:
        return [lr_lambda(TrainConfig(out_dir="unused", steps=steps, warmup=warmup))(s) for s in range(steps)]

    # The warm-up is --warmup steps, at most a tenth of the run, rounded up.
    assert [warmup_steps(TrainConfig(out_dir="unused", steps=n, warmup=1000)) for n in (1, 3, 10, 11, 50, 60_000)] \
        == [1, 1, 1, 2, 5, 1000]
    short = schedule(50)
    assert short[:6] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])  # the peak after warming up
    assert short[49] < 0.1  # and decays to the floor by its end
    long = lr_lambda(TrainConfig(out_dir="unused", steps=60_000, warmup=1000))
    assert long(499) == pytest.approx(0.5, abs=1e-3) and long(999) < 1.0 and long(1000) == pytest.approx(1.0)
    # --epochs 1 over a small folder: a few steps, the first of them no longer at the peak (a
    # warm-up of 1 step was 1/1 of the peak: none at all).
    assert schedule(1) == pytest.approx([0.5])
    assert schedule(3)[0] == pytest.approx(0.5) and max(schedule(3)) == pytest.approx(1.0)
    assert all(rate < 1.0 for rate in schedule(20)[:2])
    assert schedule(3, warmup=0)[0] == pytest.approx(1.0)  # --warmup 0: none, as asked


def test_best_keeps_the_earlier_model_on_a_tie_the_starting_one_included() -> None:
    """A step that read the held-out lines no better than the model it started from (3 lines
    tie often) was kept as best/, though every step may have harmed what the lines do not show."""
    from pipeline.training.best_model import beats, best_validation

    tied = [{"step": 0, "cer_held_out": 0.1}, {"step": 2, "cer_held_out": 0.1}, {"step": 4, "cer_held_out": 0.1}]
    assert best_validation(tied) == (0, 0.1)
    better = [*tied, {"step": 6, "cer_held_out": 0.05}, {"step": 8, "cer_held_out": 0.05}]
    assert best_validation(better) == (6, 0.05)
    assert best_validation([{"step": 0, "cer_held_out": 0.1}, {"step": 2, "cer_held_out": 0.2}]) == (0, 0.1)
    assert not beats(0.1, (0, 0.1)) and beats(0.09, (0, 0.1)) and beats(0.5, None)


def test_the_shipped_model_is_fine_tuned_by_its_name() -> None:
    from pipeline.training.run_config import TrainConfig
    from pipeline.training.starting_model import load_or_build

    model, processor, average = load_or_build(TrainConfig(out_dir="unused", model="quire-line-v1", resume=False))
    assert model.config.quire_decoding == "rescore" and average is None
    assert processor.tokenizer.decode(processor.tokenizer("Quire").input_ids, skip_special_tokens=True) == "Quire"


def test_quire_train_guards_its_output_folder_and_checks_its_lines_first(tmp_path: Path) -> None:
    import typer

    from pipeline.training.cli_train import train_command

    app = typer.Typer()
    app.command()(train_command)
    base, folder = build_random_model(tmp_path / "base"), _line_folder(tmp_path / "lines")
    common = ["--model", str(base), "--hold-out", "0.25", "--rehearse", "0", "--batch-size", "4",
              "--num-workers", "0", "--threads", "1", "--warmup", "1"]

    def train(out: Path, data: Path, *more: str):
        return CliRunner().invoke(app, ["--out", str(out), "--data", str(data), *more, *common])

    # A folder of other files is not written over.
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "config.json").write_text("{}")
    refused = train(notes, folder, "--epochs", "1")
    assert refused.exit_code == 2 and "holds other files" in refused.output, refused.output
    assert (notes / "config.json").read_text() == "{}"
    # Without --epochs a folder gets 10 epochs (9 lines at 4 a step: 2 steps each), not 60,000 steps.
    # (A run killed before its first save left only its held-out copies: that is no stranger's folder.)
    out = tmp_path / "tuned"
    (out / "held-out").mkdir(parents=True)
    tuned = train(out, folder)
    assert tuned.exit_code == 0, tuned.output
    assert json.loads((out / "checkpoint" / "history.json").read_text())[-1]["step"] == 20
    assert (out / "model.safetensors").stat().st_mode & 0o044 == 0o044  # readable as its config is
    # The same --out with other lines is refused, not resumed as if they were the first ones.
    more = _line_folder(tmp_path / "more", WORDS[::-1])
    other = train(out, more, "--epochs", "1")
    assert other.exit_code == 2 and "holds a run of" in other.output and "new --out" in other.output
    # Lines with characters the model cannot write are named and left out; a broken image fails
    # before any step.
    fraktur = _line_folder(tmp_path / "fraktur", ("Waſſer", "Straſſe", "ſo", "Dear Sir", "No. 7"))
    warned = train(tmp_path / "f", fraktur, "--epochs", "1", "--hold-out", "0")
    assert warned.exit_code == 0 and "'ſ' (3 lines)" in warned.output, warned.output
    assert "They are left out" in warned.output
    (folder / "line05.png").write_bytes(b"not a png")
    broken = train(tmp_path / "b", folder, "--epochs", "1")
    assert broken.exit_code == 1 and "1 line images cannot be read" in broken.output
    assert "line05.png" in broken.output and not (tmp_path / "b").exists()


def test_the_end_of_a_run_says_where_its_best_model_is_and_when_the_start_read_better() -> None:
    from pipeline.training.best_model import best_verdict

    history = [{"step": 0, "cer_held_out": 0.12}, {"step": 2, "cer_held_out": 0.30},
               {"step": 4, "cer_held_out": 0.22}]
    said = best_verdict(history, (0, 0.12), "tuned")
    assert said == [("warning: no step of this run read the validation lines better than the model it "
                     "started from (CER 12.00%, the last step 22.00%): tuned/best holds that model; tuned "
                     "holds the last step's. Keep using it, or train again with a lower --lr or on more lines")]
    history[0]["cer_held_out"] = 0.40  # the tuning helped; its best step was not the last
    history.append({"step": 6, "cer_held_out": 0.25})
    assert best_verdict(history, (4, 0.22), "tuned") == [
        ("the best validation was at step 4 (CER 22.00%): that model is in tuned/best; tuned holds "
         "the last step's")]
    # Read as well as the start, not better: best/ is the start, nothing to warn of.
    [tie] = best_verdict([{"step": 0, "cer_held_out": 0.0}, {"step": 2, "cer_held_out": 0.0}], (0, 0.0), "tuned")
    assert tie.startswith("no step of this run read the validation lines better") and "warning" not in tie


def test_lines_added_to_the_folder_are_trained_on_and_the_held_out_ones_stay_held_out(tmp_path: Path) -> None:
    """Adding lines to a folder and running the same command again resumed with a new split:
    lines the run had trained on were then measured as held out."""
    import typer

    from pipeline.training.cli_train import train_command

    base = build_random_model(tmp_path / "base")
    folder = _line_folder(tmp_path / "lines")
    app = typer.Typer()
    app.command()(train_command)
    out = tmp_path / "tuned"

    def run(epochs: int) -> str:
        result = CliRunner().invoke(app, [
            "--out", str(out), "--model", str(base), "--data", str(folder), "--epochs", str(epochs),
            "--hold-out", "0.25", "--rehearse", "0", "--batch-size", "4", "--num-workers", "0",
            "--threads", "1", "--warmup", "1"])
        assert result.exit_code == 0, result.output
        return result.output

    run(1)
    held = sorted(p.name for p in (out / "held-out").glob("*.png"))
    assert held == ["line03.png", "line07.png", "line11.png"]
    # Two more lines: split anew, every 4th of 14 would hold out line03, line07 and line11 again
    # only by luck; with names that sort first, the split moves.
    for name, text in (("line00a", "Folio 3"), ("line00b", "Vestry")):
        Image.fromarray(render_line(text)).save(folder / f"{name}.png")
        (folder / f"{name}.gt.txt").write_text(text + "\n", encoding="utf-8")
    assert [p.name for p, _ in folder_pairs(str(folder), 0.25)[1]] != held  # what a new split gives
    said = run(2)
    assert "changed since this run began: the 3 held out then stay held out" in said
    assert sorted(p.name for p in (out / "held-out").glob("*.png")) == held
    history = json.loads((out / "checkpoint" / "history.json").read_text())
    # 9 + 2 lines to train on at 4 a step: 2 steps in each epoch.
    assert history[-1]["step"] == 4


def test_a_byte_order_mark_is_not_part_of_a_transcription(tmp_path: Path) -> None:
    folder = _line_folder(tmp_path / "lines", ("Dear Sir", "No. 7"))
    (folder / "line01.gt.txt").write_bytes("\ufeffNo. 7\r\n".encode())  # as Windows Notepad saves it
    assert [text for _, text in folder_pairs(str(folder))[0]] == ["Dear Sir", "No. 7"]


def test_quire_train_names_every_line_without_a_transcription_at_once(tmp_path: Path) -> None:
    """Lines without a .gt.txt (or with an empty one) were left out without a word, and .gt.txt
    files that are not UTF-8 were named one per run: fix one, rerun, meet the next."""
    import typer

    from pipeline.errors import BadInputError
    from pipeline.training.cli_train import train_command
    from pipeline.training.evaluate import line_images

    folder = _line_folder(tmp_path / "lines", WORDS + ("Folio 3", "Vestry"))
    for i in range(13):
        (folder / f"line{i:02d}.gt.txt").unlink()
    (folder / "line13.gt.txt").write_text("\n", encoding="utf-8")
    app = typer.Typer()
    app.command()(train_command)
    result = CliRunner().invoke(app, ["--out", str(tmp_path / "tuned"), "--model", "new", "--data", str(folder),
                                      "--epochs", "1", "--num-workers", "0", "--threads", "1"])
    assert result.exit_code == 2, result.output  # nothing left to train on
    assert "14 line images left out" in result.output
    assert ("13 without a .gt.txt (line00.png, line01.png, line02.png, line03.png, line04.png, line05.png, "
            "line06.png, line07.png, line08.png, line09.png and 3 more); 1 with an empty .gt.txt "
            "(line13.png)") in result.output

    for i in range(12):
        (folder / f"line{i:02d}.gt.txt").write_bytes("Stra\xdfe".encode("latin-1"))
    with pytest.raises(BadInputError, match="12 .gt.txt files are not UTF-8 text: line00.gt.txt "
                       r"\(invalid continuation byte at byte 4\), .* line09.gt.txt .* and 2 more"):
        line_images(folder)


def test_lines_with_characters_the_model_cannot_write_are_left_out_of_training(tmp_path: Path) -> None:
    """Greek or Cyrillic lines were trained on with a warning: their letters became the unknown
    token, teaching the model to read such writing as (nearly) nothing."""
    import typer

    from pipeline.training.cli_train import train_command
    from pipeline.training.data import folder_pairs
    from pipeline.training.model import LineModelConfig, build_line_model
    from pipeline.training.preflight import without_unwritable_lines

    tokenizer = build_line_model(LineModelConfig.tiny())[1].tokenizer
    folder = _line_folder(tmp_path / "lines", ("Dear Sir", "λόγος", "Москва 1912", "No. 7", "the end", "ἀλφα"))
    train, held = folder_pairs(str(folder), 0.34)  # every third line held out: line02, line05
    kept, kept_held, notice = without_unwritable_lines(tokenizer, "lines", train, held)
    assert [p.name for p, _ in kept] == ["line00.png", "line03.png", "line04.png"]
    assert kept_held == []  # nor measured: no training can mend a letter the model cannot write
    assert notice is not None and notice.startswith("3 lines of lines hold characters the model's alphabet lacks")
    assert "'λ' (2 lines)" in notice and "'М' (1 line)" in notice
    assert "(e.g. line01.png, line02.png, line05.png)" in notice and "They are left out" in notice
    assert without_unwritable_lines(tokenizer, "lines", kept, []) == (kept, [], None)

    # Nothing left to train on: refused before any step, not a run on nothing.
    greek = _line_folder(tmp_path / "greek", ("λόγος", "ἀλφα"))
    app = typer.Typer()
    app.command()(train_command)
    base = build_random_model(tmp_path / "base")
    refused = CliRunner().invoke(app, ["--out", str(tmp_path / "tuned"), "--model", str(base), "--data", str(greek),
                                       "--epochs", "1", "--hold-out", "0", "--num-workers", "0", "--threads", "1"])
    assert refused.exit_code == 2 and "nothing is left to train on" in refused.output, refused.output
    assert not (tmp_path / "tuned" / "checkpoint").exists()


def test_ground_truth_is_read_in_nfc_with_its_whitespace_collapsed(tmp_path: Path) -> None:
    """A .gt.txt saved with decomposed accents ('e' + U+0301, as some editors and macOS write
    them) had its line left out of training for a combining accent the model has no letter for,
    though the model writes 'é' and `quire eval` scored the same line fine; a tab or a line
    wrapped in two was likewise left out."""
    from pipeline.training.model import LineModelConfig, build_line_model
    from pipeline.training.preflight import without_unwritable_lines

    folder = _line_folder(tmp_path / "lines", ("café", "No. 7", "Dear Sir"))
    (folder / "line00.gt.txt").write_text("cafe\u0301\n", encoding="utf-8")
    (folder / "line01.gt.txt").write_text("No.\t7\r\n", encoding="utf-8")
    (folder / "line02.gt.txt").write_text("Dear\nSir\n", encoding="utf-8")
    train, _ = folder_pairs(str(folder))
    assert [text for _, text in train] == ["café", "No. 7", "Dear Sir"]
    tokenizer = build_line_model(LineModelConfig.tiny())[1].tokenizer
    assert without_unwritable_lines(tokenizer, "lines", train, []) == (train, [], None)


def test_quire_train_from_a_folder_that_holds_no_model_says_so(tmp_path: Path) -> None:
    """`--model LINE-FOLDER` (the line folder given for the model by mistake) ended in
    transformers' traceback about missing weight files."""
    import typer

    from pipeline.training.cli_train import train_command

    folder = _line_folder(tmp_path / "lines")
    app = typer.Typer()
    app.command()(train_command)
    result = CliRunner().invoke(app, ["--out", str(tmp_path / "tuned"), "--model", str(folder), "--data",
                                      str(folder), "--epochs", "1", "--num-workers", "0", "--threads", "1"])
    assert result.exit_code == 2, result.output
    assert f"{folder} is a folder but holds no model (no config.json)" in result.output
    assert not (tmp_path / "tuned" / "checkpoint").exists()


def test_a_folder_too_small_to_hold_a_line_out_is_said_to_be_measured_on_synthetic_lines(tmp_path: Path) -> None:
    """Three lines at --hold-out 0.1 held none out, without a word: every epoch's CER and the
    choice of best/ then came from synthetic lines alone."""
    import typer

    from pipeline.training.cli_train import train_command

    base, folder = build_random_model(tmp_path / "base"), _line_folder(tmp_path / "lines", WORDS[:3])
    app = typer.Typer()
    app.command()(train_command)
    result = CliRunner().invoke(app, ["--out", str(tmp_path / "tuned"), "--model", str(base), "--data", str(folder),
                                      "--epochs", "1", "--rehearse", "0", "--batch-size", "4",
                                      "--num-workers", "0", "--threads", "1", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    assert (f"{folder}: none of its 3 lines is held out to measure on (at --hold-out 0.1 one of every 10 is): "
            "the CER each epoch is of synthetic lines only") in result.output
    assert not (tmp_path / "tuned" / "held-out").exists()


def test_a_page_among_the_lines_is_named_and_left_out_of_training(tmp_path: Path) -> None:
    """A page scan saved among the line images was trained on, squeezed to the model's line
    height, as if it were one line of its .gt.txt."""
    import typer

    from pipeline.training.cli_train import train_command

    base, folder = build_random_model(tmp_path / "base"), _line_folder(tmp_path / "lines", WORDS[:4])
    page = np.full((1100, 850), 255, np.uint8)
    for row in range(100, 1000, 60):
        page[row:row + 20, 100:750] = 0  # lines of "writing" down a page
    Image.fromarray(page).save(folder / "line01.png")
    app = typer.Typer()
    app.command()(train_command)
    result = CliRunner().invoke(app, ["--out", str(tmp_path / "tuned"), "--model", str(base), "--data", str(folder),
                                      "--epochs", "1", "--hold-out", "0", "--rehearse", "0", "--batch-size", "4",
                                      "--num-workers", "0", "--threads", "1", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    assert (f"1 image in {folder} looks like a page or a block of lines, not one line (line01.png); "
            "`quire lines` cuts a page into its lines. They are left out") in result.output
    assert json.loads((tmp_path / "tuned" / "checkpoint" / "history.json").read_text())[-1]["lines_seen"] == 3


def test_quire_eval_names_the_lines_holding_characters_the_model_cannot_write(tmp_path: Path) -> None:
    """Greek or long s in the ground truth counted as errors without a word: the CER looked like
    misreading that more training would mend."""
    from pipeline.cli import app

    base = build_random_model(tmp_path / "base")
    folder = _line_folder(tmp_path / "lines", ("Dear Sir", "λόγος", "Waſſer", "No. 7"))
    result = CliRunner().invoke(app, ["eval", str(folder), "--model", str(base), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (f"{folder}: 2 lines hold characters {base} has no letter for: 'ſ' (1 line), 'γ' (1 line)"
            in result.stderr), result.stderr
    assert "(e.g. line01.png, line02.png); it can never read them" in result.stderr
    assert "4 lines  CER" in result.stdout


def test_quire_eval_warns_of_a_page_among_the_lines(tmp_path: Path) -> None:
    """A page scan put among the lines was read and scored as one line, squeezed to line height,
    without a word (training already leaves such images out and names them)."""
    from pipeline.cli import app

    folder = _line_folder(tmp_path / "lines", ("Dear Sir", "No. 7"))
    Image.new("L", (850, 1100), 255).save(folder / "page.png")
    (folder / "page.gt.txt").write_text("a whole page of text\n")
    result = CliRunner().invoke(app, ["eval", str(folder), "--model", str(build_random_model(tmp_path / "m")),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert ("warning: page.png (850x1100) looks like a page or a block of lines, read and scored here "
            "as one line") in result.stderr
    assert "3 lines  CER" in result.stdout and "line00.png" not in result.stderr


def test_jpeg_2000_and_bmp_lines_are_read_and_a_gt_txt_without_an_image_is_named(tmp_path: Path) -> None:
    """`quire run` reads .jp2 and .bmp scans, but a line folder of them was found empty ("no *.png
    with *.gt.txt"), and a .gt.txt whose image was renamed or deleted was passed over silently."""
    from pipeline.cli import app

    folder = _line_folder(tmp_path / "lines", ("Dear Sir", "No. 7", "the end"))
    Image.open(folder / "line00.png").save(folder / "line00.jp2")
    Image.open(folder / "line01.png").save(folder / "line01.bmp")
    for i in range(3):
        (folder / f"line{i:02d}.png").unlink()
    assert [(p.name, t) for p, t in folder_pairs(str(folder))[0]] == [("line00.jp2", "Dear Sir"),
                                                                        ("line01.bmp", "No. 7")]
    from pipeline.training.preflight import without_image_notice

    assert without_image_notice(folder) == (
        f"{folder}: 1 .gt.txt file has no line image beside it and is passed over (line02.gt.txt): "
        "NAME.gt.txt goes with NAME.png (or .jpg, .tif, .jp2, .bmp, .webp)")
    result = CliRunner().invoke(app, ["eval", str(folder), "--model", str(build_random_model(tmp_path / "m")),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "1 .gt.txt file has no line image beside it" in result.stderr and "2 lines  CER" in result.stdout


def test_a_fine_tune_killed_in_its_second_epoch_keeps_the_first(tmp_path: Path, monkeypatch) -> None:
    """A fine-tune saved only every 10 minutes (and on Ctrl-C): one killed outright (kill -9, out of
    memory) before then lost every epoch it had finished."""
    import pipeline.training.loop as loop_module
    from pipeline.training.loop import train
    from pipeline.training.run_config import TrainConfig

    base, folder = build_random_model(tmp_path / "base"), _line_folder(tmp_path / "lines", WORDS[:8])
    real_loss, calls = loop_module.training_loss, []

    def killed_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # 8 lines at 4 a step: the first step of the second epoch
            raise RuntimeError("killed")
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop_module, "training_loss", killed_in_epoch_two)
    out = tmp_path / "tuned"
    with pytest.raises(RuntimeError, match="killed"):
        train(TrainConfig(out_dir=str(out), model=str(base), data=str(folder), epochs=3, batch_size=4,
                          held_out=0.0, rehearse=0.0, num_workers=0, threads=1, warmup=1, val_lines=4,
                          progress=False))
    history = json.loads((out / "checkpoint" / "history.json").read_text())
    assert history[-1]["step"] == 2  # the first epoch, saved at its end
