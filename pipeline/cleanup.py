"""Carrying out pending deletions: the store objects a --redo let go of (pipeline.db.readings),
and those of a deleted document (pipeline.deletion).

The record is committed with the change that let go of the objects, the objects are deleted after
that, and the record goes last: a run killed anywhere in between (kill -9, a power cut) leaves the
record, and the next `quire run` finishes it. Deleting is safe to repeat and to run in two
processes at once: a missing object deletes fine, and a record already gone is passed over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from pipeline import storage
from pipeline.db import readings
from pipeline.db.session import session_scope
from pipeline.errors import QuireError

log = logging.getLogger(__name__)


def finish_deletions(engine: Engine, store: storage.ObjectStore, deletions: Sequence[int]) -> int:
    """Delete the objects each pending deletion lists, then its record; returns the objects
    deleted. One that cannot be deleted (the store down) keeps its record for the next run,
    and the caller goes on: it is only an object nothing uses."""
    deleted = 0
    for deletion in deletions:
        with session_scope(engine) as s:
            found = readings.deletion_keys(s, deletion)
        if found is None:  # another run finished it meanwhile
            continue
        document_id, keys = found
        with session_scope(engine) as s:
            keys = _unclaimed(s, document_id, keys)
        try:
            storage.delete_many(store, keys)
        except QuireError as exc:
            log.warning("document %s: %d stored objects nothing uses any more are not deleted yet "
                        "(%s); the next `quire run` tries again", document_id, len(keys), exc)
            continue
        with session_scope(engine) as s:
            readings.forget_deletion(s, deletion)
        deleted += len(keys)
    return deleted


def _unclaimed(s: Session, document_id: str, keys: list[str]) -> list[str]:
    """The keys that are still to delete. A deleted document's keys are deterministic: the same
    file sent again since (a new document of the same bytes) writes its source, pages and exports
    at the same keys, which are its own now and are kept. (A --redo's record is of a document
    that is still there; none of its keys is used again.)"""
    if readings.document_exists(s, document_id):
        return keys
    owners = {key: storage.key_document(key) for key in keys}
    there = readings.readings_of(s, {owner[0] for owner in owners.values() if owner})
    shas = {sha for sha, _ in there}
    return [key for key, owner in owners.items() if owner is None
            or (owner[0] not in shas if owner[1] is None else owner not in there)]
