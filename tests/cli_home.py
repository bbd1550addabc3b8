"""The local CLI as its tests drive it: a QUIRE_HOME of the test's own (SQLite and a local folder,
no servers), `quire` called in-process, and the home's database read back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import get_settings


def quire_home(tmp_path: Path, model: Path | None, dpi: int | None,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """For a fixture to yield from: QUIRE_HOME under `tmp_path`, reading with `model` at `dpi`
    (None: the settings' defaults)."""
    home = tmp_path / "home"
    monkeypatch.setenv("QUIRE_HOME", str(home))
    if model is not None:
        monkeypatch.setenv("QUIRE_MODEL", str(model))
    if dpi is not None:
        monkeypatch.setenv("QUIRE_RENDER__DPI", str(dpi))
    for name in ("QUIRE_DATABASE_URL", "QUIRE_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    # `quire status` reads settings once per process: this test's, not an earlier test's.
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def quire(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def db_rows(home: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(home / "quire.sqlite") as conn:
        return conn.execute(sql).fetchall()
