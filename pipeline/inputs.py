"""The files a command reads from the paths it is given: files as given, folders walked for
documents (hidden entries skipped), and the files of those folders it passes over."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from pipeline.render import DOCUMENT_SUFFIXES, not_regular


def _visible_tree(folder: Path) -> Iterator[tuple[list[Path], list[Path], list[Path]]]:
    """For each folder under `folder` with no hidden part (.git, .DS_Store), one listed at a
    time: its visible files, its links to folders (listed, never followed: a link back up
    would loop), and its named pipes, sockets and devices (never opened: a pipe hangs a read)."""
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        entries = [Path(top) / n for n in names if not n.startswith(".")]
        yield ([f for f in entries if f.is_file()],
               [Path(top) / d for d in dirs if (Path(top) / d).is_symlink()],
               [f for f in entries if _special(f)])


def _special(path: Path) -> str | None:
    """What a named pipe, socket or device is, in words; None for anything else (a link to
    nothing included)."""
    try:
        return not_regular(path.stat().st_mode)
    except OSError:
        return None


def visible_files(folder: Path) -> Iterator[Path]:
    """Every file under `folder` with no hidden part (.git, .DS_Store) below it, in no set order,
    one directory listed at a time; links to folders are not followed."""
    for files, _, _ in _visible_tree(folder):
        yield from files


def collect_inputs(paths: Iterable[Path], suffixes: Collection[str] = DOCUMENT_SUFFIXES) -> list[Path]:
    """Files as given, folders walked recursively for files with `suffixes` (hidden ones skipped),
    each folder's in path order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in visible_files(path) if p.suffix.lower() in suffixes))
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def passed_over(paths: Iterable[Path]) -> tuple[list[str], list[str], list[str]]:
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
        for here, folders, not_files in _visible_tree(path):
            others += [p for p in here if p.suffix.lower() not in DOCUMENT_SUFFIXES]
            linked += folders
            odd += not_files
        files += [p.relative_to(path).as_posix() for p in sorted(others)]
        links += [p.relative_to(path).as_posix() for p in sorted(linked)]
        specials += [f"{p.relative_to(path).as_posix()} ({_special(p)})" for p in sorted(odd)]
    return files, links, specials
