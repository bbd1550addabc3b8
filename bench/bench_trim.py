"""What cutting each batch to its widest line (line_image.trim_padding) buys and costs.

Reads the same lines twice with one loaded model, once cut (what recognition does for encoders
that read any width) and once padded to the processor's full width: real dev lines and held-out
synthetic lines, printing CER and lines per second side by side.

    .venv/bin/python bench/bench_trim.py --decode rescore,ctc --synthetic 1000
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import fastest
from pipeline.line_image import inked_width
from pipeline.training.evaluate import cer, load_pairs, read_gray
from pipeline.training.synth import LineSample, LineSynthesizer
from pipeline.training.validation import VAL_SEED

FOLDED = {"receipts"}
BENCH_SEED = VAL_SEED + 2  # neither training nor its validation draws these lines


def synthetic_samples(
    count: int, height: int, width: int, seed: int = BENCH_SEED, mix: dict[str, float] | None = None
) -> list[LineSample]:
    """Held-out synthetic lines (of the kinds in `mix`, default the training mix), each cut past
    its ink (as a segmenter would hand it over)."""
    synth = LineSynthesizer(height, width, seed=seed, mix=mix)
    samples = [synth.sample() for _ in range(count)]
    return [replace(s, image=s.image[:, : max(1, inked_width(s.image))]) for s in samples]


def synthetic_lines(
    count: int, height: int, width: int, seed: int = BENCH_SEED
) -> tuple[list[np.ndarray], list[str]]:
    """Held-out synthetic lines as crops (their white tail cut, as a segmenter would hand them)."""
    samples = synthetic_samples(count, height, width, seed)
    return [s.image for s in samples], [s.text for s in samples]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="quire-line-v1")
    p.add_argument("--decode", default="rescore,ctc", help="comma-separated decodings, a row each")
    p.add_argument("--dev", type=Path, default=Path("../shared/data/dev"), help="real line folders")
    p.add_argument("--sets", default="printed,receipts,handwritten")
    p.add_argument("--synthetic", type=int, default=1000, help="held-out synthetic lines (0: none)")
    p.add_argument("--repeat", type=int, default=3, help="timing repeats; the best is kept")
    args = p.parse_args()

    from pipeline.recognize import Recognizer

    sets = {name: load_pairs(args.dev / name) for name in args.sets.split(",")}
    data = {name: ([read_gray(path) for path, _ in pairs], [t for _, t in pairs]) for name, pairs in sets.items()}
    print(f"model {args.model}; lines/s best of {args.repeat}; CER folded on {', '.join(FOLDED)}")
    print(f"{'set':<12} {'decode':<8} {'lines':>5} {'CER cut':>8} {'CER full':>9} {'l/s cut':>8} {'l/s full':>9} {'speed x':>8}")
    for decode in args.decode.split(","):
        recognizer = Recognizer(args.model, device="cpu", decode=decode, retry_below=0.0)  # trim alone
        if args.synthetic and "synthetic" not in data:
            data["synthetic"] = synthetic_lines(args.synthetic, recognizer.input.height, recognizer.input.width)
        for name, (images, refs) in data.items():
            row = {}
            for trim in (True, False):
                recognizer.trim = trim
                best, results = fastest(partial(recognizer.recognize, images), args.repeat, warm_up=False)
                row[trim] = (cer(refs, [r.text for r in results], name in FOLDED), len(images) / best)
            print(f"{name:<12} {decode:<8} {len(images):>5} {row[True][0]:>8.2%} {row[False][0]:>9.2%}"
                  f" {row[True][1]:>8.1f} {row[False][1]:>9.1f} {row[True][1] / row[False][1]:>8.2f}")


if __name__ == "__main__":
    main()
