"""Find the installed fonts (via fc-list) that can draw Western text, grouped by style."""

from __future__ import annotations

import os
import random
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

KINDS = ("serif", "sans", "mono", "handwriting")

HANDWRITING_FAMILIES = (
    "dkghandwriting",
    "because we",
    "breip",
    "femkeklaver",
    "dancing script",
    "humor sans",
    "ecolier",
    "z003",
    "tex gyre chorus",
    # Added in session 14 (fonts-klee, -kristi, -rufscript, -sjfonts, -kaushanscript,
    # -comic-neue, -yusei-magic): pen, pencil, felt-tip and marker hands.
    "klee one",
    "kristi",
    "rufscript",
    "steve",
    "delphine",
    "kaushan",
    "comic neue",
    "yusei magic",
    # Added in session 24: Debian's fonts-havana, -lobster, -leckerli-one (casual and brush
    # scripts) and, from texlive-fonts-extra (`make train-deps` copies just these), pointed-pen
    # and school cursives nearer the old hands in archives: Miama, Calligra, frcursive, Brush
    # Script, Augie and three QualiType hands.
    "havana",
    "lobster",
    "leckerli",
    "miama",
    "callig",
    "frcr",
    "frcsl",
    "frcbx",
    "brushscriptx",
    "augie",
    "qthandwriting",
    "qtmerryscript",
    "qtbrushstroke",
)
MONO_FAMILIES = ("mono", "cursor", "courier", "typewriter")
SANS_FAMILIES = (
    "sans",
    "heros",
    "gothic",
    "adventor",
    "biolinum",
    "carlito",
    "narrow",
    "arial",
)
# Symbol, math, keyboard-cap and drop-cap fonts do not draw readable text lines.
EXCLUDE = re.compile(
    r"d050000l|symbol|math|keyboard|initials|display|dingbat|emoji|noto (?!sans$|serif$|sans mono$)",
    re.IGNORECASE,
)
FONT_EXTENSIONS = (".ttf", ".otf", ".ttc", ".pfb", ".pfa")  # Type 1: TeX's cursives


@dataclass(frozen=True)
class FontInfo:
    """One font file, its style group and the code points it covers."""

    path: str
    family: str
    style: str
    kind: str
    charset: frozenset[int]

    def covers(self, text: str) -> bool:
        return all(ord(c) in self.charset for c in text)

    def load(self, size: int) -> ImageFont.FreeTypeFont:
        return _load(self.path, size)

    @property
    def caps_only(self) -> bool:
        """True for fonts that draw lower case as capitals (some handwriting fonts)."""
        return _caps_only(self.path)


@lru_cache(maxsize=512)
def _caps_only(path: str) -> bool:
    font = _load(path, 40)
    # x-height letters are ~0.7 of the cap height in normal fonts, ~1.0 in all-caps fonts. No
    # 'z': cursives (Miama, frcursive, Rufscript) give it a descender and read as all-caps.
    low, up = font.getbbox("acemnorsuvwx"), font.getbbox("ACEMNORSUVWX")
    return (low[3] - low[1]) >= 0.9 * max(1, up[3] - up[1])


@lru_cache(maxsize=512)
def _load(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _parse_charset(spec: str) -> frozenset[int]:
    points: set[int] = set()
    for part in spec.split():
        lo, _, hi = part.partition("-")
        try:
            start = int(lo, 16)
            end = int(hi, 16) if hi else start
        except ValueError:
            continue
        if start < 0x3000:  # only the Latin/punctuation planes matter here; keeps the sets small
            points.update(range(start, min(end, 0x3000) + 1))
    return frozenset(points)


def classify(family: str, style: str) -> str:
    """Map a font family name to serif / sans / mono / handwriting."""
    name = family.lower()
    if any(h in name for h in HANDWRITING_FAMILIES):
        return "handwriting"
    if any(m in name for m in MONO_FAMILIES):
        return "mono"
    if any(s in name for s in SANS_FAMILIES) and "serif" not in name:
        return "sans"
    return "serif"


FONT_LIST = "fonts.tsv"  # in a packed asset folder: file|family|style|charset per line


def _font_list() -> str:
    """fc-list's answer, or the packed list under $QUIRE_TRAIN_ASSETS (hosts without the fonts)."""
    root = os.environ.get("QUIRE_TRAIN_ASSETS")
    if root:
        lines = (Path(root) / FONT_LIST).read_text(encoding="utf-8").splitlines()
        return "\n".join(str(Path(root) / line) for line in lines if line)
    try:
        return subprocess.run(
            ["fc-list", "--format", "%{file}|%{family[0]}|%{style[0]}|%{charset}\n"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"fc-list failed; install fontconfig and fonts: {exc}") from exc


def charset_spec(points: frozenset[int]) -> str:
    """The inverse of _parse_charset: code points as fc-list style hex ranges."""
    ranges: list[str] = []
    ordered = sorted(points)
    start = prev = ordered[0] if ordered else 0
    for p in ordered[1:] + [None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        ranges.append(f"{start:x}" if start == prev else f"{start:x}-{prev:x}")
        if p is not None:
            start = prev = p
    return " ".join(ranges) if ordered else ""


@lru_cache(maxsize=1)
def discover_fonts() -> tuple[FontInfo, ...]:
    """All usable fonts on this machine that draw at least ASCII letters and digits."""
    out = _font_list()
    fonts: dict[str, FontInfo] = {}
    needed = {ord(c) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"}
    for line in out.splitlines():
        parts = line.split("|", 3)
        if len(parts) != 4:
            continue
        path, family, style, charset = parts
        if not path.lower().endswith(FONT_EXTENSIONS) or EXCLUDE.search(family):
            continue
        if family.lower().startswith("noto") and family not in (
            "Noto Sans",
            "Noto Serif",
            "Noto Sans Mono",
        ):
            continue
        points = _parse_charset(charset)
        if not needed <= points:
            continue
        fonts[path] = FontInfo(path, family, style, classify(family, style), points)
    if not fonts:
        raise RuntimeError("no usable fonts found by fc-list")
    return tuple(sorted(fonts.values(), key=lambda f: f.path))


def fonts_by_kind() -> dict[str, list[FontInfo]]:
    """Fonts grouped by kind; every kind present at least via a fallback."""
    groups: dict[str, list[FontInfo]] = {k: [] for k in KINDS}
    for f in discover_fonts():
        groups[f.kind].append(f)
    everything = list(discover_fonts())
    for k in KINDS:
        if not groups[k]:
            groups[k] = everything
    return groups


def pick_font(rng: random.Random, kind: str, text: str = "") -> FontInfo:
    """A random font of `kind`, preferring one that covers every char of `text`."""
    group = fonts_by_kind()[kind]
    choice = rng.choice(group)
    for _ in range(8):
        if choice.covers(text):
            return choice
        choice = rng.choice(group)
    return choice
