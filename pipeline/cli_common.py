"""What the `quire` command modules share: the one-line error exit, how an --out or --json
argument names a folder, the --api and --token options, this node's backend, progress bars."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

# Options `quire run` and `quire lines` share, their defaults where the settings have them.
DPI_HELP = "Resolution PDFs are rendered at. Default: QUIRE_RENDER__DPI, else 300."
DEVICES = "auto (CUDA when present), cpu, cuda or cuda:N."  # what Recognizer (pick_device) takes
DEVICE_HELP = DEVICES + " Default: QUIRE_DEVICE, else auto."


def fail(message: str, code: int = 2) -> NoReturn:
    """End the command with one line on stderr (no traceback) and exit status `code`."""
    typer.echo(f"quire: {message}", err=True)
    raise typer.Exit(code)


def file_in_the_way(folder: Path) -> Path | None:
    """The file standing where `folder` or one of its parents should be (`scan.pdf` for
    scan.pdf/out/), which no mkdir gets past; None if the folder can be made."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def write_output(target: Path, data: bytes) -> None:
    """Write an output file (export's, view's), its folders made. A path that cannot be written
    (a file in the way, no permission, a full disk) ends the command with one line, not a
    traceback."""
    blocking = file_in_the_way(target.parent)
    if blocking is not None:
        fail(f"cannot write {target}: {blocking} is a file, not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror or exc}")


def names_a_folder(given: str) -> bool:
    """Whether an output argument means a folder: one that exists, or a path ending in a separator
    (a folder still to be made)."""
    if given.endswith(("/", os.sep)):
        return True
    try:
        return Path(given).is_dir()
    except OSError:  # a name too long to look up: no folder, and writing it says why
        return False


def open_existing_database(url: str):
    """The database at `url`, for a command that only reads it. An embedded SQLite file that is
    not there means nothing was processed with this QUIRE_HOME (often: run from another folder);
    that is said plainly instead of an empty database being made there."""
    from sqlalchemy.engine import make_url

    from pipeline.db.session import open_database
    from pipeline.errors import NoDataError

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).exists():
        raise NoDataError(
            f"no Quire data at {parsed.database}: nothing was processed with this QUIRE_HOME (default "
            "./quire-data, in the folder the command runs in); run `quire run FILES` first, or set "
            "QUIRE_HOME or QUIRE_DATABASE_URL to where the data is")
    return open_database(url)


def counted(n: int, word: str, plural: str | None = None, *, grouped: bool = False) -> str:
    """`1 file`, `2 files`: counts in messages read as English; `grouped` writes thousands with
    separators (`12,000 files`, as a run's summary does)."""
    return (f"{n:,}" if grouped else f"{n}") + f" {word if n == 1 else plural or word + 's'}"


# Options of the commands that reach a job: through the job API, or this node's database.
Api = Annotated[str | None, typer.Option("--api", help="Job API URL; default: this node's database and broker.")]
Token = Annotated[str | None, typer.Option("--token", envvar="QUIRE_TOKEN", help="API bearer token.")]


def node_backend(existing: bool = False) -> tuple[Any, Any, Any]:
    """(settings, engine, store) of this node; the embedded SQLite default migrates itself.
    `existing`: a command that only reads or changes what is there; no database is made."""
    from pipeline import storage
    from pipeline.config import get_settings
    from pipeline.db.session import open_database

    settings = get_settings()
    engine = (open_existing_database if existing else open_database)(settings.resolved_database_url())
    store = storage.open_store(settings.resolved_storage_url(), settings.s3_endpoint_url)
    return settings, engine, store


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool) -> Any:
    """A tqdm progress bar on stderr, silent unless `enabled`."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                file=sys.stderr)
