"""Carrying out pending deletions: the store objects a --redo let go of (pipeline.db.readings).

The record is committed with the change that let go of the objects, the objects are deleted after
that, and the record goes last: a run killed anywhere in between (kill -9, a power cut) leaves the
record, and the next `quire run` finishes it. Deleting is safe to repeat and to run in two
processes at once: a missing object deletes fine, and a record already gone is passed over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Engine

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
        try:
            storage.delete_many(store, keys)
        except QuireError as exc:
            log.warning("document %s: %d stored images no reading uses any more are not deleted yet "
                        "(%s); the next `quire run` tries again", document_id, len(keys), exc)
            continue
        with session_scope(engine) as s:
            readings.forget_deletion(s, deletion)
        deleted += len(keys)
    return deleted
