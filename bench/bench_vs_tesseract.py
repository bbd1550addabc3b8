"""Quire's recognizer against Tesseract on the same real line images, measured side by side in one run.

Usage: python bench/bench_vs_tesseract.py [--data ../shared/data/dev] [--model quire-line-v1]
       [--sets printed,receipts,handwritten] [--repeat 3] [--quantize] [--decode rescore,ctc]
       [--retry-below 0.95,0] [--precision auto,fp32] [--language-model on,off]
Tesseract runs with --psm 7 (one line), two processes in parallel (one per core); Quire runs
batched on the same cores. Prints CER (receipts folded: case- and space-insensitive), lines per
second for both, the speed ratio, and the CER of the 90% most confident lines. Several
decodings (--decode rescore,ctc) or precisions (--precision bf16,fp32) are timed in the same run, so
their ratio is side by side too.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.config import DECODINGS, RETRY_BELOW
from pipeline.precision import PRECISIONS
from pipeline.training.evaluate import cer, load_pairs, read_gray

FOLDED = {"receipts"}


def tesseract_line(path: Path) -> str:
    out = subprocess.run(
        ["tesseract", str(path), "-", "--psm", "7", "-l", "eng"],
        capture_output=True, text=True, check=False,
    )
    return out.stdout.strip()


def run_tesseract(paths: list[Path], workers: int) -> tuple[list[str], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        texts = list(pool.map(tesseract_line, paths))
    return texts, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"))
    parser.add_argument("--model", default="quire-line-v1")
    parser.add_argument("--sets", default="printed,receipts,handwritten")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timing repeats, Tesseract and Quire taking turns; the best of each is kept")
    parser.add_argument("--quantize", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decode", default="auto",
                        help=f"one of {', '.join(DECODINGS)}, or several comma-separated (a row each)")
    parser.add_argument("--retry-below", default=str(RETRY_BELOW),
                        help="re-read lines under this confidence stretched (0: off); several "
                             "comma-separated give a row each, e.g. 0.95,0")
    parser.add_argument("--precision", default="auto",
                        help=f"one of {', '.join(PRECISIONS)}, or several comma-separated (a row each)")
    parser.add_argument("--language-model", default="on",
                        help="on (the model's char_lm.npz, if it has one) or off; on,off gives a row each")
    args = parser.parse_args()
    decodings = args.decode.split(",")
    retries = [float(r) for r in args.retry_below.split(",")]
    if unknown := [d for d in decodings if d not in DECODINGS]:
        parser.error(f"--decode: unknown {', '.join(unknown)}; choose from {', '.join(DECODINGS)}")
    precisions = args.precision.split(",")
    if unknown := [p for p in precisions if p not in PRECISIONS]:
        parser.error(f"--precision: unknown {', '.join(unknown)}; choose from {', '.join(PRECISIONS)}")

    language_models = args.language_model.split(",")
    if unknown := [m for m in language_models if m not in ("on", "off")]:
        parser.error(f"--language-model: unknown {', '.join(unknown)}; choose on or off")

    from pipeline.recognize import Recognizer

    recognizers = [Recognizer(args.model, device="cpu", batch_size=args.batch_size, quantize=args.quantize,
                              decode=d, retry_below=r, precision=p, language_model=m == "on")
                   for d in decodings for r in retries for p in precisions for m in language_models]
    have_tesseract = shutil.which("tesseract") is not None
    header = f"{'set':<12} {'decode':<9} {'retry':>5} {'prec':>4} {'lm':>3} {'lines':>5} {'quire CER':>10} {'top90 CER':>10} {'quire l/s':>10}"
    header += f" {'tess CER':>9} {'tess l/s':>9} {'speed x':>8}" if have_tesseract else ""
    print(f"model {args.model}{' (int8)' if args.quantize else ''}; tesseract: {'yes' if have_tesseract else 'not installed'}")
    print(header)
    for name in args.sets.split(","):
        pairs = load_pairs(Path(args.data) / name)
        fold = name in FOLDED
        refs = [t for _, t in pairs]
        images = [read_gray(p) for p, _ in pairs]
        # Tesseract and each reader take turns, repeat by repeat, so a busy spell of the machine
        # falls on all of them rather than on whichever ran then; the best of each is kept.
        best_tess, tess = float("inf"), []
        best_quire = [float("inf")] * len(recognizers)
        results = [[] for _ in recognizers]
        for _ in range(args.repeat):
            if have_tesseract:
                tess, seconds = run_tesseract([p for p, _ in pairs], workers=2)
                best_tess = min(best_tess, seconds)
            for k, recognizer in enumerate(recognizers):
                started = time.perf_counter()
                results[k] = recognizer.recognize(images)
                best_quire[k] = min(best_quire[k], time.perf_counter() - started)
        for recognizer, read, best in zip(recognizers, results, best_quire):
            hyps = [r.text for r in read]
            ranked = sorted(range(len(pairs)), key=lambda i: -read[i].confidence)[: max(1, int(0.9 * len(pairs)))]
            top90 = cer([refs[i] for i in ranked], [hyps[i] for i in ranked], fold)
            row = (f"{name:<12} {recognizer.decode:<9} {recognizer.retry_below:>5.2f} {'bf16' if recognizer.bf16 else 'fp32':>4} {'on' if recognizer.fusion else 'off':>3} {len(pairs):>5} {cer(refs, hyps, fold):>10.2%} {top90:>10.2%}"
                   f" {len(pairs) / best:>10.1f}")
            if have_tesseract:
                row += f" {cer(refs, tess, fold):>9.2%} {len(pairs) / best_tess:>9.1f} {best_tess / best:>8.2f}"
            print(row)


if __name__ == "__main__":
    main()
