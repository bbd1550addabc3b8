"""Render synthetic text lines (printed, receipt, handwritten) and stream them as a torch dataset."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.line_image import inked_width, letterbox, letterbox_width
from pipeline.model_input import prepare_crop
from pipeline.training.corpus import text_line
from pipeline.training.degrade import degrade
from pipeline.training.fonts import FontInfo, pick_font
from pipeline.training.strokes import StrokeGlyph, drawable, pick_stroke_font, render_strokes

# Share of each line style. Receipts got more from step 8,000 on: they were the furthest from
# target of the sets the CPU-trained model can still close (handwriting had stalled). Session 14
# moved a tenth from printed (far inside its target) to hands, for the new joined-up script.
DEFAULT_MIX = {"printed": 0.4, "receipt": 0.3, "handwritten": 0.3}


def parse_mix(spec: str | None) -> dict[str, float] | None:
    """'handwritten=0.6,printed=0.25,receipt=0.15' as shares of each kind; None for the default.

    Kinds left out get no lines; the shares need not sum to 1."""
    if not spec:
        return None
    mix: dict[str, float] = {}
    for part in spec.split(","):
        kind, _, share = part.partition("=")
        kind = kind.strip()
        if kind not in DEFAULT_MIX:
            raise ValueError(f"--mix: unknown kind {kind!r}; use {', '.join(DEFAULT_MIX)}")
        try:
            mix[kind] = float(share)
        except ValueError:
            raise ValueError(f"--mix: {part.strip()!r} needs a number, as in {kind}=0.5") from None
        if mix[kind] < 0:
            raise ValueError(f"--mix: the share of {kind} cannot be negative")
    if sum(mix.values()) <= 0:
        raise ValueError("--mix: at least one kind needs a share above 0")
    return mix


FONT_KINDS = {
    "printed": (("serif", 0.4), ("sans", 0.3), ("mono", 0.3)),
    "receipt": (("sans", 0.45), ("mono", 0.45), ("serif", 0.1)),
    "handwritten": (("handwriting", 1.0),),
}
# Share of hand lines drawn with a pen along the Hershey script fonts' strokes (joined-up
# cursive, each letter varied) rather than from an outline handwriting font; session 14.
STROKE_SHARE = 0.4
# Real journal lines squeeze to about 1.4x at the model's width; do not train on much worse.
MAX_SQUEEZE = 1.5


def render_text(
    text: str,
    font: FontInfo,
    size: int,
    rng: random.Random,
    *,
    jitter: float = 0.0,
    spacing: float = 0.0,
) -> np.ndarray:
    """Draw `text` black on white with margins; per-char jitter/spacing imitate hands and receipt printers."""
    pil_font = font.load(size)
    margin = size // 2
    if jitter == 0.0 and spacing == 0.0 and 32 in font.charset:  # else letter by letter, gaps drawn
        left, top, right, bottom = pil_font.getbbox(text)
        w, h = right - left + 2 * margin, bottom - top + 2 * margin
        canvas = Image.new("L", (max(1, int(w)), max(1, int(h))), 255)
        ImageDraw.Draw(canvas).text((margin - left, margin - top), text, font=pil_font, fill=0)
        return np.asarray(canvas)
    ascent, descent = pil_font.getmetrics()
    gap = pil_font.getlength(" ") if 32 in font.charset else 0.3 * size
    advance = [(gap if c == " " else pil_font.getlength(c)) + spacing * size for c in text]
    w = int(sum(advance) + 2 * margin + size)
    h = ascent + descent + 2 * margin
    canvas = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(canvas)
    x = float(margin)
    for c, adv in zip(text, advance):
        dy = rng.gauss(0, jitter * size)
        if c != " ":  # nothing to draw, and a font without a space glyph would draw a box
            draw.text((x, margin + dy), c, font=pil_font, fill=0)
        x += adv * (1 + rng.gauss(0, jitter))
    return np.asarray(canvas)


@dataclass
class LineSample:
    """A letterboxed line image and its transcription."""

    image: np.ndarray
    text: str
    kind: str


class LineSynthesizer:
    """Makes random lines at the model's input size; deterministic for a given seed."""

    def __init__(
        self,
        height: int,
        width: int,
        seed: int = 0,
        mix: dict[str, float] | None = None,
        max_chars: int = 120,
        ink_cut: float = 0.0,
    ) -> None:
        self.height, self.width, self.max_chars = height, width, max_chars
        self.mix = mix or DEFAULT_MIX
        self.ink_cut = ink_cut
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)

    def _choice(self, weighted: tuple[tuple[str, float], ...] | list[tuple[str, float]]) -> str:
        names = [n for n, _ in weighted]
        return self.rng.choices(names, weights=[w for _, w in weighted])[0]

    def _pen(
        self, rng: random.Random, kind: str, text: str, size: int
    ) -> _OutlinePen | _StrokePen:
        """How this line gets drawn: a script font's pen paths for some hands, else a font."""
        if kind == "handwritten" and rng.random() < STROKE_SHARE:
            glyphs = pick_stroke_font(rng)
            if glyphs is not None:
                return _StrokePen(glyphs, size, rng)
        font = pick_font(rng, self._choice(FONT_KINDS[kind]), text)
        jitter = rng.uniform(0.01, 0.05) if kind == "handwritten" else 0.0
        spacing = rng.uniform(0.02, 0.25) if kind == "receipt" and rng.random() < 0.3 else 0.0
        return _OutlinePen(font, size, rng, jitter, spacing)

    def sample(self, max_chars: int | None = None) -> LineSample:
        """One degraded, letterboxed line (uint8 height x width) with its text."""
        rng = self.rng
        kind = self._choice(list(self.mix.items()))
        text = text_line(rng, kind, max_chars or self.max_chars)
        size = rng.randint(22, 48)
        try:
            draw = self._pen(rng, kind, text, size)
            text = " ".join(draw.fit(text).split()) or "a"
            img = draw(text)
            # Cut over-long lines at a word boundary so the model never sees them squeezed illegibly.
            limit = MAX_SQUEEZE * self.width * img.shape[0] / self.height
            if img.shape[1] > limit and len(text) > 1:
                keep = max(1, int(len(text) * limit / img.shape[1] * 0.95))
                text = (
                    text[:keep].rsplit(" ", 1)[0] if " " in text[:keep] else text[:keep]
                ).strip() or text[0]
                img = draw(text)
        except OSError:
            # A font file that cannot be opened (removed or reinstalled while a run goes on): a
            # run of hours draws with another font rather than stopping.
            return self.sample(max_chars)
        if int((img < 128).sum()) < 4:
            return self.sample(max_chars)  # the font drew nothing visible for this text
        try:
            img = degrade(img, self.np_rng, kind)
        except (cv2.error, ValueError):
            # A rare random chain can shrink a tiny glyph to nothing; one bad draw must never
            # stop a run of hours, so draw another line instead.
            return self.sample(max_chars)
        if img.size == 0 or int((img < 200).sum()) < 4:
            return self.sample(max_chars)
        if len(text) > 3 and img.shape[1] < img.shape[0]:
            return self.sample(max_chars)  # the crop lost the text: a label without its letters
        # Recognition whitens every crop, cuts it to its ink and shears it upright before
        # letterboxing; this share of lines is drawn so too (no random draw at 0, so older runs'
        # streams stay as they were).
        if self.ink_cut > 0 and rng.random() < self.ink_cut:
            img = prepare_crop(img)
        line = letterbox(img, self.height, self.width)
        content = line[:, : letterbox_width(img.shape, self.height, self.width)]
        if _contrast(content) < 50:
            return self.sample(max_chars)  # illegible at model size (thin, faint, blurred): a wrong lesson
        return LineSample(line, text, kind)


class _OutlinePen:
    """Draws with an outline (TrueType/OpenType) font; hands get per-letter jitter, receipts spacing."""

    def __init__(self, font: FontInfo, size: int, rng: random.Random, jitter: float, spacing: float):
        self.font, self.size, self.rng, self.jitter, self.spacing = font, size, rng, jitter, spacing

    def fit(self, text: str) -> str:
        """The label for what this font draws: capitals in all-caps fonts, no missing glyphs."""
        if self.font.caps_only:
            text = text.upper()
        # Spaces stay even where the font has no space glyph (TeX's Type 1 cursives):
        # render_text leaves the gap itself.
        return "".join(c for c in text if c == " " or ord(c) in self.font.charset).strip()

    def __call__(self, text: str) -> np.ndarray:
        return render_text(
            text, self.font, self.size, self.rng, jitter=self.jitter, spacing=self.spacing
        )


class _StrokePen:
    """Draws joined-up script along Hershey pen paths (strokes.py)."""

    def __init__(self, glyphs: dict[str, StrokeGlyph], size: int, rng: random.Random):
        self.glyphs, self.size, self.rng = glyphs, size, rng

    def fit(self, text: str) -> str:
        return drawable(text, self.glyphs)

    def __call__(self, text: str) -> np.ndarray:
        return render_strokes(text, self.glyphs, self.size, self.rng)


def _contrast(img: np.ndarray) -> float:
    """Paper brightness minus the darkest ink: a line under ~50 grey levels cannot be read."""
    return float(np.percentile(img, 90)) - float(img.min())


class SyntheticLineDataset(IterableDataset[tuple[np.ndarray, str] | list[tuple[np.ndarray, str]]]):
    """An endless stream of (uint8 image, text) pairs, or with `batch_size` of batches of them
    (lists, lines of like width); each DataLoader worker gets its own seed."""

    def __init__(
        self,
        height: int,
        width: int,
        seed: int = 0,
        mix: dict[str, float] | None = None,
        limit: int | None = None,
        start_lines: int = 0,
        curriculum_lines: int = 0,
        batch_size: int | None = None,
        ink_cut: float = 0.0,
    ) -> None:
        super().__init__()
        self.height, self.width, self.seed, self.mix, self.limit = height, width, seed, mix, limit
        self.ink_cut = ink_cut
        self.start_lines, self.curriculum_lines = start_lines, curriculum_lines
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[tuple[np.ndarray, str] | list[tuple[np.ndarray, str]]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        synth = LineSynthesizer(
            self.height, self.width, seed=self.seed * 1009 + worker, mix=self.mix,
            ink_cut=self.ink_cut,
        )
        workers = info.num_workers if info is not None else 1

        def lines() -> Iterator[tuple[np.ndarray, str]]:
            count = 0
            while self.limit is None or count < self.limit:
                seen = self.start_lines + count * workers
                s = synth.sample(curriculum_max_chars(seen, self.curriculum_lines, synth.max_chars))
                count += 1
                yield s.image, s.text

        if self.batch_size:
            yield from by_width(lines(), self.batch_size, self.width)
        else:
            yield from lines()


# With `batch_size`, the dataset yields whole batches of lines of like width: cut to its widest
# line (line_image.trim_padding), a batch of short lines trains several times faster, and the
# model learns to read lines without a long white tail, as recognition then shows them.
WIDTH_BUCKETS = 4


def by_width(
    lines: Iterator[tuple[np.ndarray, str]], batch_size: int, width: int
) -> Iterator[list[tuple[np.ndarray, str]]]:
    """Group letterboxed lines into batches whose inked widths fall in the same quarter of `width`."""
    buckets: list[list[tuple[np.ndarray, str]]] = [[] for _ in range(WIDTH_BUCKETS)]
    for image, text in lines:
        bucket = buckets[min(WIDTH_BUCKETS - 1, inked_width(image) * WIDTH_BUCKETS // width)]
        bucket.append((image, text))
        if len(bucket) == batch_size:
            yield bucket.copy()
            bucket.clear()


# A model from scratch learns where to look far sooner on short lines; longer ones come later.
CURRICULUM_START_CHARS = 12


def curriculum_max_chars(lines_seen: int, curriculum_lines: int, full: int) -> int | None:
    """Longest text allowed after `lines_seen` training lines: grows linearly to `full`."""
    if curriculum_lines <= 0 or lines_seen >= curriculum_lines:
        return None
    return int(CURRICULUM_START_CHARS + (full - CURRICULUM_START_CHARS) * lines_seen / curriculum_lines)
