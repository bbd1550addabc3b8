"""Deleting a document and everything Quire stored for it (`quire delete`, the API's DELETE).

In one transaction its rows go (document, pages, lines and so their search entries, its job
links, an unfinished --redo reading) and the store keys they leave unused are recorded as a
pending deletion; the objects are deleted after the commit, then the record (pipeline.cleanup).
A process killed in between leaves the record, which the next `quire run`, `quire delete` or
DELETE carries out. Each key is listed and recorded, and none is another document's: the page
images and crops its rows name, what lies under its own documents/<sha256>/<profile>/ (exports,
crops of an earlier segmentation), and the source, documents/<sha256>/source, only when no other
reading of the same bytes (another model or settings) is left to use it.

The same file sent again meanwhile (`quire submit`, the API, the watcher, `quire run`) is never
an error, whichever comes first, on either database and from any host: the transaction above
and the submission's take the file's content lock (pipeline.db.locks). A submission committed
first links its job to the document, and this sees it like any other link: another tenant's job
keeps the document (only the caller's links go), and one of the caller's jobs still queued or
running has the delete refused as the document being read now (DocumentBusyError, the API's 409
with the reason). One coming after makes a new document of those bytes, which keeps what it uses
of the recorded keys (pipeline.cleanup) and is read whole. An ingest of this document still
running (its job cancelled a moment before) stops at its next page (DocumentGoneError), deleting
what it stored after the listing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from pipeline import cleanup, run_process, storage
from pipeline.db import deletions, readings, runs
from pipeline.db.session import session_scope


@dataclass(frozen=True)
class Deleted:
    """What one deletion did: `outright` when the document went (rows and objects), else only
    the caller's job links went (other jobs still use it)."""

    id: str
    name: str
    outright: bool
    jobs: int  # job links removed
    pages: int
    lines: int
    objects: int  # store objects deleted (not those the same file, sent again since, uses)
    objects_left: int  # recorded but not deleted yet (the store failed): the next run's

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "outcome": "deleted" if self.outright else "unlinked",
                "jobs_unlinked": self.jobs, "pages": self.pages, "lines": self.lines,
                "objects_deleted": self.objects, "objects_left": self.objects_left}


def delete_document(engine: Engine, store: storage.ObjectStore, document_id: str, *,
                    tenant: str | None = None, silent_after: float | None = None) -> Deleted:
    """Delete document `document_id` for `tenant` (None: an operator, outright); see the module.
    `silent_after`: QUIRE_RUN__STALE_SECONDS, so a killed `quire run`'s job does not keep its
    documents 'being read' for ever. NotFoundError, DocumentBusyError (pipeline.db.deletions),
    StorageError when the store cannot be listed (then nothing is deleted)."""
    with session_scope(engine) as s:
        runs.settle_gone_runs(s, run_process.is_gone, silent_after=silent_after)
    removal = remove_rows(engine, store, document_id, tenant=tenant)
    plan, deleted, left = removal.plan, 0, 0
    if removal.deletion is not None:
        deleted = cleanup.finish_deletions(engine, store, [removal.deletion])
        with session_scope(engine) as s:
            found = readings.deletion_keys(s, removal.deletion)
            left = len(found[1]) if found is not None else 0
    return Deleted(id=plan.document_id, name=plan.name, outright=plan.outright, jobs=len(plan.jobs),
                   pages=plan.pages, lines=plan.lines, objects=deleted, objects_left=left)


def remove_rows(engine: Engine, store: storage.ObjectStore, document_id: str, *,
                tenant: str | None = None) -> deletions.Removal:
    """The transaction of a deletion: the rows go and the keys to delete are recorded, committed
    on return; the objects are still there (`delete_document` deletes them next)."""
    with session_scope(engine) as s:
        plan = deletions.plan_removal(s, document_id, tenant)
        keys: set[str] = set()
        if plan.outright:
            folder = storage.reading_prefix(plan.sha256, plan.profile)
            keys = plan.row_keys | {info.key for info in store.list(folder)}
            if not plan.source_shared:
                keys.add(storage.source_key(plan.sha256))
        return deletions.carry_out(s, plan, keys)


def finish_pending(engine: Engine, store: storage.ObjectStore) -> int:
    """Carry out the pending deletions a killed process left (a delete's or a --redo's);
    returns the objects deleted."""
    with session_scope(engine) as s:
        pending = readings.pending_deletions(s)
    return cleanup.finish_deletions(engine, store, pending) if pending else 0
