"""A `quire run --redo` reading in progress: read into a document row of its own, which takes the
earlier reading's place in one transaction once it is complete.

Until then the document keeps its earlier reading, done, whatever stops the run (Ctrl-C, kill -9,
a power cut): `export`, `search` and `view` go on showing it. The new reading's row has the
document's bytes, a profile of its own (REDO + the document's: the pair is unique, so there is one
per document) and `redo_of` naming the document; it is linked to no job and hidden from search
and export. A --redo that finds one goes on from its finished pages; one that fails drops it.

Its page images (and crops) are stored under keys of its own (pipeline.storage, readings/<id>/),
named in its page rows: taking its place switches the document over to them in the same
transaction. The earlier reading's objects are deleted only after that, by the caller once
committed: `adopt_redo` and `drop_redo` record the keys no row names any more as a pending
deletion in their transaction, and the caller removes the record once the objects are gone, so
a run killed in between leaves the next run the list (pipeline.cleanup). A superseded reading
keeps nothing of a --redo's: it is the reading of other bytes, in a row of its own.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from pipeline.db import repo
from pipeline.db.models import Document, DocumentStatus, Line, Page, PendingDeletion, new_id, utcnow
from pipeline.errors import NotFoundError

REDO = "redo:"


def find_redo(s: Session, document_id: str) -> Document | None:
    """The unfinished new reading of a document, if a --redo left one."""
    return s.scalars(repo._fresh(select(Document).where(Document.redo_of == document_id))).first()


def begin_redo(s: Session, doc: Document) -> tuple[str, dict[int, int]]:
    """The row a new reading of done document `doc` goes into (made if new, marked processing),
    and the pages a stopped --redo had finished in it: number -> lines."""
    now = utcnow()
    s.execute(repo._insert(s, Document).values(
        id=new_id(), sha256=doc.sha256, profile=REDO + doc.profile, name=doc.name,
        source_uri=doc.source_uri, size_bytes=doc.size_bytes, redo_of=doc.id,
        status=DocumentStatus.PROCESSING.value, pages_done=0, created_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["sha256", "profile"]))
    redo = find_redo(s, doc.id)
    assert redo is not None  # made above, or by a --redo before
    return redo.id, repo.resume_document(s, redo.id)


def adopt_redo(s: Session, document_id: str, page_count: int) -> int | None:
    """The complete new reading becomes the document's: the earlier pages and lines go and the
    new ones take their place, with their store keys, in this one transaction (ids of the new
    lines are kept, so the search index follows). The document ends done. The earlier reading's
    store keys are recorded as a pending deletion, to carry out once this is committed: returns
    its id (None: nothing to delete)."""
    redo = find_redo(s, document_id)
    if redo is None:
        raise NotFoundError(f"no new reading of document {document_id} to take")
    # Pages before documents: the lock order every other function uses.
    s.scalars(select(Page.id).where(Page.document_id.in_([document_id, redo.id]))
              .order_by(Page.id).with_for_update()).all()
    repo.get_document(s, document_id, lock=True)
    earlier = stored_keys(s, document_id)
    delete_pages(s, document_id)
    s.execute(update(Page).where(Page.document_id == redo.id).values(document_id=document_id),
              execution_options={"synchronize_session": False})
    s.execute(delete(Document).where(Document.id == redo.id),
              execution_options={"synchronize_session": False})
    s.expire_all()
    repo.finish_document(s, document_id, page_count)
    # A new reading whatever else changed: the time the exports carry, and what tells a rerun
    # that the files an earlier run wrote into --out hold the earlier one (pipeline/run_outputs.py).
    repo.get_document(s, document_id).updated_at = utcnow()
    s.flush()
    # A --redo begun before readings had keys of their own wrote its pages over the earlier
    # reading's: those it took over are still named. Only this document's rows use its keys.
    return record_deletion(s, document_id, earlier - stored_keys(s, document_id))


def drop_redo(s: Session, document_id: str) -> int | None:
    """Forget a document's unfinished new reading (it failed): the earlier reading stays. The
    dropped reading's store keys are recorded as a pending deletion, as by `adopt_redo`: returns
    its id (None: the document had no new reading, or it had no keys of its own)."""
    redo = find_redo(s, document_id)
    if redo is None:
        return None
    s.scalars(select(Page.id).where(Page.document_id == redo.id).order_by(Page.id)
              .with_for_update()).all()
    dropped = stored_keys(s, redo.id)
    delete_pages(s, redo.id)
    s.execute(delete(Document).where(Document.id == redo.id),
              execution_options={"synchronize_session": False})
    s.expire_all()
    return record_deletion(s, document_id, dropped - stored_keys(s, document_id))


def pending_deletions(s: Session) -> list[int]:
    """The ids of the pending deletions, oldest first: what a run checks before it starts (one
    small query, on a table that is empty but for runs killed mid clean-up)."""
    return list(s.scalars(select(PendingDeletion.id).order_by(PendingDeletion.id)))


def deletion_keys(s: Session, deletion_id: int, *, lock: bool = False) -> tuple[str, list[str]] | None:
    """A pending deletion's document and store keys (those still to delete); None once it was
    carried out. `lock`: its row is locked till the transaction ends (pipeline.cleanup)."""
    found = s.scalars(repo._fresh(select(PendingDeletion).where(PendingDeletion.id == deletion_id),
                                  lock)).first()
    return None if found is None else (found.document_id, list(found.keys))


def readings_of(s: Session, shas: set[str]) -> set[tuple[str, str]]:
    """The (sha256, profile) of the documents there are now of these bytes; a --redo's reading
    counts as its document's profile."""
    rows = s.execute(select(Document.sha256, Document.profile).where(Document.sha256.in_(shas))).all()
    return {(sha, profile.removeprefix(REDO)) for sha, profile in rows}


def document_exists(s: Session, document_id: str) -> bool:
    return s.get(Document, document_id) is not None


def drop_deletion_keys(s: Session, deletion_id: int, done: list[str]) -> None:
    """Some keys of a pending deletion are dealt with (deleted, or kept as used again): they go
    off its record, read afresh under its row lock (another clean-up of it may have gone on), and
    once none is left the record goes too (already gone is fine, two runs may finish the same
    one)."""
    found = deletion_keys(s, deletion_id, lock=True)
    if found is None:
        return
    gone = set(done)
    keys = [key for key in found[1] if key not in gone]
    if keys:
        s.execute(update(PendingDeletion).where(PendingDeletion.id == deletion_id).values(keys=keys),
                  execution_options={"synchronize_session": False})
        return
    s.execute(delete(PendingDeletion).where(PendingDeletion.id == deletion_id),
              execution_options={"synchronize_session": False})


def record_deletion(s: Session, document_id: str, keys: set[str]) -> int | None:
    """Record store keys to delete once this transaction is committed (pipeline.cleanup carries
    it out); returns the record's id, None when there is nothing to delete."""
    if not keys:
        return None
    record = PendingDeletion(document_id=document_id, keys=sorted(keys), created_at=utcnow())
    s.add(record)
    s.flush()
    return record.id


def stored_keys(s: Session, document_id: str) -> set[str]:
    """The store keys a reading's rows name: its page images and line crops."""
    images = s.scalars(select(Page.image_key).where(Page.document_id == document_id)).all()
    crops = s.scalars(select(Line.crop_key).join(Page).where(
        Page.document_id == document_id, Line.crop_key.is_not(None))).all()
    return {key for key in (*images, *crops) if key}


def delete_pages(s: Session, document_id: str) -> None:
    """Delete a reading's pages and lines (not its document row)."""
    # Lines first, by statement: the search index's triggers see each one go.
    pages = select(Page.id).where(Page.document_id == document_id).scalar_subquery()
    s.execute(delete(Line).where(Line.page_id.in_(pages)), execution_options={"synchronize_session": False})
    s.execute(delete(Page).where(Page.document_id == document_id),
              execution_options={"synchronize_session": False})
