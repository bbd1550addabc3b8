"""JSON: pages with size and resolution, lines with box, text and confidence."""

from __future__ import annotations

import json

from pipeline.exporters import Exporter, register
from pipeline.types import DocumentResult


def to_dict(doc: DocumentResult) -> dict:
    return {
        "document": doc.name,
        "sha256": doc.sha256,
        "model": doc.model,
        "pages": [
            {
                "number": page.number,
                "width": page.width,
                "height": page.height,
                "dpi": page.dpi,
                "rotation": page.rotation,
                "deskew_angle": round(page.angle, 3),
                "lines": [
                    {
                        "order": line.order,
                        "bbox": line.bbox.as_list(),
                        "text": line.text,
                        "confidence": round(line.confidence, 4),
                    }
                    for line in page.lines
                ],
            }
            for page in doc.pages
        ],
    }


def render_json(doc: DocumentResult) -> bytes:
    return (json.dumps(to_dict(doc), ensure_ascii=False, indent=2) + "\n").encode("utf-8")


register(Exporter("json", "json", "application/json", render_json))
