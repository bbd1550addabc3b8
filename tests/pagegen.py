"""Synthetic test pages with known truth: real TrueType text, columns, a picture, skew, PDFs."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pipeline.types import BBox

KINDS = ("one_column", "two_columns", "picture")

# Preferred faces first; any TrueType font under /usr/share/fonts will do, then Pillow's own.
_REGULAR = ("DejaVuSerif.ttf", "LiberationSerif-Regular.ttf", "FreeSerif.ttf", "DejaVuSans.ttf")
_BOLD = (
    "DejaVuSerif-Bold.ttf",
    "LiberationSerif-Bold.ttf",
    "FreeSerifBold.ttf",
    "DejaVuSans-Bold.ttf",
)

_VOCABULARY = (
    "the of and to in is was that for with as his on be at by had not are but from or have an "
    "they which one you were all her she there would their we him been has when who will more "
    "no if out so said what up its about into than them can only other new some could time "
    "these two may then do first any my now such like our over man me even most made after "
    "also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see "
    "men work long get here between both life being under never day same another know while "
    "last might great old year off come since against go came right used take three quickly "
    "judge jovial sphinx quartz graph vexed fjord lynx waltz nymph kept bright journey "
    "village hydraulic typography keyboard sequence"
)
_WORDS = tuple(_VOCABULARY.split())
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_PUNCT = (",", ",", ".", ";", ":", "?", "!")


@dataclass(frozen=True)
class TrueLine:
    """A line as rendered: its ink box on the final page, its text and its column (0 = left)."""

    bbox: BBox
    text: str
    column: int = 0


@dataclass
class GeneratedPage:
    """A rendered page (RGB uint8) and its lines in true reading order."""

    image: np.ndarray
    lines: list[TrueLine]
    pictures: list[BBox] = field(default_factory=list)  # non-text blocks, page coordinates
    angle: float = 0.0  # degrees the content was rotated counterclockwise


@cache
def _font_path(names: tuple[str, ...]) -> str | None:
    found = {p.name: p for p in Path("/usr/share/fonts").rglob("*.ttf")}
    for name in names:
        if name in found:
            return str(found[name])
    return str(next(iter(sorted(found.values())))) if found else None


@lru_cache(maxsize=32)
def _font(px: int, bold: bool = False) -> _Font:
    path = _font_path(_BOLD if bold else _REGULAR)
    if path is None:  # no fonts installed: Pillow's built-in scalable font
        return ImageFont.load_default(size=px)
    return ImageFont.truetype(path, px)


def _sentence_words(rng: random.Random, n: int) -> list[str]:
    words = [rng.choice(_WORDS) for _ in range(n)]
    words[0] = words[0].capitalize()
    for i in range(3, n - 1, rng.randint(5, 9)):
        words[i] += rng.choice(_PUNCT[:2])
    words[-1] += rng.choice(_PUNCT[2:])
    return words


def _wrap(rng: random.Random, font: _Font, width: int, n_lines: int) -> list[str]:
    """A paragraph of about n_lines lines fitting `width` pixels; the last line is short."""
    words = _sentence_words(rng, n_lines * 14)
    lines: list[str] = []
    current = ""
    for word in words:
        trial = f"{current} {word}".strip()
        if current and font.getlength(trial) > width:
            lines.append(current)
            current = word
            if len(lines) == n_lines - 1:
                break
        else:
            current = trial
    # last line: a few words, so paragraphs end ragged as in real text
    last = current.split()[: rng.randint(2, 6)]
    lines.append(" ".join(last).rstrip(",;:") + ".")
    return lines


class _Canvas:
    """Draws text lines onto a page and records each line's exact ink box."""

    def __init__(self, width: int, height: int) -> None:
        self.page = Image.new("L", (width, height), 255)
        self.lines: list[TrueLine] = []

    def text(self, x: int, y: int, text: str, font: _Font, column: int) -> None:
        # Render alone first so the truth is the real ink, not the font's metrics box.
        left, top, right, bottom = (int(v) for v in font.getbbox(text))
        tile = Image.new("L", (right - min(left, 0) + 4, bottom - min(top, 0) + 4), 255)
        ox, oy = 2 - min(left, 0), 2 - min(top, 0)
        ImageDraw.Draw(tile).text((ox, oy), text, font=font, fill=0)
        ink = np.nonzero(np.asarray(tile) < 160)
        self.page.paste(tile, (x - ox, y - oy), Image.fromarray(255 - np.asarray(tile)))
        if ink[0].size:
            box = BBox(
                x - ox + int(ink[1].min()),
                y - oy + int(ink[0].min()),
                x - ox + int(ink[1].max()) + 1,
                y - oy + int(ink[0].max()) + 1,
            )
            self.lines.append(TrueLine(box, text, column))


def _photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like grey block: smooth shading, dark shapes and grain, no frame to help."""
    coarse = rng.uniform(30, 230, size=(6, 6)).astype(np.float32)
    img = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.08, 0.25) * min(width, height)
        draw.ellipse((cx - r, cy - r * 0.7, cx + r, cy + r * 0.7), fill=int(rng.uniform(10, 120)))
    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
    arr += rng.normal(0, 18, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _scanify(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey paper, uneven light from one side, grain and a slight blur, like a cheap scan."""
    h, w = gray.shape
    ramp = (
        np.linspace(0.78, 1.0, w, dtype=np.float32)[None, :]
        * np.linspace(0.92, 1.0, h, dtype=np.float32)[:, None]
    )
    paper = 225.0 * ramp
    ink = 1.0 - gray.astype(np.float32) / 255.0
    arr = paper * (1.0 - 0.85 * ink) + rng.normal(0, 6, size=gray.shape)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return np.asarray(out.filter(ImageFilter.GaussianBlur(0.7)))


def _rotate_box(box: BBox, matrix: tuple[float, ...], width: int, height: int) -> BBox:
    a, b, c, d, e, f = matrix
    xs, ys = [], []
    for x, y in ((box.x0, box.y0), (box.x1, box.y0), (box.x0, box.y1), (box.x1, box.y1)):
        xs.append(a * x + b * y + c)
        ys.append(d * x + e * y + f)
    return BBox(
        max(0, math.floor(min(xs))),
        max(0, math.floor(min(ys))),
        min(width, math.ceil(max(xs))),
        min(height, math.ceil(max(ys))),
    )


def make_page(
    kind: str, *, seed: int = 0, dpi: int = 300, angle: float = 0.0, scan: bool = False
) -> GeneratedPage:
    """A US-letter page of `kind` (one_column, two_columns, picture) with its true lines.

    `angle` rotates the whole page counterclockwise (degrees) about its centre; truth boxes are
    the axis-aligned boxes of the rotated ink boxes. `scan` adds grey paper, shading and grain.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown page kind {kind!r}; expected one of {KINDS}")
    rng = random.Random(f"{kind}-{seed}")
    nrng = np.random.default_rng(rng.randrange(2**32))
    width, height = round(8.5 * dpi), round(11 * dpi)
    margin = dpi
    body = _font(round(11 * dpi / 72))
    title_font = _font(round(20 * dpi / 72), bold=True)
    leading = round(11 * 1.4 * dpi / 72)
    canvas = _Canvas(width, height)
    pictures: list[BBox] = []
    text_w = width - 2 * margin

    title = " ".join(_sentence_words(rng, rng.randint(3, 5))).rstrip(".!?,;:")
    y = margin
    canvas.text(margin + (text_w - int(title_font.getlength(title))) // 2, y, title, title_font, 0)
    y += round(leading * 2.2)
    if kind == "picture":  # a rule under the title that must not become a line
        rule_y = y - leading // 2
        ImageDraw.Draw(canvas.page).rectangle(
            (margin, rule_y, width - margin, rule_y + max(2, dpi // 100)), fill=0
        )

    def paragraphs(x: int, y: int, col_w: int, bottom: int, column: int) -> None:
        while y + leading * 3 < bottom:
            n = min(rng.randint(3, 8), (bottom - y) // leading)
            for line in _wrap(rng, body, col_w, n):
                canvas.text(x, y, line, body, column)
                y += leading
            y += leading // 2

    if kind == "two_columns":
        gutter = round(0.35 * dpi)
        col_w = (text_w - gutter) // 2
        bottom = height - margin - rng.randint(0, 3) * leading
        paragraphs(margin, y, col_w, height - margin, 0)
        paragraphs(margin + col_w + gutter, y, col_w, bottom, 1)
    elif kind == "picture":
        paragraphs(margin, y, text_w, y + 5 * leading, 0)
        y = canvas.lines[-1].bbox.y1 + leading
        pic_w, pic_h = round(text_w * 0.42), round(leading * 9.5)
        canvas.page.paste(_photo(nrng, pic_w, pic_h), (margin, y))
        pictures.append(BBox(margin, y, margin + pic_w, y + pic_h))
        side_x = margin + pic_w + round(0.3 * dpi)
        paragraphs(side_x, y, width - margin - side_x, y + pic_h, 0)
        paragraphs(margin, y + pic_h + leading, text_w, height - margin, 0)
    else:
        paragraphs(margin, y, text_w, height - margin, 0)

    gray = np.asarray(canvas.page)
    lines = canvas.lines
    if scan:
        gray = _scanify(gray, nrng)
    if angle:
        image = Image.fromarray(gray).rotate(
            angle, resample=Image.Resampling.BICUBIC, fillcolor=int(np.median(gray[:8]))
        )
        gray = np.asarray(image)
        # PIL's rotate maps output to input; invert it to carry the boxes forward.
        rad = math.radians(angle)
        cx, cy = width / 2, height / 2
        cos, sin = math.cos(rad), math.sin(rad)
        forward = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
        lines = [
            TrueLine(_rotate_box(t.bbox, forward, width, height), t.text, t.column) for t in lines
        ]
        pictures = [_rotate_box(p, forward, width, height) for p in pictures]
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    return GeneratedPage(
        image=np.ascontiguousarray(rgb), lines=lines, pictures=pictures, angle=angle
    )


def make_pdf(pages: list[np.ndarray], path: str | Path, dpi: int = 300) -> Path:
    """Write page images (RGB or grayscale uint8) as a multi-page PDF at `dpi`."""
    if not pages:
        raise ValueError("make_pdf needs at least one page")
    images = [Image.fromarray(p).convert("RGB") for p in pages]
    out = Path(path)
    images[0].save(out, "PDF", resolution=float(dpi), save_all=True, append_images=images[1:])
    return out
