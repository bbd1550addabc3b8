"""What the `quire` command modules share: the one-line error exit, and how an --out or --json
argument names a folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    """End the command with one line on stderr (no traceback) and exit status `code`."""
    typer.echo(f"quire: {message}", err=True)
    raise typer.Exit(code)


def names_a_folder(given: str) -> bool:
    """Whether an output argument means a folder: one that exists, or a path ending in a separator
    (a folder still to be made)."""
    return given.endswith(("/", os.sep)) or Path(given).is_dir()
