"""What keeping page images costs: bytes and time to write each kind of page, the way Quire kept
them before session 41 (a PNG of the page as rendered, level 1) and now (pipeline.page_images),
and with --run, whole `quire run`s over a PDF of colour scans with QUIRE_RENDER__PAGE_IMAGES
lossless (a colour page kept as before) and auto, alternating.

Usage: PYTHONPATH=. python bench/bench_page_images.py [--repeat 3] [--run PAGES] [--runs 2]
The dev PDFs (../shared/data/dev/pdfs) are measured too when they are there.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.timing import fastest
from pipeline.config import RenderOptions
from pipeline.page_images import encode_page
from pipeline.process import decode_gray, encode_png
from pipeline.render import render_pages

DEV_PDFS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev" / "pdfs"
WORDS = ["the", "county", "archive", "holds", "letters", "deeds", "maps", "and", "ledgers", "of",
         "parish", "from", "1790", "to", "1931", "with", "notes", "on", "each", "item",
         "received", "catalogued", "boxed"]


def text_page(dpi: int = 300, seed: int = 0) -> np.ndarray:
    """An A4 page of 40 lines of words, black on white, grey antialiased."""
    rng = np.random.default_rng(seed)
    width, height = int(8.27 * dpi), int(11.69 * dpi)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype("DejaVuSerif.ttf", int(dpi * 0.14))
    for row in range(40):
        words = " ".join(rng.choice(WORDS, 9))
        draw.text((int(dpi * 0.9), int(dpi * (1.0 + 0.24 * row))), words, font=font, fill=0)
    return np.asarray(page)


def as_scan(page: np.ndarray, colour: bool, seed: int = 0) -> np.ndarray:
    """The page as a scanner gives it: cream paper, blue-black ink, a little blur and sensor noise."""
    ink = page[..., None] / 255.0
    rgb = ink * np.array([232, 226, 210]) + (1 - ink) * np.array([40, 35, 60])
    rgb += np.random.default_rng(seed).normal(0, 3, rgb.shape)
    scan = np.clip(rgb, 0, 255).astype(np.uint8)
    return scan if colour else np.asarray(Image.fromarray(scan).convert("L"))


def pages_to_measure() -> list[tuple[str, np.ndarray]]:
    page = text_page()
    found = [("A4 300 dpi, black and white", np.where(page < 128, 0, 255).astype(np.uint8)),
             ("A4 300 dpi, grey scan", as_scan(page, colour=False)),
             ("A4 300 dpi, colour scan", as_scan(page, colour=True))]
    for pdf in sorted(DEV_PDFS.glob("*.pdf")) if DEV_PDFS.is_dir() else []:
        for rendered in render_pages(pdf, RenderOptions(dpi=300)):
            found.append((f"dev {pdf.stem} p{rendered.number}", rendered.image))
    return found


def measure(repeat: int) -> None:
    print("| page | pixels | before: PNG KB / ms | now, PDF or lossy source: KB / ms "
          "| now, lossless source: KB / ms | JPEG's mean error (0-255) |")
    print("|---|---|---|---|---|---|")
    for name, image in pages_to_measure():
        old_s, old = fastest(lambda page=image: encode_png(page), repeat)
        lossy_s, lossy = fastest(lambda page=image: encode_page(page, lossy=True), repeat)
        whole_s, whole = fastest(lambda page=image: encode_page(page, lossy=False), repeat)
        error = "-"
        if lossy.extension == "jpg":
            grey = image if image.ndim == 2 else np.asarray(Image.fromarray(image).convert("L"))
            error = f"{np.abs(decode_gray(lossy.data).astype(int) - grey.astype(int)).mean():.2f}"
        shape = "x".join(str(n) for n in image.shape)
        print(f"| {name} | {shape} | {len(old) / 1e3:,.0f} / {old_s * 1e3:.0f} "
              f"| {len(lossy.data) / 1e3:,.0f} {lossy.extension} / {lossy_s * 1e3:.0f} "
              f"| {len(whole.data) / 1e3:,.0f} {whole.extension} / {whole_s * 1e3:.0f} | {error} |")


def colour_pdf(path: Path, pages: int) -> Path:
    """A PDF of colour scans, each a JPEG (quality 85) at 300 dpi, as a scanner writes them."""
    images = [Image.fromarray(as_scan(text_page(seed=n), colour=True, seed=n)) for n in range(pages)]
    images[0].save(path, "PDF", resolution=300.0, save_all=True, append_images=images[1:], quality=85)
    return path


def whole_runs(pages: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pdf = colour_pdf(Path(tmp) / "scans.pdf", pages)
        print(f"\n`quire run` over {pages} pages of colour scans ({pdf.stat().st_size / 1e6:.1f} MB PDF), "
              "a fresh QUIRE_HOME each run:\n")
        print("| QUIRE_RENDER__PAGE_IMAGES | run | seconds | s/page | page images MB |")
        print("|---|---|---|---|---|")
        for run in range(runs):
            for mode in ("lossless", "auto"):
                home = Path(tmp) / f"home-{mode}-{run}"
                env = {**os.environ, "QUIRE_HOME": str(home), "QUIRE_RENDER__PAGE_IMAGES": mode}
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(pdf), "--no-progress"],
                               env=env, check=True, capture_output=True)
                seconds = time.perf_counter() - started
                stored = sum(p.stat().st_size for p in home.rglob("*") if p.parent.name == "pages")
                print(f"| {mode} | {run + 1} | {seconds:.1f} | {seconds / pages:.2f} | {stored / 1e6:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed writes of each page (fastest kept)")
    parser.add_argument("--run", type=int, default=0, metavar="PAGES",
                        help="also time whole quire runs over a PDF of this many colour scans")
    parser.add_argument("--runs", type=int, default=2, help="runs of each setting with --run")
    args = parser.parse_args()
    measure(args.repeat)
    if args.run:
        whole_runs(args.run, args.runs)


if __name__ == "__main__":
    main()
