"""Layout of a straightened ink mask: drop pictures and rules, cut into columns, find lines."""

from __future__ import annotations

import cv2
import numpy as np

# A text line in straightened page coordinates: x0, y0, x1, y1 (exclusive), column.
Line = tuple[int, int, int, int, int]
Box = tuple[int, int, int, int]


def _text_height(h: np.ndarray, area: np.ndarray, dpi: int) -> float:
    """Median height of glyph-sized components: the scale every threshold is measured in."""
    plausible = (h >= dpi * 0.02) & (h <= dpi * 0.6) & (area >= (dpi * 0.01) ** 2)
    return float(np.median(h[plausible])) if plausible.sum() >= 5 else dpi * 0.1


def _holes(labels: np.ndarray, index: int, box: Box, min_area: int) -> int:
    """Number of enclosed background regions of one component (letters have at most a few)."""
    x, y, w, h = box
    inside = (labels[y : y + h, x : x + w] != index).astype(np.uint8)
    n, bg, stats, _ = cv2.connectedComponentsWithStats(inside, connectivity=4)
    border = set(np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]])).tolist())
    return sum(1 for i in range(1, n) if i not in border and stats[i, 4] >= min_area)


def _picture_region(
    candidates: np.ndarray, seeds: np.ndarray, th: float
) -> tuple[np.ndarray, list[Box]]:
    """Quarter-size mask of pictures: ink reachable from big picture components across gaps
    of about half a text height (hatching, halftone speckle), with enclosed holes filled."""
    small = pool2(pool2(candidates))
    grown = cv2.dilate(small, np.ones((3, 3), np.uint8))
    n, labels = cv2.connectedComponents(grown, connectivity=8)
    hit = np.zeros(n, dtype=bool)
    hit[np.unique(labels[pool2(pool2(seeds)) > 0])] = True
    hit[0] = False
    region = np.zeros((small.shape[0] + 2, small.shape[1] + 2), dtype=np.uint8)
    region[1:-1, 1:-1] = hit[labels].astype(np.uint8) * 255
    flood = region.copy()
    cv2.floodFill(flood, None, (0, 0), 128)
    region[flood == 0] = 255  # enclosed holes belong to the picture
    # Pale parts split a photo into pieces: join pieces closer than two text heights, and
    # where they then nearly fill their box, take the box (a photo is a rectangle).
    k = max(3, round(th / 2)) | 1
    joined = cv2.morphologyEx(region, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    boxes: list[Box] = []
    for x, y, w, h, area in stats[1:]:
        if area >= 0.8 * w * h:
            region[y : y + h, x : x + w] = 255
        if min(w, h) * 4 >= 3 * th:
            boxes.append((int(x - 1) * 4, int(y - 1) * 4, int(x + w - 1) * 4, int(y + h - 1) * 4))
    return cv2.dilate(region[1:-1, 1:-1], np.ones((3, 3), np.uint8)), boxes


def clean_mask(ink: np.ndarray, dpi: int) -> tuple[np.ndarray, np.ndarray, float, list[Box]]:
    """Text ink (uint8 0/1), its components' stats (x, y, w, h, area), the text height and the
    boxes (x0, y0, x1, y1) of pictures.

    Removes specks, rules (long thin lines, bars of barcodes, page borders) and pictures
    (big components with many holes or solid fill) with everything near or inside them.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    stats = stats[1:]
    x, y, w, h, area = stats.T
    th = _text_height(h, area, dpi)
    keep = area >= max(3.0, 0.012 * th * th)
    rule = ((w >= 4 * th) & (w >= 8 * h)) | ((h >= 4 * th) & (h >= 6 * w))
    solid_rule = rule & (area >= 0.5 * w * h)
    keep &= ~rule
    big = keep & (((h >= 3 * th) & (w >= 2 * th)) | ((w >= 3 * th) & (h >= 2 * th)))
    picture = np.zeros_like(keep)
    pictures: list[Box] = []
    for i in np.flatnonzero(big):
        box = (int(x[i]), int(y[i]), int(w[i]), int(h[i]))
        fill = area[i] / float(w[i] * h[i])
        huge = w[i] * h[i] >= (12 * th) ** 2
        picture[i] = huge or fill >= 0.8 or _holes(labels, int(i) + 1, box, 4) >= 6
    if picture.any():
        # Pictures grow through all their ink, specks of mid-tones included; solid rules
        # are left out so that a frame or an underline does not carry them into text.
        lut = np.zeros(n, dtype=np.uint8)
        lut[1:][~solid_rule] = 1
        lut_seed = np.zeros(n, dtype=np.uint8)
        lut_seed[1:][picture] = 1
        region, pictures = _picture_region(lut[labels], lut_seed[labels], th)
        f = 4
        integral = cv2.integral(region // 255)
        rh, rw = region.shape
        x0, y0 = np.minimum(x // f, rw - 1), np.minimum(y // f, rh - 1)
        x1 = np.clip((x + w + f - 1) // f, x0 + 1, rw)
        y1 = np.clip((y + h + f - 1) // f, y0 + 1, rh)
        covered = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        keep &= ~picture & (covered < 0.5 * (x1 - x0) * (y1 - y0))
        th = _text_height(h[keep], area[keep], dpi)  # without hatching and speckle
    lut = np.zeros(n, dtype=np.uint8)
    lut[1:][keep] = 1
    return lut[labels], stats[keep], th, pictures


def pool2(mask: np.ndarray) -> np.ndarray:
    """Half-size mask where a pixel is set if any of its 2x2 block is (thin strokes survive)."""
    h, w = mask.shape[0] // 2 * 2, mask.shape[1] // 2 * 2
    m = mask[:h, :w]
    return np.maximum(
        np.maximum(m[0::2, 0::2], m[1::2, 0::2]), np.maximum(m[0::2, 1::2], m[1::2, 1::2])
    )


def _chunks(clean: np.ndarray, th: float) -> np.ndarray:
    """Boxes of ink smeared along rows across gaps narrower than a text height (words -> phrases)."""
    k = max(3, round(th / 2)) | 1
    small = cv2.morphologyEx(pool2(clean), cv2.MORPH_CLOSE, np.ones((1, k), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(small, connectivity=8)
    boxes = np.zeros((len(stats) - 1, 5), dtype=np.int64)
    boxes[:, :4] = stats[1:, :4] * 2
    boxes[:, 2] += boxes[:, 0] + 2
    boxes[:, 3] += boxes[:, 1] + 2
    return boxes  # x0, y0, x1, y1, band id (scratch for the XY-cut)


def _split(items: np.ndarray, axis: int, gap: float, th: float) -> list[np.ndarray]:
    """Split boxes at empty stripes at least `gap` wide across them, along x (0) or y (1).

    Specks (dust, stray dots) do not count as ink here, or one in a gutter would close it;
    they go with the part their centre falls in.
    """
    size = np.maximum(items[:, 2] - items[:, 0], items[:, 3] - items[:, 1])
    solid = items[size >= 0.5 * th]
    if len(solid) < 2:
        return [items]
    lo, hi = solid[:, axis], solid[:, axis + 2]
    order = np.argsort(lo, kind="stable")
    reach = np.maximum.accumulate(hi[order])
    after = np.flatnonzero(lo[order][1:] - reach[:-1] >= gap)
    if after.size == 0:
        return [items]
    cuts = (reach[after] + lo[order][after + 1]) / 2
    where = np.searchsorted(cuts, (items[:, axis] + items[:, axis + 2]) / 2)
    return [items[where == i] for i in range(len(cuts) + 1) if np.any(where == i)]


def _has_vcut(items: np.ndarray, gap: float, th: float) -> bool:
    return len(items) > 1 and len(_split(items, 0, gap, th)) > 1


def _columnar(a: np.ndarray, b: np.ndarray, gap: float, th: float) -> bool:
    """Whether two stacked groups read as columns together: one has a gutter, the union keeps
    one, and each column of the union holds at least two bands (one line is no column)."""
    if not (_has_vcut(a, gap, th) or _has_vcut(b, gap, th)):
        return False
    parts = _split(np.concatenate([a, b]), 0, gap, th)
    return len(parts) > 1 and all(len(np.unique(p[:, 4])) >= 2 for p in parts)


def _xycut(
    items: np.ndarray,
    th: float,
    column: int,
    out: list[tuple[np.ndarray, int]],
    vertical_first: bool = False,
    lone: bool = False,
) -> None:
    """Recursive XY-cut in reading order. Bands that share a gutter are merged first, so two
    columns read column by column even where their line gaps line up across the page.
    `column` is -1 until the first vertical cut numbers the parts left to right."""
    # Gutters are judged against the region's own type size: a title's word spaces are wide.
    line_h = float(np.median(items[:, 3] - items[:, 1]))
    hgap, vgap = 0.5 * th, max(1.5 * th, 0.9 * line_h)
    if not vertical_first:
        bands = _split(items, 1, hgap, th)
        if len(bands) > 1:
            for i, band in enumerate(bands):
                band[:, 4] = i
            groups: list[tuple[np.ndarray, bool]] = []  # (items, merged from several bands)
            for band in bands:
                groups.append((band, False))
                while len(groups) > 1 and _columnar(groups[-2][0], groups[-1][0], vgap, th):
                    groups[-2:] = [(np.concatenate([groups[-2][0], groups[-1][0]]), True)]
            for group, merged in groups:
                _xycut(group, th, column, out, vertical_first=True, lone=not merged)
            return
    if lone and items[:, 3].max() - items[:, 1].min() < 1.7 * _tallest_phrase(items, th):
        # One line on its own: no other line confirms a gutter, and a double space
        # after a full stop in justified text is as wide as a narrow one.
        vgap = max(4 * th, 2.5 * line_h)
    parts = _split(items, 0, vgap, th)
    if len(parts) > 1:
        for i, part in enumerate(parts):
            _xycut(part, th, i if column < 0 else column, out)
        return
    out.append((items, max(column, 0)))


def _tallest_phrase(items: np.ndarray, th: float) -> float:
    """Height of a line's tallest phrase, specks aside: what one line spans, ascender to
    descender. The median phrase is shorter (commas and words with no descender pull it down),
    and against it a line with a 'g' under a capital passed for two (a book line split at the
    double space after its full stop)."""
    heights = items[:, 3] - items[:, 1]
    solid = heights[np.maximum(items[:, 2] - items[:, 0], heights) >= 0.5 * th]
    return float(solid.max()) if solid.size else float(heights.max())


def _runs(profile: np.ndarray) -> list[list[int]]:
    """[start, end) of the runs of non-zero entries."""
    on = np.concatenate([[0], (profile > 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(on))
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def _rows(sub: np.ndarray, glyphs: np.ndarray, th: float) -> list[list[float]]:
    """Line rows of one block: ink runs, touching lines split, accents and dots attached.

    `glyphs` holds (centre y, height) of the block's components, to judge each run against
    the size of its own letters (a title is not two touching lines).
    """
    profile = np.count_nonzero(sub, axis=1)
    out: list[list[float]] = []
    stack = _runs(profile)[::-1]
    while stack:
        a, b = stack.pop()
        inside = glyphs[(glyphs[:, 0] >= a) & (glyphs[:, 0] < b), 1]
        local = float(np.median(inside)) if inside.size else th
        if b - a > 2.8 * local and b - a > 1.5 * th:
            # touching lines: cut at the emptiest row of the middle part
            lo, hi = a + round(0.3 * (b - a)), b - round(0.3 * (b - a))
            cut = lo + int(np.argmin(profile[lo:hi]))
            stack.extend([[cut, b], [a, cut]])
        else:
            out.append([a, b, local])
    merged: list[list[float]] = []
    for run in out:  # i-dots, accents, commas: small runs close to a real line join it
        short, tall = sorted((run[1] - run[0], merged[-1][1] - merged[-1][0])) if merged else (0, 0)
        if (
            merged
            and run[0] - merged[-1][1] < 0.4 * th
            and (short < 0.6 * th or short < 0.4 * tall)
        ):
            merged[-1][1:] = [run[1], max(run[2], merged[-1][2])]
        else:
            merged.append(run)
    return merged


def _lines_in_block(
    clean: np.ndarray, glyphs: np.ndarray, box: Box, th: float, column: int
) -> list[Line]:
    x0, y0, x1, y1 = box
    sub = clean[y0:y1, x0:x1]
    cx, cy = glyphs[:, 0], glyphs[:, 1]
    mine = glyphs[(cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)][:, 1:]
    mine[:, 0] -= y0
    lines: list[Line] = []
    for a, b, local in _rows(sub, mine, th):
        a, b = int(a), int(b)
        cols = np.count_nonzero(sub[a:b], axis=0)
        # Join spans across word gaps; a gap as wide as a column gutter starts a new line.
        joined: list[list[int]] = []
        for s in _runs(cols):
            if joined and s[0] - joined[-1][1] < 5 * max(th, local):
                joined[-1][1] = s[1]
            else:
                joined.append(s)
        for c0, c1 in joined:
            ink_rows = np.flatnonzero(np.count_nonzero(sub[a:b, c0:c1], axis=1))
            r0, r1 = a + int(ink_rows[0]), a + int(ink_rows[-1]) + 1
            if r1 - r0 < 0.5 * th and c1 - c0 < 1.5 * th:
                continue  # a lone speck or dot is not a line
            lines.append((x0 + c0, y0 + r0, x0 + c1, y0 + r1, column))
    return lines


def find_lines(ink: np.ndarray, dpi: int = 300) -> list[Line]:
    """Text lines of a straightened ink mask (1 = ink) in reading order with their columns."""
    clean, stats, th, pictures = clean_mask(ink, dpi)
    x, y, w, h = (stats[:, i].astype(np.int64) for i in range(4))
    glyphs = np.stack([x + w // 2, y + h // 2, h], axis=1)
    items = _chunks(clean, th)
    if len(items) == 0:
        return []
    h, w = clean.shape
    items[:, 2] = np.minimum(items[:, 2], w)
    items[:, 3] = np.minimum(items[:, 3], h)
    blocks: list[tuple[np.ndarray, int]] = []
    _xycut(items, th, -1, blocks)
    lines: list[Line] = []
    for block, column in blocks:
        box = (
            int(block[:, 0].min()),
            int(block[:, 1].min()),
            int(block[:, 2].max()),
            int(block[:, 3].max()),
        )
        lines.extend(_lines_in_block(clean, glyphs, box, th, column))
    return [line for line in lines if not _inside_any(line, pictures)]


def _inside_any(line: Line, pictures: list[Box]) -> bool:
    """Whether most of a line lies within a picture's box: pale bits of a photo, not text."""
    x0, y0, x1, y1, _ = line
    for px0, py0, px1, py1 in pictures:
        ix = max(0, min(x1, px1) - max(x0, px0))
        iy = max(0, min(y1, py1) - max(y0, py0))
        if ix * iy >= 0.8 * (x1 - x0) * (y1 - y0):
            return True
    return False
