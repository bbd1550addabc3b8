"""The files `quire run --out` wrote (run_outputs): looked up by path for a rerun, recorded once
written. Paths are keyed by their text_key, so any length of path is one index entry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.db import repo
from pipeline.db.models import RunOutput, text_key, utcnow


@dataclass(frozen=True)
class Written:
    """One file as it was written: what it holds and how the file system saw it then."""

    path: str
    document_id: str
    fingerprint: str
    size: int
    mtime_ns: int
    ctime_ns: int


def recorded(s: Session, paths: Sequence[str]) -> dict[str, Written]:
    """The records of those of `paths` (absolute) a run wrote, by path: one indexed lookup."""
    if not paths:
        return {}
    keys = {text_key(path): path for path in paths}
    rows = s.scalars(select(RunOutput).where(RunOutput.path_sha256.in_(keys)))
    return {keys[row.path_sha256]: Written(keys[row.path_sha256], row.document_id, row.fingerprint,
                                           row.size, row.mtime_ns, row.ctime_ns) for row in rows}


def record(s: Session, written: Sequence[Written]) -> None:
    """Record files just written, replacing what was recorded for their paths."""
    if not written:
        return
    now = utcnow()
    rows = [{"path_sha256": text_key(w.path), "path": w.path, "document_id": w.document_id,
             "fingerprint": w.fingerprint, "size": w.size, "mtime_ns": w.mtime_ns,
             "ctime_ns": w.ctime_ns, "written_at": now} for w in written]
    repo.upsert(s, RunOutput, rows, key=["path_sha256"])
