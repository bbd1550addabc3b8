"""SHA-256s of the files `quire run` read (file_hashes), so that a rerun over 100,000 files done
before reads their stat, not their bytes. A file's hash is taken from here only while its size,
modification time, change time and inode are all as they were when it was hashed: writing to
the file, or replacing it, changes its change time (as git's index and rsync rely on).

A file's times go up in ticks (a few milliseconds on a local disk, a second or two on FAT and
some network shares): a file changed within the tick it was looked at in keeps the times the look
saw. So, as git does with its "racily clean" entries, a hash is not recorded for a file that had
changed less than a tick before it was looked at (`racy`): the next run hashes it again."""

from __future__ import annotations

import os
import time
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


# A tick where the file system keeps times in whole seconds (FAT's are 2 s), and elsewhere (Linux
# stamps files from a clock that moves in jiffies, 1-10 ms).
COARSE_TICK_NS, FINE_TICK_NS = 2_000_000_000, 20_000_000


def racy(stat: os.stat_result, looked_at_ns: int) -> bool:
    """Whether the file changed less than a tick before `looked_at_ns` (time.time_ns() just
    before `stat` was taken), so that a change after the look may have left its times as seen."""
    changed = max(stat.st_mtime_ns, stat.st_ctime_ns)
    whole_seconds = stat.st_mtime_ns % 1_000_000_000 == 0 and stat.st_ctime_ns % 1_000_000_000 == 0
    return looked_at_ns - changed < (COARSE_TICK_NS if whole_seconds else FINE_TICK_NS)


def remember(s: Session, path: Path, stat: os.stat_result, sha256: str,
             looked_at_ns: int | None = None) -> None:
    """Record `path`'s hash with the stat it was taken under (`stat` from before reading it: a
    file written while it was hashed then differs from the record, and is hashed again), unless
    the file was `racy` when looked at (`looked_at_ns`, time.time_ns() before the stat; now when
    not given)."""
    if racy(stat, time.time_ns() if looked_at_ns is None else looked_at_ns):
        return
    size, mtime_ns, ctime_ns, inode = _seen(stat)
    repo.upsert(s, FileHash, [{"path_sha256": text_key(str(path)), "path": str(path), "size": size,
                               "mtime_ns": mtime_ns, "ctime_ns": ctime_ns, "inode": inode,
                               "sha256": sha256, "hashed_at": utcnow()}], key=["path_sha256"])

