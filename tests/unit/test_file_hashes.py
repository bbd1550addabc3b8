"""A file's recorded hash stands for its bytes only while a change would show in its stat: one
that changed within a timestamp tick of being looked at is hashed again by the next run."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

from pipeline.db import file_hashes
from pipeline.db.session import make_engine, session_scope, upgrade

MS = 1_000_000


def test_a_hash_is_kept_only_for_a_file_looked_at_a_tick_after_it_changed(tmp_path: Path, sqlite_url: str):
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(b"%PDF-1.4 a scan")
    seen = scan.stat()
    sha = hashlib.sha256(scan.read_bytes()).hexdigest()
    changed = max(seen.st_mtime_ns, seen.st_ctime_ns)
    try:
        with session_scope(engine) as s:  # looked at 1 ms after it was written: racy
            file_hashes.remember(s, scan.resolve(), seen, sha, looked_at_ns=changed + MS)
        with session_scope(engine) as s:
            assert file_hashes.known(s, scan.resolve(), seen) is None
        with session_scope(engine) as s:
            file_hashes.remember(s, scan.resolve(), seen, sha, looked_at_ns=changed + 100 * MS)
        with session_scope(engine) as s:
            assert file_hashes.known(s, scan.resolve(), seen) == sha
    finally:
        engine.dispose()


def test_whole_second_times_make_the_tick_two_seconds():
    """FAT and some network shares keep whole seconds (FAT's modification times in steps of 2)."""
    coarse = SimpleNamespace(st_mtime_ns=1_700_000_000 * 10**9, st_ctime_ns=1_700_000_001 * 10**9)
    assert file_hashes.racy(coarse, coarse.st_ctime_ns + 1_500 * MS)
    assert not file_hashes.racy(coarse, coarse.st_ctime_ns + 2_100 * MS)
    fine = SimpleNamespace(st_mtime_ns=coarse.st_mtime_ns + 123_456, st_ctime_ns=coarse.st_ctime_ns + 7)
    assert file_hashes.racy(fine, fine.st_ctime_ns + 5 * MS)
    assert not file_hashes.racy(fine, fine.st_ctime_ns + 50 * MS)
    # A clock behind the file system's (a network share's server) is taken as racy too.
    assert file_hashes.racy(fine, fine.st_ctime_ns - 10**9)
