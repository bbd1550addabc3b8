"""The stages for one document, shared by the local runner and the Celery tasks: ingest, save text, finish."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline import cleanup, page_images, storage
from pipeline.config import RETRY_BELOW, RenderOptions, Settings, resolve_model_path
from pipeline.db import repo
from pipeline.db.models import LineStatus
from pipeline.db.session import session_scope
from pipeline.errors import DocumentGoneError
from pipeline.exporters import Exporter
from pipeline.model_input import PREPARATION_VERSION
from pipeline.orientation import segmented
from pipeline.render import render_pages
from pipeline.types import LineText

# Bump when segmentation changes what it finds: results made by another version are redone.
SEGMENTER_VERSION = "2"  # 2: pages turned upright (their EXIF orientation, then their text)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=32)
def _cached_digest(path: Path, size: int, mtime_ns: int) -> str:
    # size and mtime only key the cache: the file is hashed again once it has been rewritten.
    return file_sha256(path)[:16]


def _file_digest(path: Path) -> str:
    """A model file's digest (weights, language model), hashed once per version of the file."""
    stat = path.stat()
    return _cached_digest(path, stat.st_size, stat.st_mtime_ns)


def model_version(model: str) -> str:
    """The weights' digest for a model on disk (a shipped model retrained under the same name
    reads differently), else the name itself (a hub name pins nothing more here)."""
    weights = Path(resolve_model_path(model)) / "model.safetensors"
    if not weights.is_file():
        return model
    return f"{model}@{_file_digest(weights)}"


def language_model_version(model: str) -> str:
    """The digest of the model's character language model, or 'none' where it has none."""
    from pipeline.char_lm import FILE_NAME

    lm = Path(resolve_model_path(model)) / FILE_NAME
    return _file_digest(lm) if lm.is_file() else "none"


def model_decoding(model: str, decode: str) -> str:
    """The decoding `decode` stands for: 'auto' reads what a model on disk records."""
    config = Path(resolve_model_path(model)) / "config.json"
    if decode != "auto" or not config.is_file():
        return decode
    try:
        return json.loads(config.read_text()).get("quire_decoding") or "attention"
    except (OSError, ValueError):
        return decode


def profile_key(*, model: str, dpi: int, beam: int, decode: str = "auto",
                retry_below: float = RETRY_BELOW, language_model: bool = True,
                embedded_scans: bool = True, rotate_pages: bool = True) -> str:
    """A short hash of everything that changes the result; the same file under it is not redone."""
    fields = {"model": model_version(model), "dpi": dpi, "beam": beam, "seg": SEGMENTER_VERSION,
              "prep": PREPARATION_VERSION, "decode": model_decoding(model, decode),
              "retry_below": retry_below,
              "lm": language_model_version(model) if language_model else "off"}
    if not embedded_scans:
        fields["scans"] = "rendered"  # (only then: the profiles of earlier results stay as they were)
    if not rotate_pages:
        fields["turns"] = "off"
    spec = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class JobOptions:
    """What a job asks for: these decide the document profile (model, dpi, beam, decoding, retry,
    language model) and exports. The decoding, retry and language model are the deployment's
    (QUIRE_RECOGNIZE__DECODE or `quire run --decode`, QUIRE_RECOGNIZE__RETRY_BELOW,
    QUIRE_RECOGNIZE__LANGUAGE_MODEL)."""

    model: str
    dpi: int
    beam: int
    formats: tuple[str, ...] = ("text", "json")
    decode: str = "auto"
    retry_below: float = RETRY_BELOW
    language_model: bool = True
    embedded_scans: bool = True  # QUIRE_RENDER__EMBEDDED_SCANS: scanned PDF pages taken from the file
    rotate_pages: bool = True  # QUIRE_RENDER__ROTATE_PAGES: pages turned upright before segmentation

    @classmethod
    def from_settings(cls, settings: Settings, *, model: str | None = None,
                      dpi: int | None = None, beam: int | None = None,
                      formats: Iterable[str] | None = None) -> JobOptions:
        return cls(model or settings.model, dpi or settings.render.dpi,
                   beam or settings.recognize.beam, tuple(formats or ("text", "json")),
                   settings.recognize.decode, settings.recognize.retry_below,
                   settings.recognize.language_model, settings.render.embedded_scans,
                   settings.render.rotate_pages)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JobOptions:
        """The options a job stored (`as_dict`), older jobs' missing fields at their defaults."""
        return cls(values["model"], values["dpi"], values["beam"],
                   tuple(values.get("formats") or ("text", "json")), values.get("decode", "auto"),
                   values.get("retry_below", RETRY_BELOW), values.get("language_model", True),
                   values.get("embedded_scans", True), values.get("rotate_pages", True))

    def as_dict(self) -> dict[str, Any]:
        values = {"model": self.model, "dpi": self.dpi, "beam": self.beam,
                  "formats": list(self.formats), "decode": self.decode,
                  "retry_below": self.retry_below, "language_model": self.language_model}
        if not self.embedded_scans:  # only then, so the keys of jobs begun before stay the same
            values["embedded_scans"] = False
        if not self.rotate_pages:
            values["rotate_pages"] = False
        return values

    @property
    def profile(self) -> str:
        return profile_key(model=self.model, dpi=self.dpi, beam=self.beam, decode=self.decode,
                           retry_below=self.retry_below, language_model=self.language_model,
                           embedded_scans=self.embedded_scans, rotate_pages=self.rotate_pages)


def reading_described(options: JobOptions) -> str:
    """What reads the text, in words for a summary: model, decoding, beam, language model."""
    parts = [f"{model_decoding(options.model, options.decode)} decoding"]
    if options.beam > 1:
        parts.append(f"beam {options.beam}")
    if options.language_model and language_model_version(options.model) != "none":
        parts.append("character language model")
    return f"{options.model} ({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class DocumentRef:
    id: str
    sha256: str
    profile: str
    # A `quire run --redo` reading in its own row (pipeline.db.readings): its page images and
    # crops go under keys of its own, never over the earlier reading's, which stays whole
    # until the new one is complete and takes its place.
    redo: bool = False

    def page_key(self, number: int, extension: str = "png") -> str:
        return storage.page_key(self.sha256, self.profile, number, self.id if self.redo else None,
                                extension)

    def line_key(self, number: int, position: int) -> str:
        return storage.line_key(self.sha256, self.profile, number, position,
                                self.id if self.redo else None)


@dataclass(frozen=True)
class IngestedPage:
    """A page saved with its line rows: `line_ids` and `crops` are the lines still to read (all
    of them, but on a page read in part before); crops travel in memory for the local runner only."""

    number: int
    page_id: int
    line_ids: tuple[int, ...]
    crops: tuple[np.ndarray, ...]
    lines: int  # the page's lines, read before or not


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Level 1: written once; speed matters more than a few % of size.
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decode_gray(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def ingest_pages(
    engine,
    store: storage.ObjectStore,
    doc: DocumentRef,
    source: Path,
    options: RenderOptions,
    *,
    store_crops: bool,
    skip: Container[int] = frozenset(),
    counted: Callable[[int], None] | None = None,
) -> Iterator[IngestedPage]:
    """Render, segment and save each page but those numbered in `skip` (finished before); rows
    and keys are deterministic, so a rerun overwrites, and a line found again keeps its text.
    `counted` is told the page count once it is known (render_pages). DocumentGoneError when the
    document is deleted meanwhile (nothing of the page is left)."""
    lossy = page_images.lossy_allowed(options.page_images, source)
    for page in render_pages(source, options, skip, counted):
        page, seg, rotation = segmented(page, rotate=options.rotate_pages)
        kept = (page.number == 1 and page_images.source_jpeg(source, page.image)) \
            or page_images.encode_page(page.image, lossy=lossy)
        image_key = doc.page_key(page.number, kept.extension)
        store.put_bytes(image_key, kept.data, content_type=kept.media_type)
        crop_keys: list[str | None] = [None] * len(seg.lines)
        if store_crops:
            keys = [doc.line_key(page.number, line.order) for line in seg.lines]
            storage.put_many(store, [(key, encode_png(crop)) for key, crop in zip(keys, seg.crops)],
                             content_type="image/png")
            crop_keys[:] = keys
        try:
            with session_scope(engine) as s:
                row = repo.save_page(
                    s, doc.id, number=page.number, image_key=image_key, width=page.width,
                    height=page.height, dpi=page.dpi, angle=seg.angle, rotation=rotation,
                )
                lines = repo.save_lines(
                    s, row.id, [(lb.order, lb.bbox, key) for lb, key in zip(seg.lines, crop_keys)]
                )
                unread = [i for i, line in enumerate(lines) if line.status == LineStatus.PENDING]
                page_id, line_ids = row.id, tuple(lines[i].id for i in unread)
        except DocumentGoneError:
            # Deleted since the last page (its job cancelled, then the document): its deletion
            # listed the store before this page's objects were written, so they are left to us.
            cleanup.discard(engine, store, doc.id, {image_key, *(key for key in crop_keys if key)})
            raise
        yield IngestedPage(page.number, page_id, line_ids, tuple(seg.crops[i] for i in unread), len(lines))


def save_texts(engine, line_ids: Sequence[int], texts: Sequence[LineText], model: str) -> None:
    with session_scope(engine) as s:
        repo.set_line_texts(
            s, [(i, t.text, t.confidence) for i, t in zip(line_ids, texts)], model=model
        )


def finish_document(
    engine, store: storage.ObjectStore, doc: DocumentRef, page_count: int,
    exporters: Sequence[Exporter], name: str | None = None,
) -> dict[str, bytes]:
    """Mark the document done and write every export to the store; returns them by extension
    (`name`: as in `write_exports`)."""
    with session_scope(engine) as s:
        repo.finish_document(s, doc.id, page_count)
        return write_exports(s, store, doc, exporters, name)


def write_exports(s, store: storage.ObjectStore, doc: DocumentRef, exporters: Sequence[Exporter],
                  name: str | None = None) -> dict[str, bytes]:
    """Every export to the store; `name` is the file's name in them (default: the name the
    document was first sent by)."""
    result = repo.load_document_result(s, doc.id)
    if name is not None:
        result = replace(result, name=name)
    outputs: dict[str, bytes] = {}
    for exporter in exporters:
        # Derived from the rows; the PDF also reads the stored page images, never re-recognizes.
        data = exporter.export(result, store.get_bytes)
        extension = exporter.extension_for(result)
        store.put_bytes(
            storage.export_key(doc.sha256, doc.profile, exporter.name, extension), data,
            content_type=exporter.media_type_for(result),
        )
        outputs[extension] = data
    return outputs
