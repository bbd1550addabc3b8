"""Scan-like degradations of a rendered gray line: blur, noise, JPEG, geometry, ink, paper, light,
thermal fading, bitmap and dot-matrix print, neighbouring lines, crops."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline import slant

Rng = np.random.Generator

# Share of hand lines drawn with taller ascenders and descenders (`long_loops`). 0.5 in sessions
# 22-23: synthetic hands with tall loops read far better, but the dev hands drifted from 39.7 % to
# 43.4 % over 12,000 steps (the validation's CTC reading 38 % -> 43 %), so it is off again.
LONG_LOOPS_SHARE = 0.0


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(a, 0, 255).astype(np.uint8)


def blur(img: np.ndarray, rng: Rng, max_sigma: float = 1.2) -> np.ndarray:
    """Gaussian blur: defocus and low-resolution optics."""
    sigma = rng.uniform(0.3, max_sigma)
    return cv2.GaussianBlur(img, (0, 0), sigma)


def noise(img: np.ndarray, rng: Rng, max_std: float = 18.0) -> np.ndarray:
    """Additive Gaussian sensor noise, sometimes salt and pepper specks."""
    out = img.astype(np.float32) + rng.normal(0, rng.uniform(2, max_std), img.shape)
    if rng.random() < 0.3:
        specks = rng.random(img.shape)
        amount = rng.uniform(0.001, 0.01)
        out[specks < amount / 2] = 0
        out[specks > 1 - amount / 2] = 255
    return _u8(out)


def jpeg(img: np.ndarray, rng: Rng) -> np.ndarray:
    """JPEG round trip at a random quality: block artefacts of phone photos and web scans."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 90))])
    out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else None
    return np.asarray(out, dtype=np.uint8) if out is not None else img


def binarize(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Global Otsu or a jittered fixed threshold, like bilevel journal scans (UW3)."""
    if rng.random() < 0.6:
        _, out = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    else:
        _, out = cv2.threshold(img, int(rng.integers(90, 190)), 255, cv2.THRESH_BINARY)
    return out


def rotate(img: np.ndarray, rng: Rng, max_deg: float = 1.5) -> np.ndarray:
    """Small rotation around the centre; residual skew after page deskew."""
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-max_deg, max_deg), 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)


def shear(img: np.ndarray, rng: Rng, max_shear: float = 0.3) -> np.ndarray:
    """Horizontal shear (slanted writing or italic-ish print), canvas widened to keep the ink:
    the same shear recognition uses to set writing upright (`slant.shear`), by a random amount."""
    return slant.shear(img, rng.uniform(-max_shear, max_shear))


def perspective(img: np.ndarray, rng: Rng, amount: float = 0.06) -> np.ndarray:
    """A mild perspective warp: curled receipts and photographed pages."""
    h, w = img.shape
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    jit = rng.uniform(-amount, amount, (4, 2)) * np.array([min(w, 4 * h), h], dtype=np.float32)
    dst = (src + jit).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)


def ink(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Ink bleed (thicker strokes) or erosion (broken thin strokes) by grey morphology."""
    k = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (int(rng.integers(2, 4)), int(rng.integers(2, 4)))
    )
    # Ink is dark, so eroding the image grows the strokes and dilating it thins them.
    if rng.random() < 0.5:
        return cv2.erode(img, k)
    thinned = cv2.dilate(img, k)
    # A light font's hairline strokes would vanish: keep such a line as it was.
    return thinned if (thinned < 128).sum() >= 0.5 * (img < 128).sum() else img


def paper(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Tinted, textured paper: low-frequency blotches under the ink, background not pure white."""
    h, w = img.shape
    small = rng.normal(0, 1, (max(2, h // 8), max(2, w // 8))).astype(np.float32)
    texture = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * rng.uniform(2, 12)
    background = rng.uniform(200, 250)
    ink_level = rng.uniform(0, 70)
    alpha = img.astype(np.float32) / 255.0  # 1 = paper, 0 = ink
    out = ink_level + alpha * (background - ink_level) + texture
    return _u8(out)


def uneven_light(img: np.ndarray, rng: Rng) -> np.ndarray:
    """A brightness gradient across the line: a shadow or a lamp off to one side."""
    _h, w = img.shape
    ramp = np.linspace(rng.uniform(-60, 0), rng.uniform(-60, 0), w, dtype=np.float32)
    if rng.random() < 0.5:
        ramp = ramp[::-1]
    return _u8(img.astype(np.float32) + ramp[None, :])


def faded(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Thermal receipt print: weak grey ink, patchy along the line."""
    h, w = img.shape
    strength = rng.uniform(0.5, 0.85)
    patch = cv2.resize(rng.uniform(0.75, 1.0, (1, max(2, w // 30))).astype(np.float32), (w, h))
    darkness = (255 - img.astype(np.float32)) * strength * patch
    return _u8(255 - darkness)


def _ink_height(img: np.ndarray) -> int:
    rows = np.where((img < 128).any(axis=1))[0]
    return int(rows[-1] - rows[0] + 1) if rows.size else img.shape[0]


def pixelate(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Bitmap printer glyphs: the line redrawn on a coarse pixel grid (11-16 px of ink), then scanned."""
    h, w = img.shape
    f = rng.uniform(11, 16) / max(_ink_height(img), 1)
    if f >= 1:
        return img
    # Widen the ink by one output pixel first: a thin stroke must survive the coarse grid, or the
    # label would name a letter that is no longer there.
    k = max(1, round(1 / f))
    bold = cv2.erode(img, np.ones((k, k), np.uint8))
    small = cv2.resize(bold, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    small = np.where(small < rng.uniform(128, 200), 0, 255).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def dot_matrix(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Dot-matrix print: every stroke drawn as separate round dots on a grid 8-12 dots high."""
    cells = rng.uniform(8, 12)
    cell = 5  # pixels per dot pitch: room for a round dot and a gap
    scale = cell * cells / max(_ink_height(img), 1)
    shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=shrink)
    h, w = big.shape
    gh, gw = h // cell, w // cell  # whole cells only; the ragged right and bottom edge stays white
    # A dot wherever any ink falls in its cell (min pooling), so thin strokes keep their dots.
    cells_view = big[: gh * cell, : gw * cell].reshape(gh, cell, gw, cell)
    grid = cells_view.min(axis=(1, 3)) < 128
    yy, xx = np.mgrid[0:cell, 0:cell]
    centre = (cell - 1) / 2
    dot = (yy - centre) ** 2 + (xx - centre) ** 2 <= (cell * rng.uniform(0.29, 0.39)) ** 2
    out = np.full((h, w), 255, dtype=np.uint8)
    out[: gh * cell, : gw * cell][np.kron(grid, dot).astype(bool)] = 0
    return out


def neighbour_ink(img: np.ndarray, rng: Rng) -> np.ndarray:
    """What a tight crop catches from the lines above and below: separator dashes or glyph ends."""
    h, w = img.shape
    band = max(2, int(h * rng.uniform(0.08, 0.2)))
    gap = int(h * rng.uniform(0.0, 0.12))
    parts = [img]
    for edge in ("top", "bottom"):
        if rng.random() < 0.5:
            continue
        strip = np.full((band, w), 255, dtype=np.uint8)
        if rng.random() < 0.5:
            # A separator rule (-----, =====), solid or dashed, cut by the crop.
            period = int(rng.integers(4, 16))
            on = (np.arange(w) + int(rng.integers(0, period))) % period < int(rng.integers(2, period + 1))
            thick = max(1, int(band * rng.uniform(0.2, 0.6)))
            rows = slice(band - thick, band) if edge == "top" else slice(0, thick)
            strip[rows, on] = int(rng.integers(0, 90))
        else:
            # Descenders of the line above (or tops of the line below), shifted sideways.
            src = img[h - band :] if edge == "top" else img[:band]
            strip = np.roll(src, int(rng.integers(0, w)), axis=1)
        pad = np.full((gap, w), 255, dtype=np.uint8)
        parts = [strip, pad, *parts] if edge == "top" else [*parts, pad, strip]
    return np.vstack(parts)


def crop(img: np.ndarray, rng: Rng, loose: float = 0.25) -> np.ndarray:
    """Crop to the ink box with a random margin: tight receipt crops or loose segmenter boxes."""
    # Ink is what is darker than halfway to the paper: a fixed level would keep only the darkest
    # speck of a faded line and crop the text away.
    darkest, paper_level = int(img.min()), int(np.median(img))
    if paper_level - darkest < 30:
        return img
    mask = img < (darkest + paper_level) / 2
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = img.shape
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    ih = y1 - y0
    top = int(rng.uniform(0, loose) * ih)
    bottom = int(rng.uniform(0, loose) * ih)
    left = int(rng.uniform(0, loose * 2) * ih)
    right = int(rng.uniform(0, loose * 2) * ih)
    if rng.random() < 0.15 and ih > 8:
        # Segmenters sometimes shave a pixel or two off ascenders/descenders (not off a dash).
        top, bottom = -int(rng.integers(0, 2)), -int(rng.integers(0, 2))
    out = np.full((ih + top + bottom, (x1 - x0) + left + right), 255, dtype=np.uint8)
    sy0, sy1 = max(0, y0 - top), min(h, y1 + bottom)
    sx0, sx1 = max(0, x0 - left), min(w, x1 + right)
    dy, dx = sy0 - (y0 - top), sx0 - (x0 - left)
    region = img[sy0:sy1, sx0:sx1]
    out[dy : dy + region.shape[0], dx : dx + region.shape[1]] = region
    return out


def condense(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Narrow or wide print: receipts squeeze glyphs to fit 40 columns ('Amt' with an m as
    narrow as an n, parentheses like tall thin arcs) and widen totals; hands vary in width."""
    h, w = img.shape
    f = rng.uniform(0.55, 0.9) if rng.random() < 0.8 else rng.uniform(1.1, 1.4)
    return cv2.resize(img, (max(1, round(w * f)), h), interpolation=cv2.INTER_AREA)


def elastic(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Hands are not fonts: a smooth random field moves strokes a little (letters vary in shape
    and size, the baseline wanders), which no handwriting font does on its own."""
    h, w = img.shape
    sigma = h * rng.uniform(0.15, 0.4)  # the field's smoothness: a letter or two moves together
    amount = h * rng.uniform(0.04, 0.1)  # the largest move, in pixels
    # The field is smooth over `sigma` pixels, so it is drawn on a grid `step` times coarser and
    # scaled up: the same kind of field for a fraction of the blur (4x faster on a 48 px line).
    step = max(1, int(sigma / 3))
    gh, gw = -(-h // step) + 1, -(-w // step) + 1
    fields = []
    for _ in range(2):
        coarse = cv2.GaussianBlur(
            rng.standard_normal((gh, gw)).astype(np.float32), (0, 0), sigma / step
        )
        field = cv2.resize(coarse, (gw * step, gh * step), interpolation=cv2.INTER_LINEAR)[:h, :w]
        fields.append(field * (amount / max(float(np.abs(field).max()), 1e-6)))
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        img, xs + fields[0], ys + fields[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=255,
    )


def core_rows(img: np.ndarray) -> tuple[int, int]:
    """The rows of a line's core (its x-height band): the run around the inkiest row where each
    row holds at least half that row's ink. Ascenders and descenders lie above and below it."""
    per_row = np.convolve((img < 128).sum(axis=1).astype(np.float32), np.ones(3) / 3, mode="same")
    peak = int(per_row.argmax())
    dense = per_row >= 0.5 * per_row[peak]
    top, bottom = peak, peak + 1
    while top > 0 and dense[top - 1]:
        top -= 1
    while bottom < len(dense) and dense[bottom]:
        bottom += 1
    return top, bottom


def long_loops(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Cursive written small between long loops: ascenders and descenders drawn taller.

    Fonts keep their letters' core near half the line's height; in real cursive (IAM, Bentham)
    it is a sixth to a third, so the model, reading every line 32 px high, sees it half as tall
    as in fonts. Held-out synthetic hands with these zones 1.5x and 2x as tall read 1.6x and 3x
    worse before the model had seen any (`bench/bench_long_loops.py`, docs/BENCHMARKS.md)."""
    return taller_loops(img, rng.uniform(1.3, 2.6))


def taller_loops(img: np.ndarray, factor: float) -> np.ndarray:
    """The line with the rows above and below its core (`core_rows`) stretched `factor` times."""
    h, w = img.shape
    top, bottom = core_rows(img)
    parts = [img[top:bottom]]
    if top:
        parts.insert(0, cv2.resize(img[:top], (w, round(top * factor)), interpolation=cv2.INTER_LINEAR))
    if bottom < h:
        parts.append(cv2.resize(img[bottom:], (w, round((h - bottom) * factor)), interpolation=cv2.INTER_LINEAR))
    return np.vstack(parts)


def rescale(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Scan resolution: down- then up-sample so strokes lose detail the way low-dpi scans do."""
    h, w = img.shape
    f = rng.uniform(0.4, 0.9)
    small = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def degrade(img: np.ndarray, rng: Rng, kind: str = "printed") -> np.ndarray:
    """A random chain of degradations suited to `kind` ('printed', 'receipt', 'handwritten')."""
    out = img
    if kind == "handwritten" and rng.random() < LONG_LOOPS_SHARE:
        out = long_loops(out, rng)
    if rng.random() < {"receipt": 0.35, "handwritten": 0.15}.get(kind, 0.1):
        out = condense(out, rng)
    if kind == "handwritten" and rng.random() < 0.6:
        out = elastic(out, rng)
    if rng.random() < (0.35 if kind == "handwritten" else 0.15):
        out = shear(out, rng, 0.35 if kind == "handwritten" else 0.15)
    if rng.random() < 0.4:
        out = rotate(out, rng, 2.0 if kind == "handwritten" else 1.0)
    if kind == "receipt" and rng.random() < 0.3:
        out = perspective(out, rng)
    if rng.random() < 0.3:
        out = ink(out, rng)
    if kind == "receipt":
        # Thermal and dot-matrix printers: bitmap glyphs, separate dots, weak grey ink.
        style = rng.random()
        if 0.2 <= style < 0.35:
            out = dot_matrix(out, rng)  # dots are light enough already: never faded on top
        else:
            if style < 0.2:
                out = pixelate(out, rng)
            if rng.random() < 0.5:
                out = faded(out, rng)
    out = crop(out, rng, loose=0.1 if kind == "receipt" else 0.3)
    if rng.random() < (0.3 if kind == "receipt" else 0.08):
        out = neighbour_ink(out, rng)
    if rng.random() < 0.3:
        out = rescale(out, rng)
    if rng.random() < 0.4:
        out = blur(out, rng)
    binarized = kind == "printed" and rng.random() < 0.45
    if binarized:
        out = binarize(out, rng)
    else:
        if rng.random() < (0.7 if kind == "handwritten" else 0.35):
            out = paper(out, rng)
        if rng.random() < 0.2:
            out = uneven_light(out, rng)
        if rng.random() < 0.4:
            out = noise(out, rng)
        if rng.random() < 0.25:
            out = jpeg(out, rng)
    return out


def _stretch(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Wider or narrower writing, by up to 15 %."""
    h, w = img.shape
    return cv2.resize(img, (max(1, round(w * rng.uniform(0.85, 1.15))), h), interpolation=cv2.INTER_AREA)


# (share of lines, variation) in the order vary_scan applies them: mild, so a real line stays itself.
SCAN_VARIATIONS = (
    (0.5, elastic),
    (0.3, lambda img, rng: shear(img, rng, 0.15)),
    (0.3, lambda img, rng: rotate(img, rng, 1.0)),
    (0.3, _stretch),
    (0.25, ink),
    (0.2, rescale),
    (0.2, lambda img, rng: blur(img, rng, 0.8)),
    (0.2, lambda img, rng: noise(img, rng, 8.0)),
)


def vary_scan(img: np.ndarray, rng: Rng) -> np.ndarray:
    """A real scanned line, shown a little differently each epoch of fine-tuning on a small
    folder: the shape of its letters, their size, lean, stroke weight and sharpness vary, but
    never so far that the line reads as other text. Lines from a few hundred transcriptions are
    then a hand to learn rather than images to learn by heart."""
    out = img
    for share, variation in SCAN_VARIATIONS:
        if rng.random() < share:
            out = variation(out, rng)
    return out
