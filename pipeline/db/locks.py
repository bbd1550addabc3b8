"""The content lock: one per file (its SHA-256), taken by every transaction that makes a document
of those bytes, deletes one, or decides which of their stored objects nobody uses and deletes them.

Store keys are named by content (documents/<sha256>/source, .../<profile>/pages/...), so a deleted
document and the same file sent again share keys, and a deleted document's id can be named by a
submission that found it a moment before. Holding this lock, each of these sees the others'
committed work and none of their half-done work:

- making or finding a document row (`repo.upsert_document`; `pipeline.submit` takes it before
  the job's row lock, so the order is the same everywhere);
- deleting a document (`pipeline.db.deletions.plan_removal`): it sees every job link committed
  before it, and a submission after it makes a new document instead of linking the deleted one;
- the clean-up (`pipeline.cleanup`): it judges which recorded keys no document uses and deletes
  those objects in one transaction, so a document of the same bytes is made either before (its
  keys are kept) or after (it finds them gone and stores them again).

It is taken before any row lock (pipeline.db.repo's order: content, job, pages, lines, document),
so it adds no deadlock. PostgreSQL: a transaction-scoped advisory lock, which every process and
host sharing the database sees, released at commit or rollback. SQLite needs none: each
transaction begins IMMEDIATE (pipeline.db.session), so one runs at a time anyway.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

# pg_advisory_xact_lock(int4, int4): the first half names Quire's locks ("QUIR"), so they never
# meet another application's on the same database; the second is taken from the SHA-256. Two files
# whose hashes begin alike take turns, no more.
NAMESPACE = 0x51554952


def lock_content(s: Session, sha256s: Iterable[str]) -> None:
    """Take the content lock of each of these files, held until the transaction ends (several in
    one order, so two transactions taking some of the same never wait on each other in a cycle)."""
    if s.get_bind().dialect.name != "postgresql":
        return
    for key in sorted({int.from_bytes(bytes.fromhex(sha[:8]), "big", signed=True) for sha in sha256s}):
        s.execute(text("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": NAMESPACE, "key": key})
