"""Joined-up handwriting drawn with a pen along the strokes of the Hershey script fonts.

Outline fonts give every letter the same shape and leave the joins between letters to the font;
real cursive (IAM, Bentham) is one pen trace whose letters vary each time they are written. The
Hershey fonts (Debian's hershey-fonts-data) store letters as pen paths designed to join, so a
line can be drawn as a pen would: a pen width chosen per line, each letter's path bent by its own
small random affine map, the baseline and spacing wandering from letter to letter.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from pipeline.training.corpus import asset_paths

HERSHEY_DIRS = ("/usr/share/hershey-fonts",)
# Joined scripts: scriptc (complex, two-line pen), scripts (simplex), cursive (looped).
SCRIPT_FONTS = ("scriptc", "scripts", "cursive")
ASSET_FOLDER = "hershey"  # under $QUIRE_TRAIN_ASSETS on hosts without the Debian package
# A Hershey capital spans about 21 units (-12 to +9 around the baseline at y = 9).
UNITS_PER_EM = 32.0
BASELINE = 9.0
# Share of lines written with a broad nib instead of a round pen (ballpoint, pencil).
NIB_SHARE = 0.45


@dataclass(frozen=True)
class StrokeGlyph:
    """One letter: its advance (left and right bearings) and pen paths, y down, baseline at 9."""

    left: int
    right: int
    paths: tuple[np.ndarray, ...]


def parse_jhf(text: str) -> dict[str, StrokeGlyph]:
    """Glyphs of a .jhf file in ASCII order from the space (the layout of the script fonts).

    A record is a 5-character number, a 3-character count of coordinate pairs, then the pairs as
    letters offset from 'R'; the first pair is the left and right bearing, " R" lifts the pen.
    Long records continue on the next line.
    """
    records: list[str] = []
    for line in text.splitlines():
        if not line:
            continue
        if records and len(records[-1]) < 8 + 2 * int(records[-1][5:8]):
            records[-1] += line
        else:
            records.append(line)
    glyphs: dict[str, StrokeGlyph] = {}
    for code, record in zip(range(32, 127), records):
        body = record[8 : 8 + 2 * int(record[5:8])]
        left, right = ord(body[0]) - 82, ord(body[1]) - 82
        paths: list[np.ndarray] = []
        current: list[tuple[int, int]] = []
        for i in range(2, len(body) - 1, 2):
            pair = body[i : i + 2]
            if pair == " R":
                if len(current) > 1:
                    paths.append(np.array(current, np.float32))
                current = []
            else:
                current.append((ord(pair[0]) - 82, ord(pair[1]) - 82))
        if len(current) > 1:
            paths.append(np.array(current, np.float32))
        glyphs[chr(code)] = StrokeGlyph(left, right, tuple(paths))
    return glyphs


def hershey_file(name: str) -> Path | None:
    """A Hershey font's .jhf file: the packed copy under $QUIRE_TRAIN_ASSETS, else Debian's."""
    folders = asset_paths(ASSET_FOLDER) + HERSHEY_DIRS
    return next((p for p in (Path(f) / f"{name}.jhf" for f in folders) if p.is_file()), None)


def script_font_files() -> dict[str, Path]:
    """Each script font's .jhf file that is found (`hershey_file`)."""
    files: dict[str, Path] = {}
    for name in SCRIPT_FONTS:
        path = hershey_file(name)
        if path is not None:
            files[name] = path
    return files


@lru_cache(maxsize=1)
def stroke_fonts() -> dict[str, dict[str, StrokeGlyph]]:
    """The script fonts found on this host (empty when hershey-fonts-data is not installed)."""
    return {
        name: parse_jhf(path.read_text(encoding="ascii", errors="replace"))
        for name, path in script_font_files().items()
    }


def drawable(text: str, glyphs: dict[str, StrokeGlyph]) -> str:
    """`text` without the characters the font lacks (the label must match the ink)."""
    return " ".join("".join(c for c in text if c in glyphs).split())


def render_strokes(
    text: str, glyphs: dict[str, StrokeGlyph], size: int, rng: random.Random
) -> np.ndarray:
    """Draw `text` (characters the font has) in dark ink on white, about `size` px per em."""
    scale = size / UNITS_PER_EM
    pen = max(1, round(size * rng.uniform(0.025, 0.065)))
    slant = rng.uniform(-0.15, 0.35)  # x moves by slant * height above the baseline
    wobble = rng.uniform(0.02, 0.08)  # how much each letter's shape strays
    drift = rng.uniform(0.0, 0.04) * size  # how far the baseline wanders, in px
    margin = size
    placed: list[np.ndarray] = []
    x, baseline_shift = 0.0, 0.0
    exit_point: tuple[float, float] | None = None  # where the previous letter's pen stopped, in units
    for c in text:
        glyph = glyphs.get(c)
        if glyph is None:
            continue
        # A letter written this time: its own size, width and lean, on a wandering baseline.
        sx = scale * (1 + rng.gauss(0, wobble))
        sy = scale * (1 + rng.gauss(0, wobble))
        lean = slant + rng.gauss(0, wobble)
        baseline_shift = 0.8 * baseline_shift + rng.gauss(0, drift * 0.5)
        paths = [
            np.stack([x + (p[:, 0] - glyph.left) * sx - lean * (p[:, 1] - BASELINE) * sy,
                      (p[:, 1] - BASELINE) * sy + baseline_shift], axis=1)
            for p in glyph.paths
        ]
        if paths and exit_point is not None:
            # The font joins this letter to the last where the pen would not lift: keep the join
            # when the letters' sizes and places vary, else the hand falls apart into letters.
            entry = glyph.paths[0][0]
            if abs(entry[0] - glyph.left - exit_point[0]) + abs(entry[1] - exit_point[1]) < 2:
                gap = placed[-1][-1] - paths[0][0]
                paths = [p + gap for p in paths]
        placed.extend(paths)
        exit_point = (
            (glyph.paths[-1][-1][0] - glyph.right, glyph.paths[-1][-1][1]) if glyph.paths else None
        )
        spread = 1 + rng.gauss(0, 0.06) + (rng.uniform(-0.4, 0.2) if c == " " else 0.0)
        x += (glyph.right - glyph.left) * scale * spread
    if not placed:
        return np.full((size + 2 * margin, 2 * margin), 255, np.uint8)
    points = np.concatenate(placed)
    x0, y0 = points.min(axis=0) - margin
    x1, y1 = points.max(axis=0) + margin
    canvas = np.full((int(y1 - y0) + 1, int(x1 - x0) + 1), 255, np.uint8)
    ink = rng.randint(0, 90)
    nib = _nib(size, rng) if rng.random() < NIB_SHARE else None
    if nib is not None:
        pen = max(1, round(size * 0.015))  # the hairline a broad nib leaves along its edge
    shift = 3  # cv2 draws with 1/8 px precision: smooth curves at small sizes
    for path in placed:
        path = path - [x0, y0]
        if nib is not None:
            _sweep_nib(canvas, path, nib, ink, shift)
        pts = np.round(path * (1 << shift)).astype(np.int32)
        cv2.polylines(canvas, [pts], False, ink, pen, cv2.LINE_AA, shift)
    return canvas


def _nib(size: int, rng: random.Random) -> np.ndarray:
    """Half the edge of a broad nib (quill, italic pen) held at one angle for the whole line."""
    width = size * rng.uniform(0.04, 0.10)
    angle = np.deg2rad(rng.uniform(15, 65))
    return 0.5 * width * np.array([np.cos(angle), -np.sin(angle)])


def _sweep_nib(canvas: np.ndarray, path: np.ndarray, nib: np.ndarray, ink: int, shift: int) -> None:
    """Ink the area a broad nib sweeps along `path`: strokes across the nib's edge come out
    broad, strokes along it hairline thin, the shading of quill and fountain-pen hands."""
    scale = 1 << shift
    for a, b in itertools.pairwise(path):
        quad = np.array([a - nib, a + nib, b + nib, b - nib])
        cv2.fillConvexPoly(canvas, np.round(quad * scale).astype(np.int32), ink, cv2.LINE_AA, shift)


def pick_stroke_font(rng: random.Random) -> dict[str, StrokeGlyph] | None:
    """A random script font, or None when none is installed."""
    fonts = stroke_fonts()
    return fonts[rng.choice(sorted(fonts))] if fonts else None
