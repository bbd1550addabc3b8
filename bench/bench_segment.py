"""Seconds per page for segment_page on generated 300 dpi pages and, where present, real PDFs."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.segment import segment_page
from tests.pagegen import make_page

REAL_PDFS = Path("/work/shared/data/dev/pdfs")


def timed(image: np.ndarray, dpi: int, repeat: int) -> tuple[float, int, float]:
    """Median seconds of `repeat` runs, the number of lines and the deskew angle."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        seg = segment_page(image, dpi=dpi)
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(seg.lines), seg.angle


def generated(repeat: int) -> list[tuple[str, np.ndarray, int]]:
    pages = [
        ("one_column", 0.0, False),
        ("two_columns", 0.0, False),
        ("two_columns", 3.0, True),
        ("picture", 0.0, True),
        ("one_column", -5.0, False),
    ]
    return [
        (
            f"gen {kind} {angle:+g}{' scan' if scan else ''}",
            make_page(kind, seed=0, angle=angle, scan=scan).image,
            300,
        )
        for kind, angle, scan in pages
    ]


def real(folder: Path, tmp: Path) -> list[tuple[str, np.ndarray, int]]:
    out = []
    for pdf in sorted(folder.glob("*.pdf")):
        prefix = tmp / pdf.stem
        subprocess.run(["pdftoppm", "-r", "300", "-png", str(pdf), str(prefix)], check=True)
        for png in sorted(tmp.glob(f"{pdf.stem}-*.png")):
            page = png.stem.rsplit("-", 1)[1]
            out.append(
                (f"{pdf.name} p{int(page)}", np.asarray(Image.open(png).convert("RGB")), 300)
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs per page; the median is shown")
    parser.add_argument("--pdfs", type=Path, default=REAL_PDFS, help="folder of real PDFs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pages = generated(args.repeat)
        if args.pdfs.is_dir():
            pages += real(args.pdfs, Path(tmp))
        print(f"{'page':<44} {'size':>11} {'lines':>6} {'angle':>7} {'s/page':>7}")
        print("-" * 79)
        total = []
        for name, image, dpi in pages:
            seconds, n, angle = timed(image, dpi, args.repeat)
            total.append(seconds)
            size = f"{image.shape[1]}x{image.shape[0]}"
            print(f"{name[:44]:<44} {size:>11} {n:>6} {angle:>7.2f} {seconds:>7.3f}")
        print("-" * 79)
        print(f"{'mean':<44} {'':>11} {'':>6} {'':>7} {statistics.mean(total):>7.3f}")


if __name__ == "__main__":
    main()
