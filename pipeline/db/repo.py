"""Document, page and line rows the runner and tasks write; each is idempotent (upserts by natural
keys). Job rows: pipeline.db.job_rows.

Concurrency: locks are taken in one order everywhere (a file's content lock, pipeline.db.locks,
then job, then pages by id, then lines, then the document), so on PostgreSQL concurrent
redeliveries serialize instead of double-counting. SQLite serializes writers on its own and
ignores FOR UPDATE.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipeline.db import locks, runon
from pipeline.db.models import (
    Document,
    DocumentStatus,
    Line,
    LineStatus,
    Page,
    PageStatus,
    new_id,
    utcnow,
)
from pipeline.errors import ConfigError, DocumentGoneError, NotFoundError
from pipeline.types import BBox, DocumentResult, LineResult, PageResult


def _insert(s: Session, model: type[Any]) -> Any:
    """INSERT ... ON CONFLICT for the session's backend: race-free upserts on both databases."""
    name = s.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(model)
    if name == "sqlite":
        return sqlite.insert(model)
    raise ConfigError(f"unsupported database {name!r}: use SQLite or PostgreSQL")


def upsert(s: Session, model: type[Any], rows: Sequence[dict[str, Any]], key: Sequence[str]) -> None:
    """Insert `rows`, each replacing the row that has its `key` columns (every other column it
    gives is set), race-free on both databases."""
    stmt = _insert(s, model).values(list(rows))
    s.execute(stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={name: getattr(stmt.excluded, name) for name in rows[0] if name not in key}))


_S = TypeVar("_S", bound=Select[Any])


def _fresh(stmt: _S, lock: bool = False) -> _S:
    # populate_existing: rows already in the session are refreshed, not served stale.
    stmt = stmt.execution_options(populate_existing=True)
    return stmt.with_for_update() if lock else stmt


def find_document(s: Session, document_id: str, *, lock: bool = False) -> Document | None:
    """The document's row, or None where there is none (deleted, say)."""
    return s.scalars(_fresh(select(Document).where(Document.id == document_id), lock)).first()


def get_document(s: Session, document_id: str, *, lock: bool = False) -> Document:
    doc = find_document(s, document_id, lock=lock)
    if doc is None:
        raise NotFoundError(f"no document {document_id}")
    return doc


def upsert_document(
    s: Session, *, sha256: str, profile: str, name: str, source_uri: str, size_bytes: int
) -> tuple[Document, bool]:
    """The document for (sha256, profile), made if new; the flag says it is already done. Under the
    file's content lock (pipeline.db.locks): a deletion of that document either is committed
    before (a new one is made) or waits for this transaction (and sees what it links). A new one
    is not made while a clean-up deletes objects of those bytes: locks.ContentClaimedError, the
    caller runs its transaction again (locks.until_unclaimed)."""
    locks.lock_content(s, [sha256])
    found = s.scalars(_fresh(select(Document).where(
        Document.sha256 == sha256, Document.profile == profile))).first()
    if found is not None:
        return found, found.status == DocumentStatus.DONE
    locks.check_unclaimed(s, sha256)
    now = utcnow()
    s.execute(_insert(s, Document).values(
        id=new_id(), sha256=sha256, profile=profile, name=name, source_uri=source_uri,
        size_bytes=size_bytes, status=DocumentStatus.PENDING.value, pages_done=0,
        created_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["sha256", "profile"]))
    doc = s.scalars(_fresh(select(Document).where(
        Document.sha256 == sha256, Document.profile == profile))).one()
    return doc, doc.status == DocumentStatus.DONE


def start_document(s: Session, document_id: str) -> None:
    """Mark processing and drop earlier pages and lines, so a failed or interrupted run restarts
    cleanly (keys are deterministic: the store's objects are simply overwritten)."""
    # Pages before the document: the lock order every other function uses.
    s.scalars(select(Page.id).where(Page.document_id == document_id)
              .order_by(Page.id).with_for_update()).all()
    doc = get_document(s, document_id, lock=True)
    page_ids = select(Page.id).where(Page.document_id == document_id).scalar_subquery()
    s.execute(delete(Line).where(Line.page_id.in_(page_ids)),
              execution_options={"synchronize_session": "fetch"})
    s.execute(delete(Page).where(Page.document_id == document_id),
              execution_options={"synchronize_session": "fetch"})
    doc.status, doc.error, doc.pages_done, doc.page_count = (
        DocumentStatus.PROCESSING.value, None, 0, None)
    s.flush()


def resume_document(s: Session, document_id: str) -> dict[int, int]:
    """Mark processing again keeping the pages and lines read so far, so an interrupted run goes
    on where it stopped; returns the finished pages' numbers and their line counts."""
    doc = get_document(s, document_id, lock=True)
    doc.status, doc.error = DocumentStatus.PROCESSING.value, None
    s.flush()
    # The status is looked at here, not in the WHERE (see `_pages_done`).
    return {number: lines for number, lines, status in s.execute(
        select(Page.number, Page.lines_total, Page.status).where(Page.document_id == document_id))
        if status == PageStatus.DONE}


def save_page(
    s: Session, document_id: str, *, number: int, image_key: str, width: int, height: int,
    dpi: int, angle: float, rotation: int = 0,
) -> Page:
    """Insert or update page `number` of a document. DocumentGoneError when the document was
    deleted meanwhile (a reading's rows go with it: nothing is written)."""
    fields = {"image_key": image_key, "width": width, "height": height, "dpi": dpi,
              "angle": float(angle), "rotation": int(rotation)}
    try:
        # A savepoint: the insert's foreign key check is what tells, race-free, that a deletion
        # committed first, and PostgreSQL takes no statement after a failed one but a rollback.
        with s.begin_nested():
            s.execute(_insert(s, Page).values(
                document_id=document_id, number=number, status=PageStatus.PENDING.value,
                lines_total=0, lines_done=0, **fields,
            ).on_conflict_do_update(index_elements=["document_id", "number"], set_=fields))
    except IntegrityError:
        if s.scalar(select(func.count()).select_from(Document).where(Document.id == document_id)):
            raise
        raise DocumentGoneError(f"document {document_id} was deleted while it was being read") from None
    return s.scalars(_fresh(select(Page).where(
        Page.document_id == document_id, Page.number == number))).one()


def save_lines(
    s: Session, page_id: int, boxes: Sequence[tuple[int, BBox, str | None]]
) -> list[Line]:
    """Make the page's lines exactly `boxes` (position, bbox, crop_key); returns them in order.

    A line whose box is unchanged keeps its text; a moved one is reset to pending; lines no
    longer found are removed. The page's and document's counters are recounted.
    """
    positions = [p for p, _, _ in boxes]
    if len(set(positions)) != len(positions):
        raise ValueError(f"duplicate line positions for page {page_id}")
    page = s.scalars(_fresh(select(Page).where(Page.id == page_id), lock=True)).first()
    if page is None:
        raise NotFoundError(f"no page {page_id}")
    existing = {ln.position: ln for ln in s.scalars(
        _fresh(select(Line).where(Line.page_id == page_id), lock=True))}
    new_rows = []
    for position, box, crop_key in boxes:
        line = existing.get(position)
        if line is None:
            new_rows.append({"page_id": page_id, "position": position, "x0": box.x0,
                             "y0": box.y0, "x1": box.x1, "y1": box.y1, "crop_key": crop_key,
                             "status": LineStatus.PENDING.value})
            continue
        if (line.x0, line.y0, line.x1, line.y1) != (box.x0, box.y0, box.x1, box.y1):
            line.x0, line.y0, line.x1, line.y1 = box.x0, box.y0, box.x1, box.y1
            line.text = line.confidence = line.model = None
            line.status = LineStatus.PENDING.value
        line.crop_key = crop_key
    gone = [ln.id for pos, ln in existing.items() if pos not in set(positions)]
    if gone:
        s.execute(delete(Line).where(Line.id.in_(gone)),
                  execution_options={"synchronize_session": "fetch"})
    if new_rows:
        s.execute(_insert(s, Line).values(new_rows).on_conflict_do_nothing(
            index_elements=["page_id", "position"]))
    s.flush()
    lines = list(s.scalars(_fresh(select(Line).where(Line.page_id == page_id)
                                  .order_by(Line.position))))
    page.lines_total = len(lines)
    page.lines_done = sum(ln.status == LineStatus.DONE for ln in lines)
    page.status = (PageStatus.DONE if page.lines_done == page.lines_total
                   else PageStatus.PENDING).value
    doc = get_document(s, page.document_id, lock=True)
    s.flush()
    doc.pages_done = _pages_done(s, doc.id)
    s.flush()
    runon.fill_run_on(s, [page_id])  # a moved or removed line's neighbours no longer run on
    return lines


def set_line_texts(s: Session, results: Sequence[tuple[int, str, float]], model: str) -> None:
    """Store recognized (line_id, text, confidence); lines already done or gone are skipped."""
    by_id = {line_id: (text, conf) for line_id, text, conf in results}
    if not by_id:
        return
    page_ids = s.scalars(select(Line.page_id).where(Line.id.in_(by_id)).distinct()).all()
    pages = {p.id: p for p in s.scalars(_fresh(
        select(Page).where(Page.id.in_(page_ids)).order_by(Page.id), lock=True))}
    lines = s.scalars(_fresh(select(Line).where(
        Line.id.in_(by_id), Line.status == LineStatus.PENDING.value).order_by(Line.id), lock=True))
    per_page: Counter[int] = Counter()
    for line in lines:
        line.text, line.confidence = by_id[line.id][0], float(by_id[line.id][1])
        line.model, line.status = model, LineStatus.DONE.value
        per_page[line.page_id] += 1
    finished: Counter[str] = Counter()
    done: list[int] = []
    for page_id, n in per_page.items():
        page = pages[page_id]
        page.lines_done += n
        if page.lines_done >= page.lines_total and page.status != PageStatus.DONE:
            page.status = PageStatus.DONE.value
            finished[page.document_id] += 1
            done.append(page_id)
    for document_id in sorted(finished):
        get_document(s, document_id, lock=True).pages_done += finished[document_id]
    s.flush()
    # Read in any order, a page's lines are joined once it is all read (under the page's lock).
    runon.fill_run_on(s, done)


def set_page_count(s: Session, document_id: str, page_count: int) -> None:
    """Record how many pages ingest produced (the document is not finished yet)."""
    get_document(s, document_id, lock=True).page_count = page_count
    s.flush()


def finish_document(s: Session, document_id: str, page_count: int) -> None:
    doc = get_document(s, document_id, lock=True)
    doc.status, doc.page_count, doc.error = DocumentStatus.DONE.value, page_count, None
    doc.pages_done = _pages_done(s, document_id)
    s.flush()
    runon.fill_document(s, document_id)  # the finish stage's check: every page's lines joined


def _pages_done(s: Session, document_id: str) -> int:
    """The document's pages with every line read. The status is a filter on the document's pages,
    not a condition of the WHERE: SQLite (no statistics) took the condition to the index on
    pages.status and walked every done page of the database, for each page read (0.05 ms at 500
    documents, 0.5 ms at 8,000; docs/BENCHMARKS.md, "Many files")."""
    return s.scalar(select(func.count().filter(Page.status == PageStatus.DONE.value))
                    .select_from(Page).where(Page.document_id == document_id)) or 0


def fail_document(s: Session, document_id: str, reason: str) -> None:
    """Mark failed with the reason; pages and lines already saved are kept."""
    doc = get_document(s, document_id, lock=True)
    doc.status, doc.error = DocumentStatus.FAILED.value, reason
    s.flush()


def lines_remaining(s: Session, document_id: str) -> int:
    """Lines of the document still waiting for text (from its pages' lines, the status a filter:
    see `_pages_done`; on the index of lines.status, SQLite walked every pending line)."""
    return s.scalar(select(func.count(Line.id).filter(Line.status == LineStatus.PENDING.value))
                    .select_from(Page).join(Line, Line.page_id == Page.id)
                    .where(Page.document_id == document_id)) or 0


def document_complete(s: Session, document_id: str) -> bool:
    """Ingest has recorded its page count, all those pages exist, and no line is pending.

    Safer than lines_remaining() == 0 alone, which is also true while ingest is mid-way.
    """
    doc = get_document(s, document_id)
    if doc.page_count is None:
        return False
    pages = s.scalar(select(func.count()).select_from(Page).where(
        Page.document_id == document_id)) or 0
    return pages >= doc.page_count and lines_remaining(s, document_id) == 0


def lines_to_recognize(s: Session, line_ids: Sequence[int]) -> list[tuple[int, str, str]]:
    """(line_id, crop_key, document_id) of the given lines still pending and with a crop, of
    documents being processed."""
    rows = s.execute(select(Line.id, Line.crop_key, Page.document_id).join(Page).join(Document).where(
        Line.id.in_(line_ids), Line.status == LineStatus.PENDING.value, Line.crop_key.is_not(None),
        # Not of a document that failed or whose jobs were all cancelled: nobody waits for those.
        Document.status == DocumentStatus.PROCESSING.value,
    ).order_by(Line.id)).all()
    return [(lid, key, doc) for lid, key, doc in rows if key is not None]


def documents_of_lines(s: Session, line_ids: Sequence[int]) -> list[str]:
    return list(s.scalars(select(Page.document_id).join(Line).where(
        Line.id.in_(line_ids)).distinct().order_by(Page.document_id)))


def load_document_result(s: Session, document_id: str) -> DocumentResult:
    """Pages and their lines in reading order, as exporters take them."""
    doc = get_document(s, document_id)
    pages = list(s.scalars(select(Page).where(Page.document_id == document_id)
                           .order_by(Page.number)))
    by_page: dict[int, list[LineResult]] = {p.id: [] for p in pages}
    models: Counter[str] = Counter()
    for line in s.scalars(select(Line).join(Page).where(Page.document_id == document_id)
                          .order_by(Page.number, Line.position)):
        by_page[line.page_id].append(LineResult(
            order=line.position, bbox=BBox(line.x0, line.y0, line.x1, line.y1),
            text=line.text or "", confidence=line.confidence or 0.0,
        ))
        if line.model:
            models[line.model] += 1
    return DocumentResult(
        name=doc.name, sha256=doc.sha256,
        model=models.most_common(1)[0][0] if models else "",
        pages=tuple(PageResult(number=p.number, width=p.width, height=p.height, dpi=p.dpi,
                               angle=p.angle, rotation=p.rotation, lines=tuple(by_page[p.id]),
                               image_key=p.image_key) for p in pages),
        id=doc.id, created_at=doc.created_at, updated_at=doc.updated_at,
    )
