"""Carrying out pending deletions: the store objects a --redo let go of (pipeline.db.readings),
those of a deleted document (pipeline.deletion), and those an ingest stored for a page of a
document deleted meanwhile (`discard`).

The record is committed with the change that let go of the objects, the objects are deleted after
that, and the record goes last: a run killed anywhere in between (kill -9, a power cut) leaves the
record, and the next `quire run` finishes it. Deleting is safe to repeat and to run in two
processes at once: a missing object deletes fine, and a record already gone is passed over.

A deleted document's keys are named by its bytes, so the same file sent again since has the same
ones: they are its own and are kept. A batch of keys at a time goes in three steps, and the
object store is asked only in the second, outside any transaction, so no other writer waits on
it (on SQLite, where a transaction holds the database's write lock, a batch of S3 requests would
hold up every `quire run` saving pages and every API call meanwhile):

1. judge and claim: in one transaction under the files' content lock (pipeline.db.locks), which
   every submission takes to make its document row, the batch's keys that no document uses are
   found, and their files claimed (locks.claim); committed;
2. delete those objects, no lock or transaction held;
3. settle: the batch goes off the record (the record with its last) and the claims are let go.

While a file is claimed no document of it is made (repo.upsert_document waits the claim out), so
a document of those bytes is committed either before the judging (its keys are kept) or after
the deletes have ended (the submission stores its source again, and its ingest writes its pages
after): never in between, on either database, with any number of processes and hosts sharing
the database and the store. A clean-up killed in step 2 leaves its record, which the next one
carries out, and a claim that stops holding once its process is found gone or it expires
(locks.CLAIM_S; the clean-up begins no delete past locks.SEND_DELETES_S). Two clean-ups of one
record may judge and delete the same keys: both judged them unused under the lock, and no
document of their files is made until both have let go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from pipeline import storage
from pipeline.db import locks, readings
from pipeline.db.session import session_scope
from pipeline.errors import QuireError

log = logging.getLogger(__name__)

# Keys judged and deleted per batch: a claim keeps new documents of the batch's files waiting
# while the store deletes them, so a batch is kept to a second or two of S3 requests.
BATCH_KEYS = 500


def finish_deletions(engine: Engine, store: storage.ObjectStore, deletions: Sequence[int]) -> int:
    """Delete the objects each pending deletion lists that nothing uses, then its record; returns
    the objects deleted. One that cannot be deleted (the store down) keeps its record, less the
    batches already done, for the next run, and the caller goes on: it is only objects nothing
    uses."""
    deleted = 0
    for deletion in deletions:
        try:
            while (batch := _next_batch(engine, store, deletion)) is not None:
                deleted += batch
        except QuireError as exc:
            log.warning("pending deletion %d: stored objects nothing uses any more are not deleted "
                        "yet (%s); the next `quire run` tries again", deletion, exc)
    return deleted


def discard(engine: Engine, store: storage.ObjectStore, document_id: str, keys: set[str]) -> int:
    """Delete objects stored for a document that was deleted meanwhile (its deletion had listed
    the store before they were written), as a pending deletion: a document of the same bytes made
    since keeps those it uses. Returns the objects deleted."""
    with session_scope(engine) as s:
        deletion = readings.record_deletion(s, document_id, keys)
    return finish_deletions(engine, store, [deletion]) if deletion is not None else 0


def _next_batch(engine: Engine, store: storage.ObjectStore, deletion: int) -> int | None:
    """Delete the next batch of a pending deletion's keys that nothing uses, and take the batch
    off its record (the record goes with the last); returns how many were deleted, None once it
    is done. The three steps of the module."""
    with session_scope(engine) as s:
        found = readings.deletion_keys(s, deletion)
        if found is None:  # done, maybe by another run meanwhile
            return None
        # The content lock first (the order every writer takes locks in), then the record read
        # again under it: another clean-up of it may have gone on meanwhile.
        locks.lock_content(s, {owner[0] for owner in map(storage.key_document, found[1]) if owner})
        found = readings.deletion_keys(s, deletion, lock=True)
        if found is None:
            return None
        document_id, keys = found
        batch = keys[:BATCH_KEYS]
        unused = _unused(s, document_id, batch)
        claims = locks.claim(s, {owner[0] for owner in map(storage.key_document, unused) if owner})
    # Committed: no document of these files is made until the claims are let go.
    deadline = time.monotonic() + locks.SEND_DELETES_S
    try:
        storage.delete_many(store, unused, deadline=deadline)
    except BaseException:
        with session_scope(engine) as s:  # the record keeps the batch for the next run
            locks.release(s, claims)
        raise
    with session_scope(engine) as s:
        readings.drop_deletion_keys(s, deletion, batch)
        locks.release(s, claims)
    return len(unused)


def _unused(s: Session, document_id: str, keys: list[str]) -> list[str]:
    """The keys that are still to delete. A deleted document's keys are deterministic: the same
    file sent again since (a new document of the same bytes) writes its source, pages and exports
    at the same keys, which are its own now and are kept. (A --redo's record is of a document
    that is still there; none of its keys is used again.) The caller holds the content lock of
    the keys' files, so the documents read here are all there are until it commits, and the
    claims it takes before committing keep it so until it lets go of them."""
    if readings.document_exists(s, document_id):
        return keys
    owners = {key: storage.key_document(key) for key in keys}
    there = readings.readings_of(s, {owner[0] for owner in owners.values() if owner})
    shas = {sha for sha, _ in there}
    return [key for key, owner in owners.items() if owner is None
            or (owner[0] not in shas if owner[1] is None else owner not in there)]
