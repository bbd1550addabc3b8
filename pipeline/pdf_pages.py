"""Attributes of a PDF page (pikepdf objects) that may be inherited from its parent Pages nodes."""

from __future__ import annotations


def inherited(page_obj, key: str):
    """A page attribute that may sit on a parent Pages node (MediaBox, Rotate, Resources)."""
    node, seen = page_obj, 0
    while node is not None and seen < 64:
        if key in node:
            return node[key]
        node, seen = node.get("/Parent"), seen + 1
    return None


def page_box(page) -> tuple[float, float, float, float]:
    """The page's MediaBox as (x0, y0, width, height) in points, whichever corners it names."""
    x0, y0, x1, y1 = (float(v) for v in inherited(page.obj, "/MediaBox"))
    return min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)
