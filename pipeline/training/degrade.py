"""Scan-like degradations of a rendered gray line: blur, noise, JPEG, geometry, ink, paper, light, fading, crops."""

from __future__ import annotations

import cv2
import numpy as np

Rng = np.random.Generator


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
    """Horizontal shear (slanted writing or italic-ish print), canvas widened to keep the ink."""
    h, w = img.shape
    s = rng.uniform(-max_shear, max_shear)
    pad = int(abs(s) * h) + 1
    m = np.array([[1, s, pad if s < 0 else 0], [0, 1, 0]], dtype=np.float32)
    return cv2.warpAffine(img, m, (w + pad, h), flags=cv2.INTER_LINEAR, borderValue=255)


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
    return cv2.erode(img, k) if rng.random() < 0.5 else cv2.dilate(img, k)


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


def crop(img: np.ndarray, rng: Rng, loose: float = 0.25) -> np.ndarray:
    """Crop to the ink box with a random margin: tight receipt crops or loose segmenter boxes."""
    mask = img < 160
    if not mask.any():
        return img
    ys, xs = np.where(mask)
    h, w = img.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
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


def rescale(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Scan resolution: down- then up-sample so strokes lose detail the way low-dpi scans do."""
    h, w = img.shape
    f = rng.uniform(0.4, 0.9)
    small = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def degrade(img: np.ndarray, rng: Rng, kind: str = "printed") -> np.ndarray:
    """A random chain of degradations suited to `kind` ('printed', 'receipt', 'handwritten')."""
    out = img
    if rng.random() < (0.35 if kind == "handwritten" else 0.15):
        out = shear(out, rng, 0.35 if kind == "handwritten" else 0.15)
    if rng.random() < 0.4:
        out = rotate(out, rng, 2.0 if kind == "handwritten" else 1.0)
    if kind == "receipt" and rng.random() < 0.3:
        out = perspective(out, rng)
    if rng.random() < 0.3:
        out = ink(out, rng)
    if kind == "receipt" and rng.random() < 0.5:
        out = faded(out, rng)
    out = crop(out, rng, loose=0.1 if kind == "receipt" else 0.3)
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
