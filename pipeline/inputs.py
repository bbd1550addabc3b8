"""The files a command reads from the paths it is given: files as given, folders walked for
documents (hidden entries skipped), and the files of those folders it passes over."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from pipeline.render import DOCUMENT_SUFFIXES


def visible_files(folder: Path) -> Iterator[Path]:
    """Every file under `folder` with no hidden part (.git, .DS_Store) below it, in no set order,
    one directory listed at a time; links to folders are not followed."""
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(top) / name
            if not name.startswith(".") and path.is_file():
                yield path


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


def other_files(paths: Iterable[Path]) -> list[str]:
    """Files in the folders given that are not run or submitted (not a document by their suffix;
    hidden ones aside), as paths within their folder, so the command can say it passed them over."""
    return [p.relative_to(path).as_posix() for path in paths if path.is_dir()
            for p in sorted(p for p in visible_files(path) if p.suffix.lower() not in DOCUMENT_SUFFIXES)]


def linked_folders(paths: Iterable[Path]) -> list[str]:
    """Links to folders inside the folders given, which walks do not follow (a link back up
    would loop), as paths within their folder, so the command can say so."""
    found = []
    for path in paths:
        if not path.is_dir():
            continue
        for top, dirs, _ in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [(Path(top) / d).relative_to(path).as_posix()
                      for d in sorted(dirs) if (Path(top) / d).is_symlink()]
    return found
