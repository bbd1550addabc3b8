"""The files `quire run --out` writes, and which of them a rerun leaves alone.

Each file written is recorded (pipeline.db.outputs): a fingerprint of what it holds (the reading
it is made from, the name it carries, its format, the version of Quire and a digest of its
exporters' code) and how the file system saw it once written (size, modification and change
times). A later run over a document read before builds nothing for a file whose record has the
fingerprint wanted now and that is still as it was left: the quick check rsync makes, with the
change time beside it, which no tool can set back. A file that is missing, edited, replaced or
touched, or that should hold something else now (the document read again with --redo, a new
version of Quire or a change to its exporters' code), is exported and written again.

Without --out, a document read before gets only the formats its store lacks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pipeline
from pipeline import exporters as exporters_package
from pipeline import storage
from pipeline.db import outputs as recorded_outputs
from pipeline.db import repo
from pipeline.db.session import session_scope
from pipeline.exporters import Exporter
from pipeline.process import DocumentRef, write_exports

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reading:
    """A document's reading as its exports see it: its row, the time the row last changed (a new
    reading changes it, and the exports carry it) and its pages (PAGE's file suffix)."""

    ref: DocumentRef
    changed: str
    pages: int

    @classmethod
    def of(cls, ref: DocumentRef, doc: Any) -> Reading:
        """From the document's row (`doc`: models.Document)."""
        changed = doc.updated_at.isoformat() if doc.updated_at else ""
        return cls(ref, changed, doc.page_count or 0)


def fingerprint(reading: Reading, name: str, exporter: Exporter, extension: str) -> str:
    """What an export's bytes are made from, hashed: the same fingerprint, the same file."""
    spec = [pipeline.__version__, exporters_code(), reading.ref.id, reading.changed, reading.pages,
            name, exporter.name, extension]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()


@functools.cache
def exporters_code(folder: Path = Path(exporters_package.__file__).parent) -> str:
    """A digest of the code and templates that write exports (pipeline/exporters), so that a
    Quire whose exports changed writes them again on a rerun even where its version did not move
    (a checkout updated with git, an editable install). Read once per process: about 100 KB."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".py", ".j2") and path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class OutputWriter:
    """Writes a run's exports into --out (and the store): all of a document read now, only what
    is missing or changed of one read before. Counts go on each DocumentOutcome (`written`,
    `unchanged`); an output that cannot be written fails its input alone."""

    def __init__(self, engine: Any, store: storage.ObjectStore, exporters: Sequence[Exporter],
                 out_dir: Path | None) -> None:
        self.engine, self.store, self.exporters = engine, store, exporters
        self.out_dir = out_dir
        # Resolved once: records are keyed by absolute paths, without a look at each file's.
        self.root = out_dir.resolve() if out_dir is not None else None

    def reading(self, ref: DocumentRef) -> Reading:
        """The reading of a document just finished (its row as the finish left it)."""
        with session_scope(self.engine) as s:
            return Reading.of(ref, repo.get_document(s, ref.id))

    def read_now(self, outcome: Any, name: str, ref: DocumentRef,
                 outputs: dict[str, bytes]) -> Reading | None:
        """A document read in this run: every export (already made, by extension) written.
        Returns its reading, for copies of it in this run (None without --out)."""
        if self.out_dir is None:
            return None
        reading = self.reading(ref)
        # In the exporters' order, each under the suffix its export took.
        self._write(outcome, name, reading, [(e, ext, data) for e, (ext, data)
                                             in zip(self.exporters, outputs.items())])
        return reading

    def read_before(self, outcome: Any, name: str, reading: Reading) -> None:
        """A document read before (or a copy of one read in this run): its exports are made and
        written only where the file in --out is not the one wanted, or, without --out, where the
        store has none of that format."""
        if self.root is None:
            have = storage.exports_written(self.store, reading.ref.sha256, reading.ref.profile)
            self._export([e for e in self.exporters if e.name not in have], reading.ref,
                         outcome.stored_name)
            return
        wanted = {}
        for exporter in self.exporters:
            extension = exporter.extension_for_pages(reading.pages)
            path = str(self.root / f"{name}.{extension}")
            wanted[path] = (exporter, extension,
                            fingerprint(reading, outcome.stored_name, exporter, extension))
        with session_scope(self.engine) as s:
            found = recorded_outputs.recorded(s, list(wanted))
        stale: list[tuple[Exporter, str]] = []
        for path, (exporter, extension, print_) in wanted.items():
            if _as_left(found.get(path), print_):
                outcome.unchanged += 1
            else:
                stale.append((exporter, extension))
        if stale:
            data = self._export([e for e, _ in stale], reading.ref, outcome.stored_name)
            # In the exporters' order, each under the suffix its export took.
            self._write(outcome, name, reading, [(e, ext, bytes_) for (e, _), (ext, bytes_)
                                                 in zip(stale, data.items())])

    def _export(self, exporters: Sequence[Exporter], ref: DocumentRef, stored_name: str) -> dict[str, bytes]:
        """Exports of a reading in the database, named `stored_name`, made and stored."""
        if not exporters:
            return {}
        with session_scope(self.engine) as s:
            return write_exports(s, self.store, ref, exporters, name=stored_name)

    def _write(self, outcome: Any, name: str, reading: Reading,
               files: list[tuple[Exporter, str, bytes]]) -> None:
        """The files into --out, each recorded as written; one that cannot be written (a name too
        long for the file system, a full disk) fails this input alone: its reading stays in the
        database."""
        assert self.out_dir is not None and self.root is not None
        written: list[recorded_outputs.Written] = []
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for exporter, extension, data in files:
                target = self.out_dir / f"{name}.{extension}"
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(target.suffix + ".part")
                tmp.write_bytes(data)
                tmp.replace(target)
                outcome.written += 1
                path = str(self.root / f"{name}.{extension}")
                written.append(_written(path, reading, fingerprint(
                    reading, outcome.stored_name, exporter, extension)))
        except OSError as exc:
            log.warning("%s: output not written: %s", outcome.path, exc)
            outcome.status = "failed"
            outcome.error = (f"read, but its output cannot be written to {self.out_dir} "
                             f"({exc.strerror or exc}); `quire export` gets it from the database")
        finally:
            if written:  # those that were written are left alone next time, even after a failure
                with session_scope(self.engine) as s:
                    recorded_outputs.record(s, written)


def _written(path: str, reading: Reading, print_: str) -> recorded_outputs.Written:
    info = os.stat(path)
    return recorded_outputs.Written(path, reading.ref.id, print_, info.st_size, info.st_mtime_ns,
                                    info.st_ctime_ns)


def _as_left(record: recorded_outputs.Written | None, print_: str) -> bool:
    """Whether the file is the one recorded, with the contents wanted now."""
    if record is None or record.fingerprint != print_:
        return False
    try:
        info = os.stat(record.path)
    except OSError:
        return False
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns) == (record.size, record.mtime_ns,
                                                                  record.ctime_ns)
