"""The files a command reads from the paths it is given: files as given, folders walked for
documents (hidden entries skipped), and the files of those folders it passes over."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipeline.render import DOCUMENT_SUFFIXES, not_regular


def _visible_tree(folder: Path, skip: Collection[Path] = ()) -> Iterator[tuple[list[Path], list[Path], list[Path]]]:
    """For each folder under `folder` with no hidden part (.git, .DS_Store), one listed at a
    time: its visible files, its links to folders (listed, never followed: a link back up
    would loop), and its named pipes, sockets and devices (never opened: a pipe hangs a read).
    Folders and files in `skip` (resolved paths) are left out, as if hidden."""
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _skipped(Path(top) / d, skip)]
        entries = [Path(top) / n for n in names if not n.startswith(".") and not _skipped(Path(top) / n, skip)]
        yield ([f for f in entries if f.is_file()],
               [Path(top) / d for d in dirs if (Path(top) / d).is_symlink()],
               [f for f in entries if _special(f)])


def _skipped(path: Path, skip: Collection[Path]) -> bool:
    # Resolved only when its name is one of theirs: a walk of 100,000 files stays a listing.
    return any(path.name == own.name for own in skip) and path.resolve() in skip


def _special(path: Path) -> str | None:
    """What a named pipe, socket or device is, in words; None for anything else (a link to
    nothing included)."""
    try:
        return not_regular(path.stat().st_mode)
    except OSError:
        return None


def visible_files(folder: Path, skip: Collection[Path] = ()) -> Iterator[Path]:
    """Every file under `folder` with no hidden part (.git, .DS_Store) below it, in no set order,
    one directory listed at a time; links to folders are not followed (`skip`: _visible_tree)."""
    for files, _, _ in _visible_tree(folder, skip):
        yield from files


def collect_inputs(paths: Iterable[Path], suffixes: Collection[str] = DOCUMENT_SUFFIXES,
                   skip: Collection[Path] = ()) -> list[Path]:
    """Files as given, folders walked recursively for files with `suffixes` (hidden ones and
    those under `skip` left out), each folder's in path order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in visible_files(path, skip) if p.suffix.lower() in suffixes))
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def passed_over(paths: Iterable[Path], skip: Collection[Path] = ()) -> tuple[list[str], list[str], list[str]]:
    """What the folders given hold that is not run or submitted, in one walk, so the command
    can say so: files that are not a document by their suffix, links to folders (not
    followed), and named pipes, sockets and devices, each with what it is ("x.pdf (a named
    pipe)"); hidden ones aside, each as a path within its folder."""
    files: list[str] = []
    links: list[str] = []
    specials: list[str] = []
    for path in paths:
        if not path.is_dir():
            continue
        others: list[Path] = []
        linked: list[Path] = []
        odd: list[Path] = []
        for here, folders, not_files in _visible_tree(path, skip):
            others += [p for p in here if p.suffix.lower() not in DOCUMENT_SUFFIXES]
            linked += folders
            odd += not_files
        files += [p.relative_to(path).as_posix() for p in sorted(others)]
        links += [p.relative_to(path).as_posix() for p in sorted(linked)]
        specials += [f"{p.relative_to(path).as_posix()} ({_special(p)})" for p in sorted(odd)]
    return files, links, specials


def own_data(database_url: str, storage_url: str) -> set[Path]:
    """Where the embedded setup keeps Quire's own data on this machine (resolved): the store's
    folder and the SQLite database's files. A folder given to `quire run` may hold them
    (`cd scans && quire run .` keeps ./quire-data there): their page images are not scans."""
    own: set[Path] = set()
    if storage_url.startswith("file:"):
        own.add(Path(unquote(urlparse(storage_url).path)).resolve())
    if database_url.startswith("sqlite:///"):
        database = Path(database_url.removeprefix("sqlite:///")).resolve()
        own |= {database.with_name(database.name + end) for end in ("", "-wal", "-shm", "-journal")}
    return own


def under_folders(own: Collection[Path], paths: Iterable[Path]) -> list[Path]:
    """Those of `own` that exist inside one of the folders in `paths` (what a walk of them would
    have met)."""
    folders = [p.resolve() for p in paths if p.is_dir()]
    return sorted(o for o in own if o.exists() and not o.name.endswith(("-wal", "-shm", "-journal"))
                  and any(o != f and o.is_relative_to(f) for f in folders))
