"""Peak memory while rendering a long PDF: it must stay flat, because pages are rendered a chunk at a time.

Usage: python bench/bench_render_memory.py [--pages 1000] [--dpi 300] [--chunk 8]
Prints resident memory (RSS) after selected pages and the peak.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from pipeline.config import RenderOptions
from pipeline.render import render_pages


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_long_pdf(path: Path, pages: int) -> None:
    """A letter-size text-like page repeated `pages` times (generated lazily, never all in memory)."""
    def page_images():
        for n in range(pages):
            image = Image.new("L", (850, 1100), 255)
            draw = ImageDraw.Draw(image)
            for row in range(40):
                draw.text((80, 60 + row * 24), f"page {n + 1} line {row + 1} " + "lorem ipsum " * 5, fill=0)
            yield image
    images = page_images()
    first = next(images)
    first.save(path, "PDF", resolution=100, save_all=True, append_images=images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--dpi", type=int, default=300)
    parser.add_argument("--chunk", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "long.pdf"
        # Written by a child process, so the peak below is rendering's alone.
        child = multiprocessing.get_context("spawn").Process(target=make_long_pdf, args=(pdf, args.pages))
        child.start()
        child.join()
        start_rss = rss_mb()
        checkpoints = {1, 10, 100, 250, 500, 750, args.pages}
        started = time.perf_counter()
        print(f"{'pages rendered':>15} {'RSS MB':>8} {'s':>8}")
        count = 0
        for page in render_pages(pdf, RenderOptions(dpi=args.dpi, chunk_pages=args.chunk)):
            count += 1
            if count in checkpoints:
                print(f"{count:>15} {rss_mb():>8.0f} {time.perf_counter() - started:>8.1f}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        one_page_mb = page.image.nbytes / 1e6
        print(f"pages: {count}; RSS before rendering {start_rss:.0f} MB; peak {peak:.0f} MB; "
              f"one page is {one_page_mb:.1f} MB; all pages at once would be {one_page_mb * count:,.0f} MB")


if __name__ == "__main__":
    main()
