"""HEIC/HEIF, what phones save photos as: Pillow reads it through pillow-heif's plugin (AVIF it
reads itself). Registered on the first such file, as the import costs 30 ms most runs never need."""

from __future__ import annotations

HEIF_SUFFIXES = frozenset({".heic", ".heif"})


def enable() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
