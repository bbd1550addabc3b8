"""Unit tests for pipeline.training: tokenizer, model build/save/load, synthetic lines, metrics, train/resume."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.training import degrade as dg
from pipeline.training.evaluate import cer, edit_distance, evaluate_dir, normalize, wer
from pipeline.training.model import CHARSET, LineModelConfig, build_char_tokenizer, build_line_model


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return build_char_tokenizer()


@pytest.mark.parametrize(
    "text", ["Hello, World 12.50", "  two  spaces", "£12 – “café” naïve ß €3,50", "TOTAL 12.50"]
)
def test_tokenizer_round_trip(tokenizer, text: str) -> None:  # type: ignore[no-untyped-def]
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text)  # one token per char, spaces included
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert (
        tokenizer.decode(
            [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id], skip_special_tokens=True
        )
        == text
    )


def test_charset_covers_western_text(tokenizer) -> None:  # type: ignore[no-untyped-def]
    for ch in "aZ09 !~£€°§–—‘’“”•éèàüöäßçñ":
        assert ch in CHARSET
    assert tokenizer.unk_token_id not in tokenizer(CHARSET, add_special_tokens=False).input_ids


def test_tiny_model_save_load_generate(tmp_path: Path) -> None:
    from transformers import AutoProcessor, VisionEncoderDecoderModel

    cfg = LineModelConfig.tiny()
    model, processor = build_line_model(cfg)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = VisionEncoderDecoderModel.from_pretrained(tmp_path).eval()
    proc = AutoProcessor.from_pretrained(tmp_path)
    assert dict(proc.image_processor.size)["height"] == cfg.height
    assert dict(proc.image_processor.size)["width"] == cfg.width
    for key in ("decoder_start_token_id", "pad_token_id", "eos_token_id"):
        assert getattr(loaded.config, key) is not None
        assert getattr(loaded.generation_config, key) == getattr(loaded.config, key)
    image = np.full((cfg.height, cfg.width, 1), 255, dtype=np.uint8)
    pv = proc(images=[image, image], return_tensors="pt").pixel_values
    assert pv.shape == (2, 1, cfg.height, cfg.width)
    with torch.inference_mode():
        out = loaded.generate(pixel_values=pv, max_new_tokens=5)
    assert out.shape[0] == 2
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_default_model_fits_budget() -> None:
    model, _ = build_line_model(LineModelConfig())
    n = sum(p.numel() for p in model.parameters())
    assert 2e6 < n < 12e6  # fp32 safetensors stays well under 50 MB


def test_synthetic_lines_shape_and_text() -> None:
    from pipeline.training.synth import LineSynthesizer

    synth = LineSynthesizer(32, 512, seed=1)
    samples = [synth.sample() for _ in range(20)]
    assert len({s.kind for s in samples}) >= 2
    chars: set[str] = set()
    for s in samples:
        assert s.image.shape == (32, 512) and s.image.dtype == np.uint8
        assert s.text and s.text == " ".join(s.text.split())
        assert s.image.min() < 180  # some ink survived the degradations (faded receipts are grey)
        chars.update(s.text)
    assert len(chars) > 25


def test_condense_changes_only_the_width() -> None:
    img = np.full((40, 300), 255, dtype=np.uint8)
    img[10:30, 20:280:7] = 0
    widths = {dg.condense(img, np.random.default_rng(seed)).shape[1] for seed in range(40)}
    assert min(widths) < 0.9 * 300 and max(widths) > 1.1 * 300  # narrow and wide print both
    out = dg.condense(img, np.random.default_rng(0))
    assert out.shape[0] == 40 and out.dtype == np.uint8 and out.min() < 128


def test_elastic_moves_strokes_a_little_and_keeps_the_ink() -> None:
    img = np.full((40, 300), 255, dtype=np.uint8)
    img[12:28, 20:280:6] = 0  # vertical strokes
    out = dg.elastic(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8
    moved = np.abs(out.astype(int) - img.astype(int)).max(axis=0) > 100
    assert moved.mean() > 0.1  # strokes shifted along the line
    assert abs(int((out < 128).sum()) - int((img < 128).sum())) < 0.3 * (img < 128).sum()


def test_long_loops_draws_ascenders_and_descenders_taller_and_keeps_the_core() -> None:
    img = np.full((60, 300), 255, dtype=np.uint8)
    img[25:35, 20:280] = 0  # the core: a band of x-height letters
    img[10:25, 50:53] = 0  # an ascender (an l) 15 rows tall
    img[35:45, 150:153] = 0  # a descender (a p) 10 rows tall
    assert dg.core_rows(img) == (25, 35)
    out = dg.long_loops(img, np.random.default_rng(0))
    top, bottom = dg.core_rows(out)
    assert bottom - top == 10 and (out[top:bottom] == img[25:35]).all()
    ascender = int((out[:top, 51] < 128).sum())
    descender = int((out[bottom:, 151] < 128).sum())
    # Both grew by the same factor, within the 1.3-2.6 drawn; the core's share of the height fell.
    factor = ascender / 15
    assert 1.25 <= factor <= 2.65 and abs(descender / 10 - factor) < 0.15
    assert out.shape[1] == 300 and out.shape[0] > 60


@pytest.mark.parametrize(
    "fn",
    [
        dg.blur,
        dg.noise,
        dg.jpeg,
        dg.binarize,
        dg.rotate,
        dg.perspective,
        dg.ink,
        dg.paper,
        dg.uneven_light,
        dg.faded,
        dg.rescale,
        dg.pixelate,
    ],
)
def test_degradations_keep_shape_and_dtype(fn) -> None:  # type: ignore[no-untyped-def]
    img = np.full((40, 300), 255, dtype=np.uint8)
    img[10:30, 20:280:7] = 0
    out = fn(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8


def test_shear_crop_and_chain_return_gray_uint8() -> None:
    img = np.full((40, 300), 255, dtype=np.uint8)
    img[10:30, 20:280:7] = 0
    rng = np.random.default_rng(0)
    assert dg.shear(img, rng).shape[0] == 40
    cropped = dg.crop(img, rng)
    assert cropped.ndim == 2 and cropped.shape[0] <= 40 + 20
    for kind in ("printed", "receipt", "handwritten"):
        out = dg.degrade(img, rng, kind)
        assert out.ndim == 2 and out.dtype == np.uint8


def test_normalize_and_fold() -> None:
    assert normalize("``Hello''  world") == '"Hello" world'
    assert normalize("“It’s”\tfine ") == '"It\'s" fine'
    assert normalize("`quoted'") == "'quoted'"
    assert normalize("cafe\u0301") == "café"  # NFC
    assert normalize("Total  12.50", fold=True) == "total12.50"


def test_cer_wer_known_values() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert cer(["abcd"], ["abcd"]) == 0.0
    assert cer(["abcd"], ["abed"]) == pytest.approx(0.25)
    assert cer(["ab", "cd"], ["", "cd"]) == pytest.approx(0.5)
    assert wer(["the cat sat"], ["the hat sat"]) == pytest.approx(1 / 3)
    assert cer(["TOTAL 12.50"], ["total12.50"]) > 0
    assert cer(["TOTAL 12.50"], ["total12.50"], fold=True) == 0.0
    assert wer(["The Cat"], ["the cat"], fold=True) == 0.0
    assert cer(["``So''"], ["“So”"]) == 0.0


def test_evaluate_dir(tmp_path: Path) -> None:
    from PIL import Image

    for i, text in enumerate(["hello", "world"]):
        Image.fromarray(np.full((20, 80), 255, dtype=np.uint8)).save(tmp_path / f"l{i}.png")
        (tmp_path / f"l{i}.gt.txt").write_text(text + "\n")
    report = evaluate_dir(tmp_path, lambda crops: ["hello", "word"][: len(crops)])
    assert report.lines == 2
    assert report.cer == pytest.approx(1 / 10)
    assert report.wer == pytest.approx(0.5)
    assert report.worst[0].name == "l1.png"
    assert report.lines_per_second > 0
    # The worst lines are the lines read wrong, however many were asked for: a 0 % line is not one.
    assert [line.name for line in report.worst] == ["l1.png"]
    assert evaluate_dir(tmp_path, lambda crops: ["hello", "world"][: len(crops)]).worst == []


def test_evaluate_dir_reads_in_batches_and_skips_an_unreadable_image_by_name(tmp_path: Path) -> None:
    from PIL import Image

    for i, text in enumerate(["one", "two", "three"]):
        Image.fromarray(np.full((20, 40 * (i + 1)), 255, dtype=np.uint8)).save(tmp_path / f"l{i}.png")
        (tmp_path / f"l{i}.gt.txt").write_text(text)
    (tmp_path / "l1b.png").write_bytes(b"not an image")
    (tmp_path / "l1b.gt.txt").write_text("lost")
    seen: list[int] = []

    def read_by_width(crops: list[np.ndarray]) -> list[str]:
        seen.append(len(crops))
        return [{40: "one", 80: "two", 120: "three"}[c.shape[1]] for c in crops]

    report = evaluate_dir(tmp_path, read_by_width, batch_size=2)
    assert seen == [2, 1]  # (l0, l1) then (l1b unreadable, l2)
    assert report.lines == 3 and report.cer == 0.0
    assert report.unreadable == ["l1b.png: not an image Pillow can read (damaged, or in a format it does not know)"]


def test_training_reduces_loss_and_resumes(tmp_path: Path) -> None:
    from pipeline.training.data import Collator
    from pipeline.training.loop import train
    from pipeline.training.run_config import TrainConfig
    from pipeline.training.synth import LineSynthesizer
    from pipeline.training.validation import ATTENTION_MARGIN

    torch.manual_seed(0)
    random.seed(0)
    # Overfitting one fixed batch must drive the loss down.
    model, processor = build_line_model(LineModelConfig.tiny())
    synth = LineSynthesizer(16, 128, seed=0)
    batch = Collator(processor, 1, 48)(
        [(s.image, s.text) for s in (synth.sample() for _ in range(4))]
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]

    tiny = LineModelConfig.tiny().to_dict()
    common = {
        "out_dir": str(tmp_path / "run"),
        "model_overrides": tiny,
        "batch_size": 4,
        "val_every": 3,
        "val_lines": 4,
        "save_every_s": 1e9,
        "num_workers": 0,
        "threads": 1,
        "progress": False,
        "warmup": 2,
    }
    first = train(TrainConfig(steps=3, **common))  # type: ignore[arg-type]
    assert first["step"] == 3 and (tmp_path / "run" / "checkpoint" / "state.pt").exists()
    assert (tmp_path / "run" / "model.safetensors").exists()
    second = train(TrainConfig(steps=5, **common))  # type: ignore[arg-type]
    assert second["step"] == 5 and second["lines_seen"] == 20
    # Validation measures the decoder and the CTC reading and records the better one.
    assert {"cer_synthetic", "ctc_cer_synthetic"} <= set(second)
    import json

    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    # The slower decoder is recorded only when it validates clearly better than CTC.
    clearly = second["cer_synthetic"] < ATTENTION_MARGIN * second["ctc_cer_synthetic"]
    assert saved["quire_decoding"] == ("attention" if clearly else "ctc")
    # Resuming with a wider CTC head reshapes the model; Adam state of the head starts anew.
    # A decoding set by hand (--decoding) is what the model's decode='auto' reads with.
    third = train(TrainConfig(steps=7, ctc_frames=4, decoding="rescore", **common))  # type: ignore[arg-type]
    assert third["step"] == 7
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["encoder"]["ctc_frames_per_token"] == 4
    assert saved["quire_decoding"] == "rescore"
    with pytest.raises(ValueError, match="decoding must be one of"):
        train(TrainConfig(steps=8, decoding="beam", **common))  # type: ignore[arg-type]


def test_eval_command_writes_json(tmp_path: Path) -> None:
    import json

    import typer
    from PIL import Image
    from typer.testing import CliRunner

    from pipeline.training.cli_eval import eval_command

    model, processor = build_line_model(LineModelConfig.tiny())
    model.config.quire_decoding = "ctc"  # what training measured: decode 'auto' reads with it
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    lines = tmp_path / "lines"
    lines.mkdir()
    Image.fromarray(np.full((20, 120), 255, dtype=np.uint8)).save(lines / "a.png")
    (lines / "a.gt.txt").write_text("TOTAL 1.00\n")
    app = typer.Typer()
    app.command()(eval_command)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        app,
        [
            str(lines),
            "--model",
            str(tmp_path / "m"),
            "--json",
            str(out),
            "--fold",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["lines"] == 1 and report["fold"] is True and 0 <= report["cer"]
    assert [line["name"] for line in report["every_line"]] == ["a.png"]
    # What it read with, not what was asked: 'auto' was the model's CTC head, without a language
    # model (the model has none), on the CPU.
    reading = report["reading"]
    assert reading["model"] == str(tmp_path / "m") and reading["decode"] == "ctc"
    assert reading["language_model"] is False and reading["device"] == "cpu"
    assert reading["precision"] in ("bf16", "fp32") and reading["beam"] == 1
    assert "CER" in result.output

    # A folder of line folders is scored folder by folder.
    for sub in ("printed", "receipts"):
        (tmp_path / "sets" / sub).mkdir(parents=True)
        Image.fromarray(np.full((20, 120), 255, dtype=np.uint8)).save(tmp_path / "sets" / sub / "a.png")
        (tmp_path / "sets" / sub / "a.gt.txt").write_text("TOTAL\n")
    both = CliRunner().invoke(app, [str(tmp_path / "sets"), "--model", str(tmp_path / "m"),
                                    "--json", str(out), "--device", "cpu", "--no-progress"])
    assert both.exit_code == 0, both.output
    assert [r["directory"] for r in json.loads(out.read_text())["folders"]] == [
        str(tmp_path / "sets" / "printed"), str(tmp_path / "sets" / "receipts")]

    # What it leaves out it says; an image it cannot read makes the exit status 1.
    Image.fromarray(np.full((20, 120), 255, dtype=np.uint8)).save(lines / "b.png")  # no .gt.txt
    (lines / "c.png").write_bytes(b"not an image")
    (lines / "c.gt.txt").write_text("lost")
    args = [str(lines), "--model", str(tmp_path / "m"), "--device", "cpu", "--no-progress"]
    partial = CliRunner().invoke(app, args)
    assert partial.exit_code == 1, partial.output
    assert "left out 1 line image without a .gt.txt" in partial.output
    assert "skipped c.png: not an image Pillow can read (damaged, or in a format it does not know)" in partial.output
    # A .gt.txt in another encoding is named, not a traceback.
    (lines / "c.gt.txt").write_bytes("Stra\xdfe".encode("latin-1"))
    latin = CliRunner().invoke(app, args)
    assert latin.exit_code == 1 and "c.gt.txt: not UTF-8 text" in latin.output, latin.output


def test_length_curriculum_grows_to_full_lines():
    from pipeline.training.synth import LineSynthesizer, curriculum_max_chars

    assert curriculum_max_chars(0, 1000, 120) == 12
    assert curriculum_max_chars(500, 1000, 120) == 66
    assert curriculum_max_chars(1000, 1000, 120) is None and curriculum_max_chars(5, 0, 120) is None
    synth = LineSynthesizer(32, 512, seed=3)
    assert all(len(synth.sample(max_chars=12).text) <= 12 for _ in range(20))


def _hershey_line(text: str = "HASHA 519537-X") -> np.ndarray:
    img = np.full((48, 20 * len(text) + 20), 255, dtype=np.uint8)
    cv2.putText(img, text, (8, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2, cv2.LINE_AA)
    return img


def _ink_columns(img: np.ndarray, slack: int = 0) -> np.ndarray:
    cols = (img < 128).any(axis=0).astype(float)
    return np.convolve(cols, np.ones(2 * slack + 1), mode="same") > 0


@pytest.mark.parametrize("fn", [dg.pixelate, dg.dot_matrix])
def test_printer_styles_keep_every_glyph(fn) -> None:  # type: ignore[no-untyped-def]
    img = _hershey_line()
    for seed in range(5):
        out = fn(img, np.random.default_rng(seed))
        # Compare at the output's scale: dots shrunk back would blur to grey.
        ref = cv2.resize(img, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_NEAREST)
        before, after = _ink_columns(ref), _ink_columns(out, slack=out.shape[0] // 20)
        # No glyph is dropped: almost every inked column still has ink after the printer style.
        assert (before & after).sum() >= 0.9 * before.sum()


def test_dot_matrix_draws_separate_dots() -> None:
    img = _hershey_line()
    out = dg.dot_matrix(img, np.random.default_rng(1))
    n_parts, _ = cv2.connectedComponents((out < 128).astype(np.uint8))
    n_strokes, _ = cv2.connectedComponents((img < 128).astype(np.uint8))
    assert n_parts > 5 * n_strokes


def test_neighbour_ink_adds_rows_and_keeps_the_line() -> None:
    img = _hershey_line()
    h = img.shape[0]
    grew = 0
    for seed in range(10):
        out = dg.neighbour_ink(img, np.random.default_rng(seed))
        assert out.shape[1] == img.shape[1]
        assert any(np.array_equal(out[k : k + h], img) for k in range(out.shape[0] - h + 1))
        grew += out.shape[0] > h
    assert grew >= 3


def test_degrade_never_empties_a_tiny_glyph():
    import numpy as np

    from pipeline.training.degrade import degrade

    dash = np.full((3, 12), 255, np.uint8)
    dash[1, 2:10] = 0  # a one-pixel-high rule, the case that once crashed a long run
    for seed in range(300):
        out = degrade(dash, np.random.default_rng(seed), ["printed", "receipt", "handwritten"][seed % 3])
        assert out.ndim == 2 and out.size > 0


def test_packed_training_assets_replace_the_installed_fonts_and_words(tmp_path, monkeypatch):
    import subprocess
    import sys

    from pipeline.training import corpus, fonts

    assert fonts._parse_charset(fonts.charset_spec(frozenset({32, 33, 34, 65, 97, 98}))) == {32, 33, 34, 65, 97, 98}
    out = tmp_path / "assets"
    monkeypatch.delenv("QUIRE_TRAIN_ASSETS", raising=False)
    script = Path(__file__).resolve().parents[2] / "bench" / "pack_training_assets.py"
    subprocess.run([sys.executable, str(script), "--out", str(out), "--font-mb", "1"],
                   check=True, capture_output=True)
    monkeypatch.setenv("QUIRE_TRAIN_ASSETS", str(out))
    for cached in (fonts.discover_fonts, corpus.dictionary_words, corpus.prose_lines, corpus.book_passages):
        cached.cache_clear()
    try:
        packed = fonts.discover_fonts()
        assert packed and all(f.path.startswith(str(out)) for f in packed)
        assert any(f.kind == "handwriting" for f in packed)
        assert len(corpus.dictionary_words()) > 1000 and corpus.prose_lines()
    finally:
        for cached in (fonts.discover_fonts, corpus.dictionary_words, corpus.prose_lines, corpus.book_passages):
            cached.cache_clear()


def test_cer_by_confidence_ranks_lines_by_confidence(tmp_path: Path) -> None:
    from PIL import Image

    for i, text in enumerate(["alpha", "beta", "gamma", "delta"]):
        Image.fromarray(np.full((20, 80), 255, dtype=np.uint8)).save(tmp_path / f"l{i}.png")
        (tmp_path / f"l{i}.gt.txt").write_text(text + "\n")
    # Two right lines with high confidence, two wrong ones with low: the top half is clean.
    answers = [("alpha", 0.99), ("bxxx", 0.2), ("gamma", 0.95), ("dexxx", 0.3)]
    report = evaluate_dir(tmp_path, lambda crops: answers[: len(crops)], batch_size=8)
    assert report.cer_by_confidence["50%"] == 0.0
    assert report.cer_by_confidence["90%"] > 0 and report.cer > 0
    assert [w.confidence for w in report.worst][:2] == [0.2, 0.3]
    assert evaluate_dir(tmp_path, lambda crops: ["x"] * len(crops)).cer_by_confidence == {}


def test_ctc_loss_teaches_the_encoder_to_read() -> None:
    from pipeline.training.data import Collator
    from pipeline.training.optimization import training_loss
    from pipeline.training.synth import LineSynthesizer

    torch.manual_seed(0)
    model, processor = build_line_model(LineModelConfig.tiny())
    assert model.encoder.ctc_head is not None
    synth = LineSynthesizer(16, 128, seed=0)
    batch = Collator(processor, 1, 48)([(s.image, s.text) for s in (synth.sample(max_chars=12) for _ in range(4))])
    tok = processor.tokenizer
    specials = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = last = None
    for _ in range(40):
        loss, parts = training_loss(model, batch["pixel_values"], batch["labels"], 0.5, specials)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or parts
        last = parts
    assert set(last) == {"ce", "ctc"}
    assert last["ctc"] < 0.5 * first["ctc"] and last["ce"] < first["ce"]
    # Without a CTC head (or with weight 0) the loss is the decoder's alone.
    loss, parts = training_loss(model, batch["pixel_values"], batch["labels"], 0.0, specials)
    assert set(parts) == {"ce"}


def test_corpus_covers_receipt_headers_and_doubled_letters() -> None:
    """The two error kinds left on the dev sets must be in the training text: AMT(RM)-style
    headers with pack sizes, and words with doubled letters that CTC has to split."""
    import random
    import re

    from pipeline.training.corpus import receipt_line, text_line

    rng = random.Random(3)
    receipts = [receipt_line(rng) for _ in range(500)]
    assert any(re.search(r"[A-Z]\s?\((RM|\$|MYR|SGD|USD)\)", r) for r in receipts)
    assert any(re.search(r"\d(L|ML|G|KG|PCS)\b", r) for r in receipts)
    printed = " ".join(text_line(rng, "printed") for _ in range(300))
    doubled = re.findall(r"\b\w*([a-z])\1\w*\b", printed)
    assert len(doubled) > 50


def test_quire_train_fine_tunes_a_trocr_architecture_model(tmp_path: Path) -> None:
    """`quire train --model` takes any VisionEncoderDecoder checkpoint: here one with TrOCR's
    ViT encoder on square RGB inputs, trained on an ocropy-style folder and read back."""
    import typer
    from PIL import Image
    from transformers import VisionEncoderDecoderModel
    from typer.testing import CliRunner

    from pipeline.recognize import Recognizer
    from pipeline.training.cli_train import train_command
    from tests.model_fixtures import build_tiny_trocr, render_line

    trocr = build_tiny_trocr(tmp_path / "trocr")
    lines = tmp_path / "lines"
    lines.mkdir()
    for i, text in enumerate(("TOTAL 12.50", "Dear Sir", "No. 7")):
        Image.fromarray(render_line(text)).save(lines / f"l{i}.png")
        (lines / f"l{i}.gt.txt").write_text(text + "\n")
    app = typer.Typer()
    app.command()(train_command)
    common = ["--model", str(trocr), "--data", str(lines), "--val-dir", str(lines),
              "--num-workers", "0", "--threads", "1", "--batch-size", "2", "--warmup", "1"]
    out = tmp_path / "tuned"
    result = CliRunner().invoke(app, ["--out", str(out), "--epochs", "2", *common])
    assert result.exit_code == 0, result.output
    tuned = VisionEncoderDecoderModel.from_pretrained(out)
    assert tuned.config.encoder.model_type == "vit"
    start = VisionEncoderDecoderModel.from_pretrained(trocr)
    moved = any(
        not torch.equal(a, b) for a, b in zip(start.parameters(), tuned.parameters())
    )
    assert moved, "fine-tuning left every weight where it was"
    texts = [r.text for r in Recognizer(str(out), device="cpu").recognize([render_line("Dear Sir")])]
    assert len(texts) == 1 and isinstance(texts[0], str)
    # --ctc-frames only makes sense for Quire's encoder: a clear error, not a silent no-op.
    wrong = CliRunner().invoke(
        app, ["--out", str(tmp_path / "other"), "--steps", "1", "--ctc-frames", "2", *common]
    )
    assert wrong.exit_code == 2
    assert "--ctc-frames needs a model with Quire's line encoder" in wrong.output
    assert "ViTModel" in wrong.output


def test_new_model_is_built_with_the_asked_ctc_frames(tmp_path: Path) -> None:
    from pipeline.training.loop import train
    from pipeline.training.run_config import TrainConfig

    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"), model_overrides=LineModelConfig.tiny().to_dict(),
        steps=1, batch_size=2, val_every=5, val_lines=2, num_workers=0, threads=1, progress=False,
        save_every_s=1e9, warmup=1, ctc_frames=3,
    )
    train(cfg)
    import json

    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["encoder"]["ctc_frames_per_token"] == 3


def test_a_trained_model_grows_to_taller_lines_with_every_weight_kept(tmp_path: Path, capsys) -> None:
    """--size mid --model M: small's layers on taller lines start from M's weights, all of them."""
    from transformers import AutoProcessor, VisionEncoderDecoderModel

    from pipeline.training.loop import train
    from pipeline.training.run_config import TrainConfig
    from pipeline.training.starting_model import load_or_build

    trained, processor = build_line_model(LineModelConfig.tiny())
    trained.save_pretrained(tmp_path / "small")
    processor.save_pretrained(tmp_path / "small")
    # The tiny model's 'mid': half again as tall, the last pool taking 3 rows (as small -> mid).
    taller = {"height": 24, "stem_pools": ((2, 2), (2, 2), (2, 1), (3, 1))}
    common = {
        "out_dir": str(tmp_path / "grown"), "model": str(tmp_path / "small"), "size": "mid",
        "model_overrides": {**LineModelConfig.tiny().to_dict(), **taller}, "batch_size": 2,
        "val_every": 5, "val_lines": 2, "num_workers": 0, "threads": 1, "progress": False,
        "save_every_s": 1e9, "warmup": 1,
    }
    grown, grown_processor, _ = load_or_build(TrainConfig(steps=1, **common))  # type: ignore[arg-type]
    taken, total = _tensors_taken(capsys.readouterr().out)
    assert taken == total
    theirs = trained.state_dict()
    for name, tensor in grown.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name
    assert dict(grown_processor.image_processor.size)["height"] == 24

    train(TrainConfig(steps=1, **common))  # type: ignore[arg-type]
    saved = VisionEncoderDecoderModel.from_pretrained(tmp_path / "grown")
    assert saved.config.encoder.image_height == 24
    assert dict(AutoProcessor.from_pretrained(tmp_path / "grown").image_processor.size)["height"] == 24

    # A size whose layers do not all fit takes only what does, and says how much...
    wider = {**common, "out_dir": str(tmp_path / "wider"),
             "model_overrides": {**common["model_overrides"], "enc_ffn": 96}}
    load_or_build(TrainConfig(steps=1, **wider))  # type: ignore[arg-type]
    taken, total = _tensors_taken(capsys.readouterr().out)
    assert 0 < taken < total
    # ...but one that would keep little of the trained model is refused: that is a new model.
    other = {**common, "out_dir": str(tmp_path / "other"),
             "model_overrides": {**common["model_overrides"], "enc_dim": 48, "dec_dim": 48}}
    with pytest.raises(ValueError, match=r"only \d+% of --size mid's weights can come from"):
        load_or_build(TrainConfig(steps=1, **other))  # type: ignore[arg-type]


def _tensors_taken(said: str) -> tuple[int, int]:
    import re

    found = re.findall(r"(\d+) of (\d+) tensors taken from it", said)
    assert found, said
    return int(found[-1][0]), int(found[-1][1])


def test_weight_average_warms_up_then_follows_the_weights() -> None:
    from pipeline.training.averaging import WeightAverage

    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(0.0)
        layer.bias.fill_(0.0)
    average = WeightAverage(layer, decay=0.5)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average.update(layer)  # warm-up: decay 2/11, so the average moves most of the way
    assert average.shadow["weight"][0, 0].item() == pytest.approx(9 / 11)
    average.update(layer)  # decay 3/12 = 0.25 (still under the 0.5 asked)
    expected = 0.25 * 9 / 11 + 0.75
    assert average.shadow["weight"][0, 0].item() == pytest.approx(expected)
    for _ in range(20):
        average.update(layer)
    assert average.current_decay() == 0.5
    with average.applied(layer):
        assert layer.weight[0, 0].item() == pytest.approx(average.shadow["weight"][0, 0].item())
    assert layer.weight[0, 0].item() == 1.0  # the training weights are back
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(layer, decay=1.0)


def test_saved_model_is_the_weight_average_and_a_resume_trains_on(tmp_path: Path) -> None:
    import json

    from safetensors.torch import load_file
    from transformers import VisionEncoderDecoderModel

    from pipeline.training.checkpoint import TRAINING_WEIGHTS
    from pipeline.training.loop import train
    from pipeline.training.run_config import TrainConfig
    from pipeline.training.starting_model import load_or_build

    run = tmp_path / "run"
    common = {
        "out_dir": str(run), "model_overrides": LineModelConfig.tiny().to_dict(), "batch_size": 2,
        "val_every": 100, "val_lines": 2, "num_workers": 0, "threads": 1, "progress": False,
        "save_every_s": 1e9, "warmup": 1, "lr": 3e-3, "ema_decay": 0.9,
    }
    train(TrainConfig(steps=4, **common))  # type: ignore[arg-type]
    shipped = VisionEncoderDecoderModel.from_pretrained(run).state_dict()
    training = load_file(run / "checkpoint" / TRAINING_WEIGHTS)
    name = next(n for n, t in training.items() if t.dim() == 2 and n in shipped)
    # Four steps at a high rate move the weights; the shipped average lags behind them.
    assert not torch.equal(shipped[name].float(), training[name].float())

    model, _, average = load_or_build(TrainConfig(steps=6, **common))  # type: ignore[arg-type]
    assert average is not None
    assert torch.equal(model.state_dict()[name], training[name].float())
    assert torch.equal(average[name], shipped[name].float())

    train(TrainConfig(steps=6, **common))  # type: ignore[arg-type]
    state = torch.load(run / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 6 and state["average_updates"] == 6
    assert json.loads((run / "config.json").read_text())["architectures"]

    # Without an average the saved model is the training weights and no stale copy is left.
    train(TrainConfig(steps=7, **{**common, "ema_decay": 0.0}))  # type: ignore[arg-type]
    assert not (run / "checkpoint" / TRAINING_WEIGHTS).exists()
    model, _, average = load_or_build(TrainConfig(steps=8, **common))  # type: ignore[arg-type]
    assert average is None


def test_synthetic_batches_hold_lines_of_like_width_cut_to_the_widest() -> None:
    from pipeline.line_image import inked_width
    from pipeline.training.data import batches
    from pipeline.training.synth import WIDTH_BUCKETS

    _, processor = build_line_model(LineModelConfig.tiny())
    # Early in the length curriculum (lines of at most 12 characters), so widths vary at 16x128.
    stream = batches(
        "synthetic", processor, 1, 48, batch_size=6, num_workers=0, seed=3, trim=True,
        curriculum_lines=10**6,
    )
    widths = []
    for _ in range(8):
        batch = next(stream)
        pixels = batch["pixel_values"]
        assert pixels.shape[0] == 6 == len(batch["texts"])
        inked = [inked_width(np.where(p[0].numpy() >= 1.0, 255, 0)) for p in pixels]
        full = processor.image_processor.size["width"]
        quarters = {min(WIDTH_BUCKETS - 1, w * WIDTH_BUCKETS // full) for w in inked}
        assert len(quarters) == 1, f"a batch mixes widths {inked}"
        assert max(inked) <= pixels.shape[-1]
        widths.append(pixels.shape[-1])
    assert min(widths) < max(widths), "every batch came out the same width"


def test_training_feeds_a_line_to_the_model_as_recognition_does(tmp_path: Path) -> None:
    """The same crop must reach the model as the same numbers in `quire train` and in recognition,
    including a checkpoint whose processor normalises with its own mean and std."""
    from pipeline.model_input import fit_lines
    from pipeline.recognize import Recognizer
    from pipeline.training.data import Collator
    from pipeline.training.synth import LineSynthesizer

    model, processor = build_line_model(LineModelConfig.tiny())
    processor.image_processor.image_mean, processor.image_processor.image_std = [0.3], [0.2]
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    recognizer = Recognizer(str(tmp_path))
    size = processor.image_processor.size
    crops = [LineSynthesizer(size["height"], size["width"], seed=5).sample().image for _ in range(3)]
    crops[1] = crops[1][:, : crops[1].shape[1] // 3]  # a short line: the batch is cut to its ink
    trained_on = Collator(processor, 1, 48, trim=True)([(c, "x") for c in crops])["pixel_values"]
    read = recognizer._pixel_values(fit_lines(crops, recognizer.input))  # as `recognize` reads them
    assert trained_on.shape == read.shape
    assert torch.allclose(trained_on, read, atol=1e-6)
    white = (1.0 - 0.3) / 0.2
    assert torch.isclose(read.max(), torch.tensor(white)), "the processor's mean and std are used"


def test_ctrl_c_to_the_whole_process_group_saves_a_checkpoint(tmp_path: Path) -> None:
    """Ctrl-C (or timeout/systemd stopping the group) reaches the data workers too: the run must
    still end with its checkpoint saved, not with a dead worker's traceback."""
    import json
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pipeline.training.train", "--out", str(out), "--model", "new",
           "--data", "synthetic", "--steps", "100000", "--batch-size", "2", "--num-workers", "1",
           "--threads", "1", "--val-every", "100000", "--val-lines", "2", "--log-every", "1",
           "--save-every-s", "1e9", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if line.startswith('{"step": 3,'):
                break
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(seen) + rest
    assert proc.returncode == 0, output[-3000:]
    assert "saved step" in output
    saved = torch.load(out / "checkpoint" / "state.pt", weights_only=False)
    assert saved["step"] >= 3
    # The last step logged is the one saved. (Python's multiprocessing resource tracker, Ctrl-C'd
    # with the group, may warn after it: look past lines that are not the run's JSON.)
    logged = [line for line in output.splitlines() if line.startswith('{"step":')]
    assert json.loads(logged[-1])["step"] == saved["step"]


# Two glyphs in the .jhf layout: a space, and an "!" of two pen paths (a stroke and a dot) whose
# record runs on to a second line, as long records do in the Debian files.
TINY_JHF = "12345  1JZ\n12346  9MWRFRT RRYQZR[SZRY\n"


def test_hershey_records_parse_into_bearings_and_pen_paths() -> None:
    from pipeline.training.strokes import parse_jhf

    continued = TINY_JHF.replace("RRYQZ", "RRY\nQZ")
    for text in (TINY_JHF, continued):
        glyphs = parse_jhf(text)
        assert sorted(glyphs) == [" ", "!"]
        assert (glyphs[" "].left, glyphs[" "].right, glyphs[" "].paths) == (-8, 8, ())
        bang = glyphs["!"]
        assert (bang.left, bang.right) == (-5, 5)
        assert [p.tolist() for p in bang.paths] == [
            [[0, -12], [0, 2]],
            [[0, 7], [-1, 8], [0, 9], [1, 8], [0, 7]],
        ]


def _components(img: np.ndarray) -> int:
    return cv2.connectedComponents((img < 160).astype(np.uint8))[0] - 1


def test_script_hand_is_joined_up_within_words_and_varies_each_time() -> None:
    from pipeline.training.strokes import render_strokes, stroke_fonts

    glyphs = stroke_fonts().get("scripts")
    assert glyphs is not None, "install hershey-fonts-data (Debian) for the script hands"
    word = [render_strokes("minnum", glyphs, 40, random.Random(s)) for s in range(10)]
    words = [render_strokes("mum nun", glyphs, 40, random.Random(s)) for s in range(10)]
    # One pen trace per word, however each letter's size and place were varied (i-dot aside).
    assert sum(_components(w) <= 2 for w in word) >= 8
    assert sum(_components(w) == 2 for w in words) >= 8
    assert len({w.shape for w in word}) > 5  # no two writings alike
    assert all(w.min() < 100 and w.shape[0] > 40 for w in word)


def test_hand_lines_drawn_with_script_pens_keep_labels_the_ink_matches(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pipeline.training import synth as synth_module

    monkeypatch.setattr(synth_module, "STROKE_SHARE", 1.0)
    synth = synth_module.LineSynthesizer(32, 512, seed=2, mix={"handwritten": 1.0})
    samples = [synth.sample() for _ in range(12)]
    # The Hershey fonts draw ASCII only: accented letters or currency signs must leave the label.
    assert all(s.text and all(32 <= ord(c) < 127 for c in s.text) for s in samples)
    assert all(s.image.min() < 160 for s in samples)


def test_broad_nib_draws_strokes_across_its_edge_broad_and_along_it_thin() -> None:
    from pipeline.training.strokes import _sweep_nib

    nib = 0.5 * 12 * np.array([np.cos(np.pi / 4), -np.sin(np.pi / 4)])  # 12 px edge at 45 degrees
    across = np.full((100, 100), 255, np.uint8)
    along = across.copy()
    _sweep_nib(across, np.array([[20.0, 20.0], [80.0, 80.0]]), nib, 0, 3)  # down-right: across the edge
    _sweep_nib(along, np.array([[20.0, 80.0], [80.0, 20.0]]), nib, 0, 3)  # up-right: along it
    ink_across, ink_along = int((across < 128).sum()), int((along < 128).sum())
    # Same stroke length (85 px): about 12 px broad across the edge, a hairline along it.
    assert ink_across > 5 * ink_along
    assert 800 < ink_across < 1300


def test_book_passages_keep_running_text_and_lines_end_on_whole_words(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pipeline.training import corpus

    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "b.txt").write_text(
        "It was the best of times,\n  it was the worst of times.\n\t\t-- Dickens\n%\n"
        "  /\\_/\\  ( o.o ) > ^ < |__|__|\n%\nShort.\n%\n"
        "All happy families are alike; each unhappy family is unhappy in its own way.\n",
        encoding="ascii",
    )
    monkeypatch.setenv("QUIRE_TRAIN_ASSETS", str(tmp_path))
    monkeypatch.setattr(corpus, "BOOK_GLOBS", ())
    corpus.book_passages.cache_clear()
    try:
        passages = corpus.book_passages()
        # Lines joined, ASCII art and fragments under 20 characters left out.
        assert passages == (
            "It was the best of times, it was the worst of times. -- Dickens",
            "All happy families are alike; each unhappy family is unhappy in its own way.",
        )
        rng = random.Random(0)
        words = set(" ".join(passages).split())
        for _ in range(50):
            line = corpus.book_text(rng, 30)
            assert 0 < len(line) <= 30 and set(line.split()) <= words
    finally:
        corpus.book_passages.cache_clear()


def test_mix_sets_the_share_of_each_kind_of_synthetic_line() -> None:
    from pipeline.training.synth import LineSynthesizer, parse_mix

    assert parse_mix(None) is None
    mix = parse_mix("handwritten=3, receipt=1")
    assert mix == {"handwritten": 3.0, "receipt": 1.0}
    synth = LineSynthesizer(32, 512, seed=1, mix=mix)
    kinds = [synth.sample(20).kind for _ in range(40)]
    assert set(kinds) == {"handwritten", "receipt"} and kinds.count("handwritten") > kinds.count("receipt")
    for bad, reason in (("hand=1", "unknown kind 'hand'"), ("printed=x", "needs a number"),
                        ("printed=-1", "cannot be negative"), ("printed=0", "above 0")):
        with pytest.raises(ValueError, match=reason):
            parse_mix(bad)


def test_ink_cut_draws_synthetic_lines_cut_to_their_ink_as_recognition_cuts_crops() -> None:
    import cv2

    from pipeline.line_image import inked_width
    from pipeline.slant import estimate_slant
    from pipeline.training.loop import train
    from pipeline.training.run_config import TrainConfig
    from pipeline.training.synth import LineSynthesizer

    def ink_fills_the_height(line: np.ndarray) -> bool:
        _, ink = cv2.threshold(line, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
        per_row = ink.sum(axis=1)
        rows = np.flatnonzero(per_row >= max(1, 0.02 * per_row.max()))
        return rows[-1] - rows[0] + 1 >= 0.85 * line.shape[0]

    def share_filled(ink_cut: float) -> float:
        synth = LineSynthesizer(32, 512, seed=4, ink_cut=ink_cut)
        lines = [synth.sample(40).image for _ in range(40)]
        return sum(ink_fills_the_height(line) for line in lines) / len(lines)

    # Drawn as they come, loose crops and margins leave many lines' ink short of the input's height
    # (at least a third; hands drawn with taller loops fill more of theirs).
    assert share_filled(0.0) <= 2 / 3
    assert share_filled(1.0) >= 0.95

    def leans(ink_cut: float) -> list[float]:
        synth = LineSynthesizer(32, 512, seed=4, mix={"handwritten": 1.0}, ink_cut=ink_cut)
        lines = [synth.sample(40).image for _ in range(30)]
        return [abs(estimate_slant(line[:, : inked_width(line)])) for line in lines]

    # Hands lean; recognition shears them upright, and so are the lines drawn for it (measured
    # again at 32 px, a little lean is left: the estimate reads rounded strokes, and short lines, loosely).
    assert sum(lean >= 0.15 for lean in leans(0.0)) >= 10  # a third; many hand fonts stand upright
    after = leans(1.0)
    assert sum(lean >= 0.15 for lean in after) <= 4 and max(after) < 0.3  # short lines measure loosely
    with pytest.raises(ValueError, match="share of lines"):
        train(TrainConfig(out_dir="unused", ink_cut=1.5))


def test_a_hand_font_without_a_space_glyph_still_leaves_gaps_between_words() -> None:
    from dataclasses import replace

    from pipeline.training.fonts import discover_fonts
    from pipeline.training.synth import _OutlinePen

    font = next(f for f in discover_fonts() if f.covers("abc xyz") and not f.caps_only)
    # TeX's Type 1 cursives (frcursive, Calligra) have no space glyph; the label keeps the space
    # and the drawing keeps the gap, so the model learns words, not one run of letters.
    spaceless = replace(font, charset=font.charset - {32})
    pen = _OutlinePen(spaceless, 32, random.Random(0), jitter=0.02, spacing=0.0)
    assert pen.fit("abc xyz") == "abc xyz"
    img = pen("abc xyz")
    ink_columns = np.flatnonzero((img < 128).any(axis=0))
    widest_gap = int(np.diff(ink_columns).max())
    assert widest_gap >= 0.25 * 32  # a word space; gaps between letters are a few pixels
    plain = _OutlinePen(spaceless, 32, random.Random(0), jitter=0.0, spacing=0.0)("abc xyz")
    assert int(np.diff(np.flatnonzero((plain < 128).any(axis=0))).max()) >= 0.25 * 32


def test_cursives_whose_z_reaches_below_the_line_are_not_taken_for_all_caps_fonts() -> None:
    from pipeline.training import fonts

    # With 'z' in the sample, Miama, Rufscript and frcursive (whose z has a descender) measured
    # as all-caps fonts and their lines were drawn in capitals. Needs `make train-deps`' fonts.
    found = {f.family: f.caps_only for f in fonts.discover_fonts()}
    cursives = {name: caps for name, caps in found.items() if name in ("Miama Nueva", "Rufscript", "frcr10")}
    if not cursives:
        pytest.skip("no cursive training fonts installed (make train-deps)")
    assert not any(cursives.values()), cursives
    if "Humor Sans" in found:  # a hand that really is all capitals stays so
        assert found["Humor Sans"]


def test_size_base_builds_a_taller_deeper_model_that_recognition_reads(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.recognize import Recognizer
    from pipeline.training.loop import train
    from pipeline.training.run_config import TrainConfig

    run = tmp_path / "run"
    train(TrainConfig(
        out_dir=str(run), size="base", steps=1, batch_size=2, val_every=5, val_lines=2,
        num_workers=0, threads=1, progress=False, save_every_s=1e9, warmup=1, decoding="ctc",
    ))
    saved = json.loads((run / "config.json").read_text())
    assert saved["encoder"]["image_height"] == 48 and saved["encoder"]["num_hidden_layers"] == 4
    assert saved["decoder"]["decoder_layers"] == 4
    processor = json.loads((run / "processor_config.json").read_text())
    assert processor["image_processor"]["size"]["height"] == 48
    # One step of training reads nothing yet, but recognition must take the 48 px model as it is.
    line = np.full((40, 300), 255, np.uint8)
    cv2.putText(line, "base", (5, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2)
    read = Recognizer(str(run), device="cpu").recognize([line])
    assert len(read) == 1 and 0.0 <= read[0].confidence <= 1.0

    wrong = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "x"), "--size", "huge"])
    assert wrong.exit_code == 2 and "'huge' is not one of small, mid, base" in wrong.output
    fine_tune = CliRunner().invoke(
        app, ["train", "--out", str(tmp_path / "y"), "--model", str(run), "--size", "base"]
    )
    assert fine_tune.exit_code == 2 and "sizes: drop --size to fine-tune it" in fine_tune.output


def test_a_font_file_that_cannot_be_opened_costs_a_line_not_the_run(monkeypatch, tmp_path: Path) -> None:
    from dataclasses import replace

    from pipeline.training import synth

    real_pick = synth.pick_font
    gone: list[str] = []

    def pick_removed_first(rng, kind, text=""):
        font = real_pick(rng, kind, text)
        if len(gone) < 3:  # the first three picks point at a file removed since the run started
            gone.append(font.path)
            return replace(font, path=str(tmp_path / "removed.ttf"))
        return font

    monkeypatch.setattr(synth, "pick_font", pick_removed_first)
    sample = synth.LineSynthesizer(32, 512, seed=1, mix={"printed": 1.0}).sample()
    assert len(gone) == 3 and sample.text and sample.image.shape == (32, 512)


def test_a_frozen_encoder_comes_out_exactly_as_it_went_in(tmp_path: Path) -> None:
    """--freeze-encoder: no weight and no running statistic (BatchNorm) of the encoder changes."""
    from transformers import VisionEncoderDecoderModel

    from pipeline.training.loop import train
    from pipeline.training.run_config import TrainConfig

    common = {"model_overrides": LineModelConfig.tiny().to_dict(), "batch_size": 2, "val_every": 100,
              "val_lines": 2, "num_workers": 0, "threads": 1, "progress": False, "save_every_s": 1e9,
              "warmup": 1, "lr": 3e-3, "ema_decay": 0.0}
    train(TrainConfig(out_dir=str(tmp_path / "base"), steps=2, **common))  # type: ignore[arg-type]
    train(TrainConfig(out_dir=str(tmp_path / "tuned"), model=str(tmp_path / "base"), steps=3,
                      freeze_encoder=True, **{**common, "model_overrides": {}}))  # type: ignore[arg-type]
    before = VisionEncoderDecoderModel.from_pretrained(tmp_path / "base").state_dict()
    after = VisionEncoderDecoderModel.from_pretrained(tmp_path / "tuned").state_dict()
    encoder = [name for name in before if name.startswith("encoder.")]
    assert any("running_mean" in name for name in encoder)  # the stem's BatchNorm is checked too
    assert [n for n in encoder if not torch.equal(before[n], after[n])] == []
    decoder = [name for name in before if name.startswith("decoder.") and before[name].dim() == 2]
    assert any(not torch.equal(before[n], after[n]) for n in decoder)  # the decoder did learn


def test_training_never_writes_over_the_model_it_starts_from_nor_a_shipped_one(tmp_path, monkeypatch) -> None:
    """`quire train --model quire-line-v1 --out models/quire-line-v1 --no-resume` replaced the
    shipped weights with a one-step tune (the refusal before it even suggested --no-resume)."""
    import pipeline.config
    from pipeline.training.preflight import check_output_folder
    from pipeline.training.run_config import TrainConfig

    source = tmp_path / "mine"
    model, _ = build_line_model(LineModelConfig.tiny())
    model.save_pretrained(source)
    for resume in (True, False):
        with pytest.raises(ValueError, match="is the model this run starts from"):
            check_output_folder(TrainConfig(out_dir=str(source), model=str(source), resume=resume))

    shipped = tmp_path / "models"
    (shipped / "quire-line-v9" / "checkpoint").mkdir(parents=True)
    monkeypatch.setattr(pipeline.config, "SHIPPED_MODELS_DIR", shipped)
    with pytest.raises(ValueError, match="a model Quire ships: --no-resume would write over it"):
        check_output_folder(TrainConfig(out_dir=str(shipped / "quire-line-v9"), model="new", resume=False))
    # Its own run, resumed, goes on (how the shipped model is trained further).
    check_output_folder(TrainConfig(out_dir=str(shipped / "quire-line-v9"), model="new"))
    # Another run into it is refused without pointing at --no-resume, which is refused too.
    import torch

    torch.save({"train_config": {"model": "new", "data": "synthetic"}},
               shipped / "quire-line-v9" / "checkpoint" / "state.pt")
    with pytest.raises(ValueError, match="holds a run of") as refused:
        check_output_folder(TrainConfig(out_dir=str(shipped / "quire-line-v9"), model=str(source)))
    assert str(refused.value).endswith("give a new --out") and "--no-resume" not in str(refused.value)
    # A new folder beside the source is fine.
    check_output_folder(TrainConfig(out_dir=str(tmp_path / "tuned"), model=str(source), resume=False))


def test_a_second_ctrl_c_stops_training_at_once(capfd) -> None:
    """The first Ctrl-C waited for the step (and a validation, minutes on a CPU) without a word,
    and a second did nothing: the user's next move was kill -9."""
    import os
    import signal

    from pipeline.training.stopping import stop_on_signals

    before = signal.getsignal(signal.SIGINT)
    stop = stop_on_signals()
    try:
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the next line
        assert stop.is_set()
        assert "stopping after this step, with a checkpoint" in capfd.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGINT) is before
