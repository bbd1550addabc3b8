"""A job's counts, lines and progress from SQL aggregates, and its documents a page at a time: the
cost of a status poll must not grow with the documents loaded into Python (a job of 100,000)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Float, case, cast, func, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from pipeline.db.models import Document, DocumentStatus, JobDocument, Line, LineStatus, Page
from pipeline.db.runs import STOP_REASONS


@dataclass
class Tally:
    """One job's documents counted by link (a file the job sent under two names counts twice,
    as the names are its inputs), its lines by document (each once)."""

    links: int = 0
    done: int = 0
    failed: int = 0  # failed as files: not the documents a stopped `quire run` left unfinished
    failed_links: int = 0  # every failed link, the unfinished ones too (what the failed list shows)
    finished: float = 0.0  # done and failed links: 1 each
    partial: float = 0.0  # the sum of done/total lines over the links being read or left unfinished
    lines_total: int = 0
    lines_done: int = 0

    @property
    def progress(self) -> float:
        # Ingest may still be adding lines to a document being read: 0.9 caps it below 100 %.
        return self.finished + 0.9 * self.partial


def _unfinished() -> ColumnElement[bool]:
    """A link's document stopped with its `quire run`: not done, not a failure of the file."""
    return (Document.status == DocumentStatus.FAILED.value) & Document.error.in_(STOP_REASONS)


def tallies(s: Session, job_ids: Sequence[str]) -> dict[str, Tally]:
    """Each job's Tally in three statements, however many jobs and documents."""
    found = {job_id: Tally() for job_id in job_ids}
    if not found:
        return found
    stop = case((_unfinished(), 1), else_=0)
    for job_id, status, unfinished, n in s.execute(
            select(JobDocument.job_id, Document.status, stop, func.count())
            .join(Document, Document.id == JobDocument.document_id)
            .where(JobDocument.job_id.in_(found)).group_by(JobDocument.job_id, Document.status, stop)):
        t = found[job_id]
        t.links += n
        if status == DocumentStatus.DONE:
            t.done += n
        elif status == DocumentStatus.FAILED:
            t.failed_links += n
            t.failed += 0 if unfinished else n
    for t in found.values():
        t.finished = float(t.done + t.failed)
    # Lines from the pages' counters, not the lines: repo.save_lines sets them from the page's rows
    # and set_line_texts adds each line it reads, under the page's lock, so they are the lines'
    # counts at a fortieth of the rows (tests/unit/test_job_status.py checks they agree).
    # Each document once per job, though the job may have sent it under several names.
    docs = (select(JobDocument.job_id, JobDocument.document_id).distinct()
            .where(JobDocument.job_id.in_(found)).subquery())
    for job_id, total, done in s.execute(
            select(docs.c.job_id, func.sum(Page.lines_total), func.sum(Page.lines_done))
            .join(Page, Page.document_id == docs.c.document_id).group_by(docs.c.job_id)):
        found[job_id].lines_total, found[job_id].lines_done = int(total or 0), int(done or 0)
    # Per link of a document being read (or left so by a stopped run): its share of lines read.
    # A document without lines yet adds nothing.
    per_link = (select(JobDocument.job_id.label("job_id"),
                       (cast(func.sum(Page.lines_done), Float)
                        / func.nullif(func.sum(Page.lines_total), 0)).label("share"))
                .join(Document, Document.id == JobDocument.document_id)
                .join(Page, Page.document_id == Document.id)
                .where(JobDocument.job_id.in_(found),
                       (Document.status == DocumentStatus.PROCESSING.value) | _unfinished())
                .group_by(JobDocument.job_id, JobDocument.document_id, JobDocument.name_sha256)
                .subquery())
    for job_id, share in s.execute(select(per_link.c.job_id, func.sum(per_link.c.share))
                                   .group_by(per_link.c.job_id)):
        found[job_id].partial = float(share or 0.0)
    return found


@dataclass
class Listed:
    """A job's document as listed: the name the job sent it by, its lines (total, done), and
    the cursor that lists on after it."""

    document: Document
    name: str
    lines: tuple[int, int]
    cursor: str


class BadCursor(ValueError):
    pass


def _cursor(position: int, document_id: str, name_sha256: str) -> str:
    return f"{position}:{document_id}:{name_sha256}"


def _parse(cursor: str) -> tuple[int, str, str]:
    try:
        position, document_id, name_sha256 = cursor.split(":", 2)
        return int(position), document_id, name_sha256
    except ValueError:
        raise BadCursor(f"not a cursor of this list: {cursor!r}") from None


def documents_page(s: Session, job_id: str, *, status: str | None = None, after: str | None = None,
                   limit: int = 100) -> list[Listed]:
    """Up to `limit` of the job's documents in submission order, after the cursor `after`;
    `status` keeps those in that state (`failed` includes a stopped run's unfinished ones).
    Keyset pagination on (position, document, name): each page costs the same, however deep."""
    key = tuple_(JobDocument.position, JobDocument.document_id, JobDocument.name_sha256)
    query = (select(Document, JobDocument.name, JobDocument.position, JobDocument.name_sha256)
             .join(JobDocument, JobDocument.document_id == Document.id)
             .where(JobDocument.job_id == job_id)
             .order_by(JobDocument.position, JobDocument.document_id, JobDocument.name_sha256)
             .limit(limit))
    if status is not None:
        query = query.where(Document.status == status)
    if after is not None:
        query = query.where(key > tuple_(*_parse(after)))
    rows = s.execute(query).all()
    ids = {doc.id for doc, *_ in rows}
    lines: dict[str, tuple[int, int]] = {}
    if ids:
        lines = {doc_id: (int(total), int(done)) for doc_id, total, done in s.execute(
            select(Page.document_id, func.count(Line.id),
                   func.count(Line.id).filter(Line.status == LineStatus.DONE.value))
            .join(Line, Line.page_id == Page.id).where(Page.document_id.in_(ids))
            .group_by(Page.document_id))}
    return [Listed(doc, name, lines.get(doc.id, (0, 0)), _cursor(position, doc.id, name_key))
            for doc, name, position, name_key in rows]
