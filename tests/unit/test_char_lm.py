"""The character language model: Witten-Bell probabilities, its file, and `quire build-lm`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline import char_lm

TEXT = ["the mental state", "a metal gate", "mental and corporeal", "the men", "total 12.50"]


def test_probabilities_are_witten_bell_as_worked_by_hand():
    # a, b, c are symbols 1-3, the unknown character 4; order 2 (one character of context).
    lm = char_lm.build(["ab", "ab", "ac"], order=2, alphabet="abc", min_count=1)
    # Unigrams: a 3, b 2, c 1 times; 3 kinds in 6, so 6/9 of the mass is theirs, 3/9 uniform (1/4).
    p_a, p_b = 2 / 3 * 3 / 6 + 1 / 3 / 4, 2 / 3 * 2 / 6 + 1 / 3 / 4
    # After the line start: a, 3 times, 1 kind -> 3/4 own counts, 1/4 the unigram.
    assert math.isclose(lm.logp([0], 1), math.log(3 / 4 + 1 / 4 * p_a), rel_tol=1e-6)
    # After a: b twice, c once -> 3/5 own counts; a never came after a: only the unigram's share.
    assert math.isclose(lm.logp([0, 1], 2), math.log(3 / 5 * 2 / 3 + 2 / 5 * p_b), rel_tol=1e-6)
    assert math.isclose(lm.logp([0, 1], 1), math.log(2 / 5 * p_a), rel_tol=1e-6)
    assert math.isclose(lm.text_logp("ab"), lm.logp([0], 1) + lm.logp([0, 1], 2), rel_tol=1e-6)


@pytest.mark.parametrize("context", ["", "the ", "menta", "meta", "zzzz", "tal 1"])
def test_every_context_spreads_exactly_one_over_the_characters(context):
    lm = char_lm.build(TEXT, order=4, min_count=1)
    symbols = [0, *lm.symbols(context)]
    total = sum(math.exp(lm.logp(symbols, s)) for s in range(1, lm.unknown + 1))
    assert math.isclose(total, 1.0, rel_tol=1e-5)


def test_pruned_n_grams_leave_the_rest_of_the_model_a_distribution_below_one():
    full = char_lm.build(TEXT * 3 + ["a one-off line"], order=5, min_count=1)
    pruned = char_lm.build(TEXT * 3 + ["a one-off line"], order=5, min_count=2)
    assert len(pruned.ngram_keys) < len(full.ngram_keys)
    symbols = [0, *pruned.symbols("a one")]
    total = sum(math.exp(pruned.logp(symbols, s)) for s in range(1, pruned.unknown + 1))
    assert 0.5 < total <= 1.0 + 1e-6
    # What was seen often is kept exactly.
    assert math.isclose(pruned.text_logp("the men"), full.text_logp("the men"), rel_tol=1e-5)


def test_text_like_the_training_text_scores_higher_than_a_misreading():
    lm = char_lm.build(TEXT * 5, order=6)
    assert lm.text_logp("the mental") > lm.text_logp("the mentat")
    assert lm.text_logp("mental") > lm.text_logp("rnental")


def test_the_file_round_trips_and_a_bad_file_is_named(tmp_path):
    lm = char_lm.build(TEXT, order=3)
    lm.save(tmp_path / "lm.npz")
    again = char_lm.load(tmp_path / "lm.npz")
    assert again.alphabet == lm.alphabet and again.order == 3
    assert again.text_logp("the metal") == lm.text_logp("the metal")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz: not a Quire character language model"):
        char_lm.load(tmp_path / "bad.npz")


def test_characters_outside_the_alphabet_share_the_unknown_symbol():
    lm = char_lm.build(TEXT, order=3, alphabet="abcdefghijklmnopqrstuvwxyz ")
    assert lm.symbols("a€") == [1, lm.unknown]
    table = lm.symbol_of_tokens({"<s>": 0, "a": 1, "€": 2, "b": 3}, 5)
    assert table.tolist() == [lm.unknown, 1, lm.unknown, 2, lm.unknown]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="order"):
        char_lm.build(TEXT, order=8)
    with pytest.raises(ValueError, match="no text"):
        char_lm.build(["", ""], order=3)


def test_build_lm_writes_the_model_folder_file_with_the_models_characters(tmp_path):
    from pipeline.cli import app
    from tests.model_fixtures import build_random_model

    model = build_random_model(tmp_path / "model")
    text = tmp_path / "letters.txt"
    text.write_text("\n".join(TEXT) + "\n", encoding="utf-8")
    out = CliRunner().invoke(app, ["build-lm", str(model), "--text", str(text), "--order", "4"])
    assert out.exit_code == 0, out.output
    lm = char_lm.load(model / char_lm.FILE_NAME)
    assert lm.order == 4 and "a" in lm.alphabet and "€" in lm.alphabet  # the tokenizer's, not the text's
    assert lm.text_logp("the mental") > lm.text_logp("the mentat")

    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    bad = CliRunner().invoke(app, ["build-lm", str(tmp_path / "x.npz"), "--text", str(tmp_path / "latin1.txt")])
    assert bad.exit_code == 2 and "latin1.txt: cannot read it as UTF-8 text" in bad.output
    assert not (tmp_path / "x.npz").exists()

    # A line folder's transcriptions are text too; the model it replaces is kept one step back.
    lines = tmp_path / "lines"
    lines.mkdir()
    for i, line in enumerate(TEXT):
        (lines / f"l{i}.gt.txt").write_text(line + "\n", encoding="utf-8")
        (lines / f"l{i}.png").write_bytes(b"")  # only the transcriptions are read
    before = (model / char_lm.FILE_NAME).read_bytes()
    (model / "best").mkdir()  # a training run's best model, kept beside the last
    (model / "best" / "best.json").write_text('{"step": 4}')
    (model / "best" / char_lm.FILE_NAME).write_bytes(before)  # the one it read with until now
    again = CliRunner().invoke(app, ["build-lm", str(model), "--text", str(lines), "--order", "3"])
    assert again.exit_code == 0, again.output
    assert char_lm.load(model / char_lm.FILE_NAME).order == 3
    assert (model / "char_lm.previous.npz").read_bytes() == before
    # ... and the run's best model reads with it too.
    assert (model / "best" / char_lm.FILE_NAME).read_bytes() == (model / char_lm.FILE_NAME).read_bytes()
    assert (model / "best" / "char_lm.previous.npz").read_bytes() == before  # kept one step back too
    # A folder that holds no model would never be read from: refused.
    stray = CliRunner().invoke(app, ["build-lm", str(lines), "--text", str(text)])
    assert stray.exit_code == 2 and "holds no model" in stray.output
    assert not (lines / char_lm.FILE_NAME).exists()


def test_build_lm_counts_the_default_text_with_transcriptions_when_asked(tmp_path, monkeypatch):
    from pipeline.cli import app
    from pipeline.training import corpus

    # The default text is a million lines of books and prose: a stand-in keeps the test quick.
    monkeypatch.setattr(corpus, "language_model_lines", lambda generated: ["quartermaster general"] * 3)
    text = tmp_path / "transcribed.txt"
    text.write_text("\n".join(TEXT) + "\n", encoding="utf-8")

    def built(*flags: str) -> char_lm.CharLM:
        out = CliRunner().invoke(app, ["build-lm", str(tmp_path / "lm.npz"), "--order", "4", *flags])
        assert out.exit_code == 0, out.output
        return char_lm.load(tmp_path / "lm.npz")

    both = built("--text", str(text), "--default-text")
    alone = built("--text", str(text))
    default = built()
    assert both.text_logp("quarter") > alone.text_logp("quarter")  # only the default text has it
    assert both.text_logp("corporeal") > default.text_logp("corporeal")  # only the transcriptions
    assert alone.text_logp("corporeal") > default.text_logp("corporeal")


def test_the_hash_tables_find_every_key_and_no_other():
    from pipeline.char_lm import _slot, hash_table

    rng = np.random.default_rng(0)
    # Keys as the model writes them: up to 7 base-256 digits behind a leading 1, many alike.
    keys = np.unique(rng.integers(256, 1 << 56, 5000, dtype=np.int64))
    keys = np.concatenate([keys, np.arange(256, 2256, dtype=np.int64)])
    values = rng.random(len(keys)).astype(np.float32)
    slots, slot_values = hash_table(keys, values)
    assert (slots == -1).sum() >= len(slots) // 3  # room left: a probe always ends
    found = np.array([_slot(slots, k) for k in keys])
    assert (slots[found] == keys).all() and (slot_values[found] == values).all()
    for absent in (1, 255, 2256, int(keys.max()) + 1):
        assert slots[_slot(slots, absent)] == -1


def test_the_readmes_build_lm_recipe_counts_only_the_lines_trained_on(tmp_path):
    """The README built the tuned model's language model from the whole line folder, held-out
    lines included: their CER was then measured by a model that had read them."""
    import re
    import shlex
    import subprocess
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    recipe = re.search(r"```\n(quire lines scans/.*?)```", readme, re.DOTALL)
    assert recipe is not None
    commands = [line.split("  #")[0] for line in recipe.group(1).splitlines()
                if line.strip() and not line.startswith("#")]
    build = next(c for c in commands if c.startswith("quire build-lm"))
    shell = [c for c in commands if not c.startswith("quire ")]  # the recipe's own steps around quire's
    (tmp_path / "my-lines").mkdir()
    (tmp_path / "my-model" / "held-out").mkdir(parents=True)
    for name, text in (("a", "trained on"), ("b", "kept out"), ("c", "no newline")):
        (tmp_path / "my-lines" / f"{name}.gt.txt").write_text(text + ("" if name == "c" else "\n"), encoding="utf-8")
    (tmp_path / "my-model" / "held-out" / "b.gt.txt").write_text("kept out\n", encoding="utf-8")
    for command in shell:
        subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True)
    args = shlex.split(build)
    given = tmp_path / args[args.index("--text") + 1]
    files = sorted(given.glob("*.gt.txt")) if given.is_dir() else [given]
    counted = [line for f in files for line in f.read_text(encoding="utf-8").splitlines()]
    assert counted == ["trained on", "no newline"]
