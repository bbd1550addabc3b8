"""Choose how doubtful lines are re-read (`retry_below`) on held-out synthetic lines, never the dev set.

Usage: python bench/bench_retry.py [--lines 1000] [--model quire-line-v1]
       [--thresholds 0,0.8,0.9,0.95,0.98,1] [--decode rescore,ctc]
Prints CER and lines/s for each decoding and threshold on lines from a seed that neither training,
its validation nor the other benches draw, cut to their ink as a segmenter hands them over.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_trim import synthetic_lines
from pipeline.training.evaluate import cer
from pipeline.training.train import VAL_SEED

RETRY_SEED = VAL_SEED + 3  # bench_trim and bench_weight_average draw VAL_SEED + 2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="quire-line-v1")
    p.add_argument("--lines", type=int, default=1000)
    p.add_argument("--thresholds", default="0,0.8,0.9,0.95,0.98,1")
    p.add_argument("--decode", default="rescore,ctc")
    args = p.parse_args()
    from pipeline.recognize import Recognizer

    crops, refs = synthetic_lines(args.lines, 32, 1024, seed=RETRY_SEED)
    print(f"{args.lines} held-out synthetic lines (seed {RETRY_SEED}), model {args.model}")
    print(f"{'decode':<8} {'retry_below':>11} {'CER':>7} {'lines/s':>8}")
    for decode in args.decode.split(","):
        for threshold in (float(t) for t in args.thresholds.split(",")):
            recognizer = Recognizer(args.model, device="cpu", decode=decode, retry_below=threshold)
            started = time.perf_counter()
            hyps = [r.text for r in recognizer.recognize(crops)]
            seconds = time.perf_counter() - started
            print(f"{decode:<8} {threshold:>11.2f} {cer(refs, hyps):>7.2%} {len(crops) / seconds:>8.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
