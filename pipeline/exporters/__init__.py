"""Exporters registry: each format is derived from a DocumentResult (the stored rows), never by re-running OCR."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.errors import QuireError
from pipeline.types import DocumentResult


class UnknownFormatError(QuireError):
    exit_code = 2
    http_status = 400


@dataclass(frozen=True)
class Exporter:
    name: str
    extension: str  # file suffix without the dot
    media_type: str
    render: Callable[[DocumentResult], bytes]


_REGISTRY: dict[str, Exporter] = {}


def register(exporter: Exporter) -> Exporter:
    _REGISTRY[exporter.name] = exporter
    return exporter


def formats() -> list[str]:
    return sorted(_REGISTRY)


def get_exporter(name: str) -> Exporter:
    try:
        return _REGISTRY[name.strip().lower()]
    except KeyError:
        raise UnknownFormatError(
            f"unknown format {name!r}; valid formats: {', '.join(formats())}"
        ) from None


def parse_formats(spec: str) -> list[Exporter]:
    """'txt,json' -> exporters, accepting aliases (txt/text); unknown names list the valid ones."""
    aliases = {"txt": "text"}
    names = [aliases.get(n.strip().lower(), n.strip().lower()) for n in spec.split(",") if n.strip()]
    if not names:
        raise UnknownFormatError(f"no format given; valid formats: {', '.join(formats())}")
    return [get_exporter(n) for n in dict.fromkeys(names)]


# Importing the format modules registers them.
from pipeline.exporters import json_export, text_export  # noqa: E402,F401
