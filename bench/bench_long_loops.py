"""How well models read hands whose core is small between long ascenders and descenders.

Usage: python bench/bench_long_loops.py [--model quire-line-v1[,runs/x/quire-line-v1]]
       [--lines 500] [--factors 1,1.5,2] [--seed-offset 7]
Draws held-out synthetic hand lines as fonts draw them (no `long_loops`), then stretches the rows
above and below each line's core by each factor (`degrade.taller_loops`): at 2x the core is about
a quarter of the line's height, as in IAM and Bentham cursive rather than in fonts. Prints each
model's CER (rescore decoding, the default re-read) per factor, all models on the same lines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_trim import synthetic_samples
from pipeline.training import degrade
from pipeline.training.evaluate import cer
from pipeline.training.validation import VAL_SEED

# bench_trim and bench_weight_average draw VAL_SEED + 2, bench_retry + 3 (and + 5 for a second sample).
LOOPS_SEED_OFFSET = 7


def font_hands(count: int, seed: int) -> tuple[list, list[str]]:
    """Held-out hand lines with the fonts' own proportions, cut past their ink."""
    share = degrade.LONG_LOOPS_SHARE
    degrade.LONG_LOOPS_SHARE = 0.0
    try:
        samples = synthetic_samples(count, 32, 1024, seed=seed, mix={"handwritten": 1.0})
    finally:
        degrade.LONG_LOOPS_SHARE = share
    return [s.image for s in samples], [s.text for s in samples]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="quire-line-v1", help="comma-separated models, a column each")
    p.add_argument("--lines", type=int, default=500)
    p.add_argument("--factors", default="1,1.5,2", help="how many times taller the loops are drawn")
    p.add_argument("--seed-offset", type=int, default=LOOPS_SEED_OFFSET,
                   help="lines from seed VAL_SEED + this (0 is training's validation)")
    args = p.parse_args()
    if args.seed_offset < 1:
        p.error("--seed-offset 0 gives the lines training validates on; use another")
    from pipeline.recognize import Recognizer

    crops, refs = font_hands(args.lines, VAL_SEED + args.seed_offset)
    factors = [float(f) for f in args.factors.split(",")]
    models = args.model.split(",")
    print(f"{args.lines} held-out synthetic hand lines (seed {VAL_SEED + args.seed_offset}), CER by loop height")
    print(f"{'factor':>6}" + "".join(f" {m[-34:]:>34}" for m in models))
    readers = [Recognizer(m, device="cpu") for m in models]
    for factor in factors:
        stretched = crops if factor == 1 else [degrade.taller_loops(c, factor) for c in crops]
        row = [cer(refs, [r.text for r in reader.recognize(stretched)]) for reader in readers]
        print(f"{factor:>6.2f}" + "".join(f" {c:>34.2%}" for c in row), flush=True)


if __name__ == "__main__":
    main()
