"""Choose how doubtful lines are re-read (`retry_below`) on held-out synthetic lines, never the dev set.

Usage: python bench/bench_retry.py [--lines 1000] [--model quire-line-v1]
       [--thresholds 0,0.8,0.9,0.95,0.98,1] [--decode rescore,ctc] [--seed-offset 3]
Prints CER (all lines, then per kind: printed, receipt, handwritten) and lines/s for each decoding
and threshold on lines from a seed that neither training, its validation nor the other benches
draw (VAL_SEED + 3, or + another offset for a second sample), cut to their ink as a segmenter
hands them over.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_trim import synthetic_samples
from pipeline.training.evaluate import cer
from pipeline.training.validation import VAL_SEED

RETRY_SEED = VAL_SEED + 3  # bench_trim and bench_weight_average draw VAL_SEED + 2
KINDS = ("printed", "receipt", "handwritten")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="quire-line-v1")
    p.add_argument("--lines", type=int, default=1000)
    p.add_argument("--thresholds", default="0,0.8,0.9,0.95,0.98,1")
    p.add_argument("--decode", default="rescore,ctc")
    p.add_argument("--seed-offset", type=int, default=RETRY_SEED - VAL_SEED,
                   help="lines from seed VAL_SEED + this (0 is training's validation, 1 and 2 other benches')")
    args = p.parse_args()
    if args.seed_offset < 1:
        p.error("--seed-offset 0 gives the lines training validates on; use another")
    from pipeline.recognize import Recognizer

    seed = VAL_SEED + args.seed_offset
    samples = synthetic_samples(args.lines, 32, 1024, seed=seed)
    crops, refs = [s.image for s in samples], [s.text for s in samples]
    kinds = {kind: [i for i, s in enumerate(samples) if s.kind == kind] for kind in KINDS}
    print(f"{args.lines} held-out synthetic lines (seed {seed}: "
          + ", ".join(f"{len(v)} {k}" for k, v in kinds.items()) + f"), model {args.model}")
    print(f"{'decode':<8} {'retry_below':>11} {'CER':>7}" + "".join(f" {k:>11}" for k in KINDS)
          + f" {'lines/s':>8}")
    for decode in args.decode.split(","):
        for threshold in (float(t) for t in args.thresholds.split(",")):
            recognizer = Recognizer(args.model, device="cpu", decode=decode, retry_below=threshold)
            started = time.perf_counter()
            hyps = [r.text for r in recognizer.recognize(crops)]
            seconds = time.perf_counter() - started
            per_kind = "".join(
                f" {cer([refs[i] for i in kinds[k]], [hyps[i] for i in kinds[k]]) if kinds[k] else 0:>11.2%}"
                for k in KINDS
            )
            print(f"{decode:<8} {threshold:>11.2f} {cer(refs, hyps):>7.2%}{per_kind} {len(crops) / seconds:>8.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
