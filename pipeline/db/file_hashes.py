"""SHA-256s of the files `quire run` read (file_hashes), so that a rerun over 100,000 files done
before reads their stat, not their bytes. A file's hash is taken from here only while its size,
modification time, change time and inode are all as they were when it was hashed: writing to
the file, or replacing it, changes its change time (as git's index and rsync rely on)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.orm import Session

from pipeline.db import repo
from pipeline.db.models import FileHash, text_key, utcnow


def _seen(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


def known(s: Session, path: Path, stat: os.stat_result) -> str | None:
    """The SHA-256 recorded for `path` (absolute), if the file is as it was when hashed."""
    row = s.get(FileHash, text_key(str(path)))
    if row is None or (row.size, row.mtime_ns, row.ctime_ns, row.inode) != _seen(stat):
        return None
    return row.sha256


def remember(s: Session, path: Path, stat: os.stat_result, sha256: str) -> None:
    """Record `path`'s hash with the stat it was taken under (`stat` from before reading it: a
    file written while it was hashed then differs from the record, and is hashed again)."""
    size, mtime_ns, ctime_ns, inode = _seen(stat)
    repo.upsert(s, FileHash, [{"path_sha256": text_key(str(path)), "path": str(path), "size": size,
                               "mtime_ns": mtime_ns, "ctime_ns": ctime_ns, "inode": inode,
                               "sha256": sha256, "hashed_at": utcnow()}], key=["path_sha256"])

