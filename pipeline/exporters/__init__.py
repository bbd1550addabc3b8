"""Exporters registry: each format is derived from a DocumentResult (the stored rows), never by re-running OCR."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from pipeline.errors import QuireError
from pipeline.types import DocumentResult


class UnknownFormatError(QuireError):
    exit_code = 2
    http_status = 400


# Reads a page image's bytes by its store key (ObjectStore.get_bytes): the searchable PDF and
# the viewer draw the stored page images; nothing is recognized again.
ImageLoader = Callable[[str], bytes]


def file_name(result: DocumentResult, extension: str) -> str:
    """What an export of `result` is saved as: its source file's name, less its folders
    (`box1/0001.pdf`) and suffix, with the format's extension."""
    return f"{PurePosixPath(result.name).stem or 'document'}.{extension}"


def mirrored_name(name: str) -> str:
    """Where `quire run --out` puts the outputs of a file stored as `name`, less the extension:
    its path under the folder that run was given, which a stored name starts with
    (`D/sub1/same.pdf` -> `sub1/same`, apart from `D/sub2/same.pdf`), or its stem for a file
    given alone. Parts that would leave the output folder (`..`, a root) are dropped."""
    parts = [p for p in PurePosixPath(name).parts if p not in ("/", ".", "..")]
    parts = parts[1:] if len(parts) > 1 else parts
    stem = PurePosixPath(parts[-1]).stem if parts else ""
    return "/".join([*parts[:-1], stem or "document"])


class ImagesRequiredError(QuireError):
    exit_code = 2
    http_status = 500


@dataclass(frozen=True)
class Exporter:
    name: str
    extension: str  # file suffix without the leading dot; unique, as --out writes <name>.<ext>
    media_type: str
    render: Callable[..., bytes]  # (doc) -> bytes, or (doc, load_image) when needs_images
    needs_images: bool = False
    description: str = ""
    # A format that holds one page per file (PAGE) packs longer documents differently.
    multi_page_extension: str | None = None
    multi_page_media_type: str | None = None

    def extension_for(self, doc: DocumentResult) -> str:
        return self.extension_for_pages(len(doc.pages))

    def extension_for_pages(self, pages: int) -> str:
        """The file suffix of an export of a document of `pages` pages."""
        multi = pages > 1 and self.multi_page_extension
        return self.multi_page_extension if multi else self.extension  # type: ignore[return-value]

    def media_type_for(self, doc: DocumentResult) -> str:
        multi = len(doc.pages) > 1 and self.multi_page_media_type
        return self.multi_page_media_type if multi else self.media_type  # type: ignore[return-value]

    def export(self, doc: DocumentResult, load_image: ImageLoader | None = None) -> bytes:
        """The export's bytes; formats built on the page images read them through load_image."""
        if not self.needs_images:
            return self.render(doc)
        if load_image is None:
            raise ImagesRequiredError(f"the {self.name} export needs the page images")
        return self.render(doc, load_image)


_REGISTRY: dict[str, Exporter] = {}
ALIASES = {"txt": "text", "html": "hocr", "searchable-pdf": "pdf"}


def register(exporter: Exporter) -> Exporter:
    _REGISTRY[exporter.name] = exporter
    return exporter


def formats() -> list[str]:
    return sorted(_REGISTRY)


# The order the help and README list formats in; "text" is typed "txt" (both are taken).
_LISTED = ("text", "json", "hocr", "alto", "page", "pdf", "pdfa")


def typed_formats() -> str:
    """The valid formats as users type them (`txt, json, ...`), for error messages."""
    names = sorted(_REGISTRY, key=lambda n: (_LISTED.index(n) if n in _LISTED else len(_LISTED), n))
    return ", ".join("txt" if n == "text" else n for n in names)


def get_exporter(name: str) -> Exporter:
    key = name.strip().lower()
    try:
        return _REGISTRY[ALIASES.get(key, key)]
    except KeyError:
        raise UnknownFormatError(
            f"unknown format {name!r}; valid formats: {typed_formats()}"
        ) from None


def parse_formats(spec: str) -> list[Exporter]:
    """'txt,json' -> exporters, accepting aliases (txt/text); unknown names list the valid ones."""
    aliases = ALIASES
    names = [aliases.get(n.strip().lower(), n.strip().lower()) for n in spec.split(",") if n.strip()]
    if not names:
        raise UnknownFormatError(f"no format given; valid formats: {typed_formats()}")
    return [get_exporter(n) for n in dict.fromkeys(names)]


# Importing the format modules registers them.
from pipeline.exporters import (  # noqa: F401
    alto_export,
    hocr_export,
    json_export,
    page_export,
    pdf_export,
    pdfa_export,
    text_export,
)
