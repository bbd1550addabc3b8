"""How the real dev hands differ from the synthetic hands the model learns from, as the model sees them.

Usage: python bench/bench_hand_gap.py [--lines 500] [--model quire-line-v1] [--no-read]
       [--dev ../shared/data/dev]

Every line is prepared as recognition prepares it (whitened, cut to its ink, sheared upright,
letterboxed 32 px high) and measured four ways:
  stroke   the strokes' mean width in pixels (twice the ink's area over its outline's length)
  fill     the share of the inked box (inked width x height) that is ink
  px/char  inked width per character of the transcription: how closely it is written
  core     the core (x-height band, `degrade.core_rows`) as a share of the height
It prints the synthetic hands' 5/25/50/75/95th percentiles and where each real line falls among
them: a real line under the 5th percentile shows something the generator seldom draws. Unless
--no-read, the model then reads the synthetic lines and the CER is printed per fifth of each
measure, which says whether that property makes a line hard for the model at all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_trim import synthetic_samples
from pipeline.line_image import inked_width
from pipeline.model_input import InputShape, fit_lines
from pipeline.training.degrade import core_rows
from pipeline.training.evaluate import cer, load_pairs, read_gray
from pipeline.training.validation import VAL_SEED

# bench_trim draws VAL_SEED + 2, bench_retry + 3 and + 5, bench_finetune + 5, + 6 and + 8,
# bench_long_loops + 7.
GAP_SEED = VAL_SEED + 9
MEASURES = ("stroke", "fill", "px/char", "core")
LINE = InputShape(32, 1024, 1, (0.5,), (0.5,))


def measure(line: np.ndarray, text: str) -> tuple[float, float, float, float]:
    """The four measures of one letterboxed line (see the module's docstring)."""
    _, ink = cv2.threshold(line, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(ink, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    outline = sum(cv2.arcLength(c, True) for c in contours)
    area = float(ink.sum())
    width = max(1, inked_width(line))
    top, bottom = core_rows(line)
    return (
        2 * area / max(outline, 1.0),
        area / (width * line.shape[0]),
        width / max(1, len(text)),
        (bottom - top) / line.shape[0],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=500, help="synthetic hand lines to draw")
    p.add_argument("--model", default="quire-line-v1", help="reads the synthetic lines")
    p.add_argument("--no-read", action="store_true", help="measure only; do not read the lines")
    p.add_argument("--dev", type=Path, default=Path("../shared/data/dev"))
    args = p.parse_args()

    pairs = load_pairs(args.dev / "handwritten")
    if not pairs:
        sys.exit(f"no line pairs in {args.dev / 'handwritten'}")
    real_lines = fit_lines([read_gray(path) for path, _ in pairs], LINE)
    real = np.array([measure(line, text) for line, (_, text) in zip(real_lines, pairs)])

    samples = synthetic_samples(args.lines, LINE.height, LINE.width, seed=GAP_SEED, mix={"handwritten": 1.0})
    crops = [s.image for s in samples]
    synthetic = np.array([measure(line, s.text) for line, s in zip(fit_lines(crops, LINE), samples)])

    print(f"{len(pairs)} dev hand lines against {len(samples)} synthetic hands, as the model sees them (32 px high)")
    print(f"{'measure':8s} {'synthetic p5 / p25 / p50 / p75 / p95':>38s}   real lines (their percentile among the synthetic)")
    for m, name in enumerate(MEASURES):
        quantiles = " / ".join(f"{v:.2f}" for v in np.percentile(synthetic[:, m], [5, 25, 50, 75, 95]))
        placed = ", ".join(
            f"{v:.2f} ({100 * (synthetic[:, m] < v).mean():.0f})" for v in real[:, m]
        )
        print(f"{name:8s} {quantiles:>38s}   {placed}")
    print("real lines: " + ", ".join(path.name for path, _ in pairs))

    if args.no_read:
        return
    from pipeline.recognize import Recognizer

    recognizer = Recognizer(args.model)
    read = [line.text for line in recognizer.recognize(crops)]
    truth = [s.text for s in samples]
    print(f"\n{args.model} on the synthetic hands: CER {100 * cer(truth, read):.2f} %; by fifths of each measure, low to high:")
    for m, name in enumerate(MEASURES):
        edges = np.percentile(synthetic[:, m], [20, 40, 60, 80])
        fifth = np.digitize(synthetic[:, m], edges)
        cers = []
        for k in range(5):
            idx = np.flatnonzero(fifth == k)
            cers.append(f"{100 * cer([truth[i] for i in idx], [read[i] for i in idx]):5.2f} %")
        print(f"{name:8s} {' | '.join(cers)}   (fifths split at {', '.join(f'{e:.2f}' for e in edges)})")


if __name__ == "__main__":
    main()
