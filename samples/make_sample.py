"""Writes samples/sample-letter.pdf: a one-page scanned-looking letter for `make demo` (our own text)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

LINES = [
    "QUIRE COUNTY ARCHIVES",
    "Reading Room, 14 Harbour Street",
    "",
    "12 March 1931",
    "",
    "Dear Mr. Holloway,",
    "",
    "Thank you for your letter of the 3rd instant concerning",
    "the parish registers of St. Anne's. The volumes for the",
    "years 1812 to 1840 were rebound last spring and may now",
    "be consulted in the reading room on weekdays between ten",
    "and four o'clock. Copies of single entries can be made at",
    "a charge of 2s. 6d. each, payable in advance.",
    "",
    "Yours faithfully,",
    "E. M. Lindqvist, Keeper of Records",
]


def find_font(names: list[str]) -> str:
    for name in names:
        out = subprocess.run(["fc-match", "-f", "%{file}", name], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout:
            return out.stdout
    raise SystemExit("no TrueType font found; install fonts-dejavu-core")


def main() -> None:
    dpi, width, height = 300, 2550, 3300
    page = Image.new("L", (width, height), 250)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(find_font(["DejaVu Serif", "Liberation Serif", "serif"]), 46)
    y = 300
    for line in LINES:
        if line:
            draw.text((300, y), line, font=font, fill=25)
        y += 78
    page = page.filter(ImageFilter.GaussianBlur(0.7)).rotate(0.6, fillcolor=250, resample=Image.BICUBIC)
    noise = np.random.default_rng(7).normal(0, 6, (height, width))
    scan = np.clip(np.asarray(page, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    out = Path(__file__).with_name("sample-letter.pdf")
    Image.fromarray(scan).save(out, "PDF", resolution=dpi)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
