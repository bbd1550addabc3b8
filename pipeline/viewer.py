"""The page viewer: one self-contained HTML file per document with the page images, line boxes
coloured by confidence and the recognized text beside them (served by the API and `quire view`)."""

from __future__ import annotations

import base64
import io
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from pipeline.exporters import ImageLoader
from pipeline.exporters.markup import SOFTWARE, SOFTWARE_VERSION, clean, render_template
from pipeline.types import DocumentResult, PageResult

# Confidence bands: at or above MID is green, at or above LOW amber, below LOW red.
MID_CONFIDENCE = 0.9
LOW_CONFIDENCE = 0.7
MAX_IMAGE_WIDTH = 1600  # px of the embedded JPEG; boxes stay in page pixels (SVG viewBox)
JPEG_QUALITY = 80


def level(confidence: float) -> str:
    if confidence >= MID_CONFIDENCE:
        return "high"
    return "mid" if confidence >= LOW_CONFIDENCE else "low"


def image_data_uri(data: bytes, max_width: int = MAX_IMAGE_WIDTH) -> str:
    """The page image downscaled to max_width as a JPEG data URI (a few hundred KB a page)."""
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("L" if opened.mode in ("1", "L", "I", "I;16") else "RGB")
        if image.width > max_width:
            height = max(1, round(image.height * max_width / image.width))
            image = image.resize((max_width, height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _page(page: PageResult, load_image: ImageLoader | None) -> dict[str, object]:
    image = ""
    if load_image is not None and page.image_key:
        image = image_data_uri(load_image(page.image_key))
    return {
        "number": page.number, "width": page.width, "height": page.height, "image": image,
        "lines": [
            {"id": f"p{page.number}-l{line.order + 1}", "number": line.order + 1,
             "bbox": line.bbox, "text": clean(line.text), "confidence": line.confidence,
             "percent": round(line.confidence * 100), "level": level(line.confidence)}
            for line in page.lines
        ],
    }


def render_viewer(doc: DocumentResult, load_image: ImageLoader | None) -> bytes:
    """The viewer page for a document from its rows; page images come through load_image
    (ObjectStore.get_bytes). Nothing outside the file is fetched: it works offline."""
    pages = [_page(p, load_image) for p in doc.pages]
    lines = [line for p in doc.pages for line in p.lines]
    return render_template(
        "viewer.html.j2", doc=doc, pages=pages, total_lines=len(lines),
        low_lines=sum(1 for line in lines if line.confidence < LOW_CONFIDENCE),
        mid=MID_CONFIDENCE, low=LOW_CONFIDENCE, software=SOFTWARE, version=SOFTWARE_VERSION,
    )


def make_server(html: bytes, port: int = 0) -> ThreadingHTTPServer:
    """A local server (127.0.0.1 only) answering GET / with the viewer page; the caller runs
    serve_forever(). Port 0 picks a free one: server.server_address[1]."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/", "/index.html"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, format: str, *args: object) -> None:  # quiet on the terminal
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)
