"""Full-text search over recognized lines: SQLite FTS5 (embedded) or PostgreSQL tsvector."""

from __future__ import annotations

from typing import Any

# Created by migrations/versions/0002_search.py; the models do not declare them.
FTS_TABLE = "lines_fts"
PG_INDEX = "ix_lines_text_tsv"


def is_search_object(name: str | None, type_: str) -> bool:
    """True for the FTS table, its shadow tables and the GIN index (outside the models)."""
    if name is None:
        return False
    if type_ == "table":
        return name == FTS_TABLE or name.startswith(FTS_TABLE + "_")
    return type_ == "index" and name == PG_INDEX


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic autogenerate filter: compare everything but the search objects."""
    return not is_search_object(name, type_)
