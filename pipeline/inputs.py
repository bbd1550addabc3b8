"""The files a command reads from the paths it is given: files as given, folders walked for
documents (hidden entries skipped), the files of those folders it passes over, and what each
input is called in the outputs and the database."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from urllib.parse import unquote, urlparse

from pipeline.document_checks import DOCUMENT_SUFFIXES, not_regular
from pipeline.render import count_pages


@dataclass
class Found:
    """What one walk of the paths given found: the documents, and what it passed over."""

    documents: list[Path] = field(default_factory=list)  # to read, each folder's in path order
    others: list[str] = field(default_factory=list)  # files that are not documents by suffix
    links: list[str] = field(default_factory=list)  # links to folders (not followed)
    specials: list[str] = field(default_factory=list)  # named pipes, sockets, devices, with what


def _visible_tree(folder: Path, skip: Collection[Path] = ()
                  ) -> Iterator[tuple[list[Path], list[Path], list[tuple[Path, str]]]]:
    """For each folder under `folder` with no hidden part (.git, .DS_Store), one listed at a
    time: its visible files, its links to folders (listed, never followed: a link back up
    would loop), and its named pipes, sockets and devices with what each is (never opened: a
    pipe hangs a read). Each entry is looked at once (one stat). Folders and files in `skip`
    (resolved paths) are left out, as if hidden."""
    for top, dirs, names in os.walk(folder):
        here = Path(top)  # one Path a folder: its files share its parts
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _skipped(here / d, skip)]
        files: list[Path] = []
        specials: list[tuple[Path, str]] = []
        for name in names:
            if name.startswith("."):
                continue
            entry = here / name
            if _skipped(entry, skip):
                continue
            try:
                mode = entry.stat().st_mode
            except OSError:  # a link to nothing: neither a file nor anything to name
                continue
            if S_ISREG(mode):
                files.append(entry)
            elif (kind := not_regular(mode)) is not None:
                specials.append((entry, kind))
        yield files, [here / d for d in dirs if (here / d).is_symlink()], specials


def _skipped(path: Path, skip: Collection[Path]) -> bool:
    # Resolved only when its name is one of theirs: a walk of 100,000 files stays a listing.
    return any(path.name == own.name for own in skip) and path.resolve() in skip


def visible_files(folder: Path, skip: Collection[Path] = ()) -> Iterator[Path]:
    """Every file under `folder` with no hidden part (.git, .DS_Store) below it, in no set order,
    one directory listed at a time; links to folders are not followed (`skip`: _visible_tree)."""
    for files, _, _ in _visible_tree(folder, skip):
        yield from files


def find_inputs(paths: Iterable[Path], suffixes: Collection[str] = DOCUMENT_SUFFIXES,
                skip: Collection[Path] = ()) -> Found:
    """One walk of `paths`: files as given, and each folder walked recursively for files with
    `suffixes` (hidden ones and those under `skip` left out), each folder's in path order;
    beside them, what the folders hold that is not read, so the command can say so (`Found`),
    each as a path within its folder, hidden ones aside."""
    found = Found()
    documents: list[Path] = []
    for path in paths:
        if not path.is_dir():
            documents.append(path)
            continue
        read: list[Path] = []
        others: list[Path] = []
        linked: list[Path] = []
        odd: list[tuple[Path, str]] = []
        for files, folders, specials in _visible_tree(path, skip):
            for file in files:
                (read if file.suffix.lower() in suffixes else others).append(file)
            linked += folders
            odd += specials
        documents.extend(sorted(read))
        found.others += [p.relative_to(path).as_posix() for p in sorted(others)]
        found.links += [p.relative_to(path).as_posix() for p in sorted(linked)]
        found.specials += [f"{p.relative_to(path).as_posix()} ({kind})" for p, kind in sorted(odd)]
    found.documents = list(dict.fromkeys(documents))
    return found


def collect_inputs(paths: Iterable[Path], suffixes: Collection[str] = DOCUMENT_SUFFIXES,
                   skip: Collection[Path] = ()) -> list[Path]:
    """Files as given, folders walked recursively for files with `suffixes` (find_inputs)."""
    return find_inputs(paths, suffixes, skip).documents


def passed_over(paths: Iterable[Path], skip: Collection[Path] = ()) -> tuple[list[str], list[str], list[str]]:
    """What the folders given hold that is not run or submitted, in one walk (find_inputs): files
    that are not a document by their suffix, links to folders (not followed), and named pipes,
    sockets and devices, each with what it is ("x.pdf (a named pipe)")."""
    found = find_inputs((p for p in paths if p.is_dir()), skip=skip)
    return found.others, found.links, found.specials


def output_names(paths: Sequence[Path], roots: Sequence[Path] = ()) -> dict[Path, str]:
    """Each input's output name (see `input_names`)."""
    return input_names(paths, roots)[0]


def input_names(paths: Sequence[Path], roots: Sequence[Path] = ()) -> tuple[dict[Path, str], dict[Path, str]]:
    """Each input's (output name, name in the database): see `named_inputs`."""
    outputs: dict[Path, str] = {}
    stored: dict[Path, str] = {}
    for path, output, name in named_inputs(paths, roots):
        outputs[path], stored[path] = output, name
    return outputs, stored


def named_inputs(paths: Iterable[Path], roots: Sequence[Path] = ()) -> Iterator[tuple[Path, str, str]]:
    """Each input with its output name and its name in the database, from where it was found,
    one at a time (a run names each file as it reaches it, not all before the first).

    Output name: its path, less the suffix, under the folder in `roots` it was found in
    (`box1/0001` for scans/box1/0001.pdf of `quire run scans/`), so --out mirrors a collection's
    tree; a file given by itself is its stem. A name seen twice gets -2, -3 so no output
    overwrites another.

    Name in the database (what `status`, `search` and `export` show and find): its path under
    that folder with the folder's own name first (`box1/0001.pdf` for `quire run scans/box1`), so
    files of the same name from two boxes, or two runs, are told apart; a file given by itself
    is its file name."""
    folders = [folder for folder in (root.resolve() for root in roots) if folder.is_dir()]
    taken: set[str] = set()
    parents: dict[Path, Path] = {}  # each folder resolved once, not once per file in it
    for path in paths:
        # The folder resolved, not the file: a link to another file keeps its own name.
        parent = parents.get(path.parent)
        if parent is None:
            parent = parents[path.parent] = path.parent.resolve()
        resolved = parent / path.name
        folder = next((f for f in folders if resolved != f and resolved.is_relative_to(f)), None)
        under = resolved.relative_to(folder) if folder else None
        base, n = (under.with_suffix("").as_posix() if under else path.stem), 1
        name = base
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        yield path, name, (Path(folder.name) / under).as_posix() if folder and under else path.name


def total_pages(paths: Sequence[Path]) -> int:
    """Pages across inputs for the progress bar; unreadable files count 0 (they fail later, named)."""
    return sum(count_pages_or_zero(path) for path in paths)


def count_pages_or_zero(path: Path) -> int:
    # Only a bar's total: reading the file later says what is wrong with it.
    with contextlib.suppress(Exception):
        return count_pages(path)
    return 0


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
