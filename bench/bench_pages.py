"""Whole pages: `quire run` against Tesseract on the same real scanned PDFs, side by side in one run.

Usage: python bench/bench_pages.py [--data ../shared/data/dev] [--model quire-line-v1]
       [--decode rescore,ctc] [--retry-below 0.95,0] [--repeat 3] [--dpi 300]
       [--pages-from embedded,poppler] [--language-model on,off]

Both sides start from the PDF and end with page text, so both are timed from rendering on:
Quire runs its whole in-process pipeline (render, deskew, segment, recognize, store rows and
exports in a fresh embedded home each repeat; the model is loaded once beforehand), Tesseract
renders with pdftoppm at the same dpi and reads each page with its own layout analysis (--psm 3),
as many pages at a time as there are cores, the cores shared out as OpenMP threads (a one-page
document gets both cores; Tesseract's unlimited default ran 5x slower here). Where `<stem>.gt.txt` holds the page
text, prints bag-of-words precision, recall and F1 (NFKC, lower case, \\w+ words): recall is the
share of the document's words a full-text search finds.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import DECODINGS, RETRY_BELOW, Settings
from pipeline.exporters import parse_formats
from pipeline.runner import LocalRunner


def words(text: str) -> Counter:
    return Counter(re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower()))


def bag_of_words(truth: str, read: str) -> tuple[float, float, float]:
    """Precision, recall and F1 of the words read against the true words, counted with repeats."""
    want, got = words(truth), words(read)
    hits = sum((want & got).values())
    precision = hits / max(1, sum(got.values()))
    recall = hits / max(1, sum(want.values()))
    return precision, recall, 2 * precision * recall / max(1e-9, precision + recall)


def quire_pages(pdf: Path, recognizer, dpi: int, embedded: bool = True) -> tuple[str, float, int]:
    """Text, seconds and page count of one fresh `quire run` of `pdf` (nothing reused); with
    `embedded` False every page is rendered by poppler, even one that is a single scan."""
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), device="cpu", render={"dpi": dpi, "embedded_scans": embedded},
                            recognize={"decode": recognizer.decode, "retry_below": recognizer.retry_below})
        out = Path(home) / "out"
        runner = LocalRunner(settings, exporters=parse_formats("txt"), out_dir=out,
                             recognizer_factory=lambda: recognizer)
        summary = runner.run([pdf])
        if summary.failures:
            raise SystemExit(f"quire failed on {pdf}: {summary.failures[0].error}")
        return (out / f"{pdf.stem}.txt").read_text(encoding="utf-8"), summary.seconds, summary.pages


def tesseract_page(image: Path, threads: int) -> str:
    env = dict(os.environ, OMP_THREAD_LIMIT=str(threads))
    out = subprocess.run(["tesseract", str(image), "-", "--psm", "3", "-l", "eng"],
                         capture_output=True, text=True, check=True, env=env)
    return out.stdout


def tesseract_pages(pdf: Path, dpi: int) -> tuple[str, float]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", str(pdf), f"{tmp}/page"], check=True)
        pages = sorted(Path(tmp).glob("page*.png"))
        cores = os.cpu_count() or 1
        at_once = min(cores, len(pages))
        with ThreadPoolExecutor(at_once) as pool:
            texts = list(pool.map(tesseract_page, pages, [max(1, cores // at_once)] * len(pages)))
    return "\n".join(texts), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"))
    parser.add_argument("--model", default="quire-line-v1")
    parser.add_argument("--decode", default="rescore,ctc", help="comma-separated decodings, a row each")
    parser.add_argument("--retry-below", default=str(RETRY_BELOW),
                        help="re-read lines under this confidence stretched (0: off); several "
                             "comma-separated give a row each")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats; the best is kept")
    parser.add_argument("--dpi", type=int, default=300)
    parser.add_argument("--pages-from", default="embedded",
                        help="embedded (a page that is one scan is taken from the file, the "
                             "default), poppler (every page rendered), or both, comma-separated")
    parser.add_argument("--language-model", default="on",
                        help="on (the model's char_lm.npz, if it has one) or off; on,off gives a row each")
    args = parser.parse_args()
    sources = args.pages_from.split(",")
    language_models = args.language_model.split(",")
    if unknown := [m for m in language_models if m not in ("on", "off")]:
        parser.error(f"--language-model: unknown {', '.join(unknown)}; choose on or off")
    if unknown := [s for s in sources if s not in ("embedded", "poppler")]:
        parser.error(f"--pages-from: unknown {', '.join(unknown)}; choose embedded or poppler")
    decodings = args.decode.split(",")
    if unknown := [d for d in decodings if d not in DECODINGS]:
        parser.error(f"--decode: unknown {', '.join(unknown)}; choose from {', '.join(DECODINGS)}")
    pdfs = sorted((Path(args.data) / "pdfs").glob("*.pdf"))
    if not pdfs:
        raise SystemExit(f"no PDFs under {args.data}/pdfs")

    from pipeline.recognize import Recognizer

    # The runner is handed these readers, so they must carry the settings being measured.
    recognizers = [Recognizer(args.model, device="cpu", decode=d, retry_below=float(r),
                              language_model=m == "on")
                   for d in decodings for r in args.retry_below.split(",") for m in language_models]
    print(f"model {args.model}, {args.dpi} dpi, best of {args.repeat}; seconds from the PDF to page text")
    print(f"{'document':<34} {'pages':>5} {'reader':<26} {'seconds':>8} {'s/page':>7} "
          f"{'speed x':>8} {'P':>6} {'R':>6} {'F1':>6}")
    for pdf in pdfs:
        truth_path = pdf.with_suffix(".gt.txt")
        truth = truth_path.read_text(encoding="utf-8") if truth_path.exists() else None
        tess_text, tess_s = "", float("inf")
        for _ in range(args.repeat):
            tess_text, seconds = tesseract_pages(pdf, args.dpi)
            tess_s = min(tess_s, seconds)
        rows = []
        for recognizer in recognizers:
            for source in sources:
                text, best, pages = "", float("inf"), 0
                for _ in range(args.repeat):
                    text, seconds, pages = quire_pages(pdf, recognizer, args.dpi, source == "embedded")
                    best = min(best, seconds)
                label = f"quire {recognizer.decode} r{recognizer.retry_below:g}"
                label += " lm" if recognizer.fusion else ""
                rows.append((label + (" poppler" if source == "poppler" else ""), text, best))
        rows.append(("tesseract psm 3", tess_text, tess_s))
        for reader, text, seconds in rows:
            score = "".join(f" {v:>6.1%}" for v in bag_of_words(truth, text)) if truth else "      -" * 3
            print(f"{pdf.name:<34} {pages:>5} {reader:<26} {seconds:>8.2f} {seconds / pages:>7.2f} "
                  f"{tess_s / seconds:>7.2f}x{score}")


if __name__ == "__main__":
    main()
