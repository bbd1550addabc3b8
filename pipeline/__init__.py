"""Quire: scanned documents in, searchable text out."""

__version__ = "0.1.0"
