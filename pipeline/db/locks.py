"""The content lock: one per file (its SHA-256), taken by every transaction that makes a document
of those bytes, deletes one, or decides which of their stored objects nobody uses; and the content
claim, which stands in for it while a clean-up deletes those objects outside any transaction.

Store keys are named by content (documents/<sha256>/source, .../<profile>/pages/...), so a deleted
document and the same file sent again share keys, and a deleted document's id can be named by a
submission that found it a moment before. Holding this lock, each of these sees the others'
committed work and none of their half-done work:

- making or finding a document row (`repo.upsert_document`; `pipeline.submit` takes it before
  the job's row lock, so the order is the same everywhere);
- deleting a document (`pipeline.db.deletions.plan_removal`): it sees every job link committed
  before it, and a submission after it makes a new document instead of linking the deleted one;
- the clean-up (`pipeline.cleanup`): it judges which recorded keys no document uses and claims
  their files (`claim`) in one transaction, deletes the objects after the commit, and lets go of
  the claims (`release`) once the store has answered.

A claim is what keeps a document from losing an object to a delete already sent: while one
holds, no document of its file is made (`check_unclaimed`, in `repo.upsert_document`, raises
ContentClaimedError; the caller's transaction rolls back and is run again after a pause,
`until_unclaimed`). A document of those bytes is thus made either before the judging (its keys
are kept) or after the deletes have ended (it finds its objects gone and stores them again).
Documents already there are never held up: a claim is only ever on keys no document uses.

A claim holds until its clean-up lets go of it, or its process is found gone (on its own host,
pipeline.run_process), or CLAIM_S has passed (by the database's clock), so a clean-up killed in
its deletes holds nothing up for long; it sends no delete later than SEND_DELETES_S after
claiming, which leaves one S3 request's worst case (retries included) inside the claim.

The lock is taken before any row lock (pipeline.db.repo's order: content, job, pages, lines,
document), so it adds no deadlock. PostgreSQL: a transaction-scoped advisory lock, which every
process and host sharing the database sees, released at commit or rollback. SQLite needs none:
each transaction begins IMMEDIATE (pipeline.db.session), so one runs at a time anyway; the
object-store requests are made outside transactions, so no writer waits on them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from types import TracebackType
from typing import Self

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from pipeline import run_process
from pipeline.db.models import ContentClaim
from pipeline.errors import QuireError

# pg_advisory_xact_lock(int4, int4): the first half names Quire's locks ("QUIR"), so they never
# meet another application's on the same database; the second is taken from the SHA-256. Two files
# whose hashes begin alike take turns, no more.
NAMESPACE = 0x51554952

# How long a claim holds at most, and how long after claiming its clean-up may still send a
# delete: S3Store's worst request (connect 10 s + read 60 s, 5 attempts: 350 s) fits in between.
CLAIM_S = 600
SEND_DELETES_S = 200
# How often a submission held up by a claim looks again (a batch of deletes takes a second or two).
POLL_S = 0.25


class ContentClaimedError(QuireError):
    """A clean-up is deleting stored objects of this file now: no document of it is made until
    it is done. Retryable: `until_unclaimed` runs the transaction again after `wait_s`."""

    retryable = True

    def __init__(self, sha256: str, wait_s: float) -> None:
        super().__init__(f"the stored objects of file {sha256} are being deleted; try again shortly")
        self.wait_s = wait_s


def lock_content(s: Session, sha256s: Iterable[str]) -> None:
    """Take the content lock of each of these files, held until the transaction ends (several in
    one order, so two transactions taking some of the same never wait on each other in a cycle)."""
    if s.get_bind().dialect.name != "postgresql":
        return
    for key in sorted({int.from_bytes(bytes.fromhex(sha[:8]), "big", signed=True) for sha in sha256s}):
        s.execute(text("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": NAMESPACE, "key": key})


def claim(s: Session, sha256s: Iterable[str]) -> list[int]:
    """Claim these files for a clean-up about to delete some of their objects (under their
    content lock, in the transaction that judged the objects unused); returns the claims' ids,
    for `release`."""
    from pipeline.db.runs import database_now

    expires = database_now(s) + timedelta(seconds=CLAIM_S)
    holder = run_process.this_process()
    rows = [ContentClaim(sha256=sha, holder=holder, expires_at=expires) for sha in sorted(set(sha256s))]
    s.add_all(rows)
    s.flush()
    return [row.id for row in rows]


def release(s: Session, claims: Iterable[int]) -> None:
    """Let go of claims (already gone is fine: one found stale may have been dropped)."""
    ids = list(claims)
    if ids:
        s.execute(delete(ContentClaim).where(ContentClaim.id.in_(ids)),
                  execution_options={"synchronize_session": False})


def check_unclaimed(s: Session, sha256: str) -> None:
    """Under the file's content lock, before a document of it is made: ContentClaimedError while a
    clean-up holds a claim on it. Claims that no longer hold (their process gone, or expired)
    are dropped."""
    claims = s.scalars(select(ContentClaim).where(ContentClaim.sha256 == sha256)).all()
    if not claims:
        return
    from pipeline.db.runs import database_now

    now = database_now(s)
    live = [c for c in claims if c.expires_at > now and not run_process.is_gone(c.holder)]
    if live:
        raise ContentClaimedError(sha256, max(0.01, min(
            POLL_S, min((c.expires_at - now).total_seconds() for c in live))))
    release(s, [c.id for c in claims])


class Attempt:
    """One try of a transaction that may meet a claim (`until_unclaimed`)."""

    def __init__(self) -> None:
        self.done = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if isinstance(exc, ContentClaimedError):
            time.sleep(exc.wait_s)  # the transaction rolled back: the clean-up can settle
            return True
        self.done = kind is None
        return False


def until_unclaimed() -> Iterator[Attempt]:
    """Run a transaction that makes documents until no claim holds it up:
    `for attempt in until_unclaimed(): with attempt, session_scope(engine) as s: ...`.
    Claims end (CLAIM_S at most), so this does too; any other error goes through."""
    while True:
        attempt = Attempt()
        yield attempt
        if attempt.done:
            return
