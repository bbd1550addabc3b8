"""Choose the language model's weight and bonus on text it has never seen, then check the dev lines.

Usage: python bench/bench_language_model.py [--lines 600] [--model quire-line-v1]
       [--weights 0:0,0.3:0.6,0.5:0.5] [--order 6] [--seed N] [--decode rescore|ctc]
       [--dev ../shared/data/dev]

The shipped char_lm.npz has read every book passage and prose line that synthetic lines are drawn
from, so synthetic lines would flatter it. Here every tenth passage and prose line is held out: a
language model is built from the rest (as `quire build-lm` builds the shipped one), and synthetic
lines are drawn from the held-out text only (seed VAL_SEED + 4, which no other bench draws). Each
weight:bonus pair (0:0 is no language model) gets a row: CER per kind, and lines/s. The dev rows
then read the real lines with the same pairs and this held-out model, as evidence that the choice
carries over (6 hand lines: one character is 0.7 %).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_trim import synthetic_samples
from pipeline import char_lm
from pipeline.training import corpus
from pipeline.training.evaluate import cer, load_pairs, read_line_images
from pipeline.training.validation import VAL_SEED

LM_BENCH_SEED = VAL_SEED + 4  # bench_trim and bench_weight_average draw + 2, bench_retry + 3
KINDS = ("printed", "receipt", "handwritten")
FOLDED = {"receipts"}


def split_sources() -> tuple[dict, dict]:
    """(the text the model is built from, the held-out text lines are drawn from): each a
    replacement for corpus.book_passages and corpus.prose_lines."""
    books, prose = corpus.book_passages(), corpus.prose_lines()
    kept = {"book_passages": tuple(p for i, p in enumerate(books) if i % 10),
            "prose_lines": tuple(p for i, p in enumerate(prose) if i % 10)}
    held = {"book_passages": books[::10], "prose_lines": prose[::10]}
    return kept, held


def with_sources(sources: dict, make):
    """Run `make()` with corpus drawing only from `sources`."""
    saved = {name: getattr(corpus, name) for name in sources}
    try:
        for name, lines in sources.items():
            setattr(corpus, name, lambda lines=lines: lines)
        return make()
    finally:
        for name, fn in saved.items():
            setattr(corpus, name, fn)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="quire-line-v1")
    p.add_argument("--lines", type=int, default=600)
    p.add_argument("--weights", default="0:0,0.3:0.6,0.5:0.5", help="weight:bonus pairs, a row each")
    p.add_argument("--order", type=int, default=char_lm.DEFAULT_ORDER)
    p.add_argument("--decode", default="rescore", choices=("rescore", "ctc"))
    p.add_argument("--seed", type=int, default=LM_BENCH_SEED, help="a second sample: another seed no bench draws")
    p.add_argument("--dev", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "dev")
    args = p.parse_args()
    pairs = [tuple(float(x) for x in w.split(":")) for w in args.weights.split(",")]

    from pipeline.ctc_beam import Fusion
    from pipeline.recognize import Recognizer
    from pipeline.training.cli_build_lm import _model_alphabet

    kept, held = split_sources()
    started = time.perf_counter()
    lm = with_sources(kept, lambda: char_lm.build(corpus.language_model_lines(seed=1), args.order,
                                                  alphabet=_model_alphabet(args.model)))
    print(f"held-out language model: order {args.order}, {len(lm.ngram_keys):,} n-grams "
          f"({time.perf_counter() - started:.0f} s); held out {len(held['book_passages'])} passages, "
          f"{len(held['prose_lines'])} prose lines")
    samples = with_sources(held, lambda: synthetic_samples(args.lines, 32, 1024, seed=args.seed))
    kinds = {kind: [i for i, s in enumerate(samples) if s.kind == kind] for kind in KINDS}
    crops, refs = [s.image for s in samples], [s.text for s in samples]
    dev = {}
    for name in ("printed", "receipts", "handwritten"):
        if (args.dev / name).is_dir():
            found = load_pairs(args.dev / name)
            _, images, _ = read_line_images([path for path, _ in found])
            dev[name] = ([text for _, text in found], images)

    recognizer = Recognizer(args.model, device="cpu", decode=args.decode)
    symbols = lm.symbol_of_tokens(recognizer.processor.tokenizer.get_vocab(),
                                  int(recognizer.model.encoder.config.ctc_vocab_size))
    print(f"{len(samples)} synthetic lines of held-out text (seed {args.seed}: "
          + ", ".join(f"{len(v)} {k}" for k, v in kinds.items()) + f"), model {args.model}, decode {args.decode}")
    print(f"{'weight':>6} {'bonus':>5} {'CER':>7}" + "".join(f" {k:>11}" for k in KINDS)
          + f" {'lines/s':>8}" + "".join(f" {'dev ' + k:>16}" for k in dev))
    for weight, bonus in pairs:
        recognizer.fusion = Fusion(lm, symbols, weight, bonus) if weight or bonus else None
        started = time.perf_counter()
        hyps = [r.text for r in recognizer.recognize(crops)]
        seconds = time.perf_counter() - started
        row = f"{weight:>6.2f} {bonus:>5.2f} {cer(refs, hyps):>7.2%}"
        row += "".join(f" {cer([refs[i] for i in kinds[k]], [hyps[i] for i in kinds[k]]) if kinds[k] else 0:>11.2%}"
                       for k in KINDS)
        row += f" {len(crops) / seconds:>8.1f}"
        for name, (texts, images) in dev.items():
            read = [r.text for r in recognizer.recognize(images)]
            row += f" {cer(texts, read, name in FOLDED):>16.2%}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
