"""SQLAlchemy 2.0 models: jobs, documents, job_documents, pages, lines (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    PARTIAL = "partial"  # finished, some documents failed
    CANCELLED = "cancelled"  # stopped on request; what was read before is kept
    STOPPED = "stopped"  # its `quire run` was stopped or killed before it finished; what it read is kept


class DocumentStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


class PageStatus(StrEnum):
    PENDING = "pending"  # lines saved, text still missing for some
    DONE = "done"  # every line has text


class LineStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def text_key(text: str) -> str:
    """A name's or a path's SHA-256 (hex, of its UTF-8), which keys it in an index instead of the
    text itself: a long non-ASCII path outgrows what a PostgreSQL btree entry holds (2,704 bytes)."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both backends: SQLite drops the zone, so it is put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _in(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in enum)})"


# Deterministic constraint names: Alembic needs names to alter or drop constraints later,
# and SQLite/PostgreSQL would otherwise invent different ones.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Job(Base):
    """One submission: a set of documents processed with the same settings."""

    __tablename__ = "jobs"
    __table_args__ = (CheckConstraint(_in("status", JobStatus), name="status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)  # API token id
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value, index=True)
    documents_total: Mapped[int] = mapped_column(Integer, default=0)
    documents_done: Mapped[int] = mapped_column(Integer, default=0)
    documents_failed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    # Set once the completion webhook was delivered, so a redelivered finish sends it once.
    webhook_sent_at: Mapped[datetime | None] = mapped_column()
    # While the webhook is owed and not sent: when its last try ends (the job's end, an attempt's
    # timeout, a retry's countdown). A finish worker queues it again once this is
    # QUIRE_API__WEBHOOK_RESEND_SECONDS past (pipeline.webhook_sweep), so a notify task lost
    # with a killed worker is not waited for until Redis's visibility timeout. Cleared once sent
    # or given up.
    webhook_due_at: Mapped[datetime | None] = mapped_column(index=True)
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # True while a streaming submission still adds documents: the job cannot finish yet.
    accepting: Mapped[bool] = mapped_column(Boolean, default=False)
    # A `quire run` job's own record (pipeline.local_runs): the process running it, so a killed
    # run's job is told from a live one; how many inputs it was given; why it stopped and the
    # job that went on after it. None for jobs of the distributed setup.
    local_run: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # Renewed by a running `quire run` (pipeline.db.runs.beat), in the database's clock: from
    # another host, whose processes cannot be looked at, a run gone silent is taken as ended.
    heartbeat_at: Mapped[datetime | None] = mapped_column()

    links: Mapped[list[JobDocument]] = relationship(
        back_populates="job", order_by="JobDocument.position", passive_deletes=True
    )


class Document(Base):
    """A source file (by SHA-256) under one profile: a hash of model and render/recognition
    settings, so the same bytes under another model or dpi are another result."""

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("sha256", "profile"),
        CheckConstraint(_in("status", DocumentStatus), name="status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    sha256: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)  # a path, as long as the file system allows
    source_uri: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    page_count: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(
        String(16), default=DocumentStatus.PENDING.value, index=True
    )
    error: Mapped[str | None] = mapped_column(Text)
    pages_done: Mapped[int] = mapped_column(Integer, default=0)  # pages with all lines read
    # Set on a `quire run --redo` reading in progress (pipeline.db.readings): the document it will
    # replace the reading of once complete. Such a row is hidden from search, export and jobs.
    # Indexed: a rerun asks of each file done before whether a --redo of it waits (migration 0017).
    redo_of: Mapped[str | None] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"),
                                                index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    pages: Mapped[list[Page]] = relationship(
        back_populates="document", order_by="Page.number", passive_deletes=True
    )


class JobDocument(Base):
    """Which documents a job asked for, in submission order (a document can serve many jobs),
    once per name: two files of the same bytes in one job are two inputs of one document."""

    __tablename__ = "job_documents"
    # A job's documents in submission order, a page at a time (pipeline.db.job_status).
    __table_args__ = (Index("ix_job_documents_job_id_position", "job_id", "position"),)

    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[str] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # The name's text_key: each name is a link of its own, however long the name. Indexed:
    # search asks, for each hit, whether a later job sent the same name with other bytes.
    name_sha256: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)
    # The file's name as this job sent it (documents are shared by content, names are not).
    name: Mapped[str] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="links")
    document: Mapped[Document] = relationship()


class Page(Base):
    """A rendered page: its image in the store, size, resolution, quarter turn and deskew angle."""

    __tablename__ = "pages"
    # UNIQUE(document_id, number) also serves as the index on the foreign key.
    __table_args__ = (
        UniqueConstraint("document_id", "number"),
        CheckConstraint(_in("status", PageStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 1-based
    image_key: Mapped[str] = mapped_column(String(512))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    dpi: Mapped[int] = mapped_column(Integer)
    angle: Mapped[float] = mapped_column(Float, default=0.0)
    # Clockwise quarter turn (0, 90, 180, 270) that set the rendered page upright: the stored
    # image, the size and the boxes are the upright page's; a PDF export turns its page as much.
    rotation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16), default=PageStatus.PENDING.value, index=True)
    lines_total: Mapped[int] = mapped_column(Integer, default=0)
    lines_done: Mapped[int] = mapped_column(Integer, default=0)

    document: Mapped[Document] = relationship(back_populates="pages")
    lines: Mapped[list[Line]] = relationship(
        back_populates="page", order_by="Line.position", passive_deletes=True
    )


class Line(Base):
    """A text line on a page in reading order: box, crop key, and once read, text and confidence."""

    __tablename__ = "lines"
    # UNIQUE(page_id, position) also serves as the index on the foreign key.
    __table_args__ = (
        UniqueConstraint("page_id", "position"),
        CheckConstraint(_in("status", LineStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 0-based reading order (LineBox.order)
    x0: Mapped[int] = mapped_column(Integer)
    y0: Mapped[int] = mapped_column(Integer)
    x1: Mapped[int] = mapped_column(Integer)
    y1: Mapped[int] = mapped_column(Integer)
    crop_key: Mapped[str | None] = mapped_column(String(512))
    text: Mapped[str | None] = mapped_column(Text)
    # This line's text joined with the next one's in its column (a hyphenated word whole), which
    # search indexes to find phrases a line break cuts; set by pipeline.db.runon, never by hand.
    run_on: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=LineStatus.PENDING.value, index=True)
    # A recognize worker that took this line into its batch owns it until then (crash: expires).
    claimed_until: Mapped[datetime | None] = mapped_column()

    page: Mapped[Page] = relationship(back_populates="lines")


class ApiToken(Base):
    """A bearer token of the job API: only its SHA-256 is kept; owner is the tenant it acts for."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class WatchCheckpoint(Base):
    """An object the bucket watcher (or an S3 event) has taken in, keyed by (prefix, key, etag),
    the key by its text_key (a local file's key is its file: URI, as long as its path).

    state 'seen': committed with its document and job link, ingest maybe not yet sent;
    'queued': ingest sent. A restart resends 'seen' ones, so nothing is skipped or repeated.
    """

    __tablename__ = "watch_checkpoints"

    prefix: Mapped[str] = mapped_column(String(1024), primary_key=True)
    key_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    etag: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(36))
    document_id: Mapped[str | None] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16), default="seen", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PendingDeletion(Base):
    """Store objects no reading names any more (pipeline.db.readings), to delete: recorded in the
    transaction that let go of them and removed once they are deleted, so a run killed between
    the two leaves its successor a list to finish instead of strays nothing names. No foreign key:
    the record must outlive a dropped reading's row; `document_id` only names whose they were."""

    __tablename__ = "pending_deletions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(String(36))
    keys: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContentClaim(Base):
    """A file's stored objects that a clean-up is deleting now, outside any transaction
    (pipeline.cleanup): no document of those bytes (`sha256`) is made while it holds, so none can
    lose an object to a delete already on its way. It holds until its clean-up lets go of it, its
    `holder` (run_process.this_process()) is found gone, or `expires_at` (pipeline.db.locks)."""

    __tablename__ = "content_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    holder: Mapped[dict[str, Any]] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column()


class RunOutput(Base):
    """A file `quire run --out` wrote, as it was written: what it holds (`fingerprint`: of the
    reading, the name it carries and the format, pipeline.run_outputs) and how the file system saw
    it then (size, modification and change times), so that a rerun leaves it alone while it is
    unchanged and writes it again when it is missing, edited or of another reading. Keyed by the
    text_key of its absolute path, as long as the file system allows."""

    __tablename__ = "run_outputs"

    path_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    document_id: Mapped[str] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    fingerprint: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    ctime_ns: Mapped[int] = mapped_column(BigInteger)
    written_at: Mapped[datetime] = mapped_column(default=utcnow)


class FileHash(Base):
    """A file `quire run` hashed, as the file system saw it then (size, modification and change
    times, inode): a rerun over a collection done before takes the SHA-256 from here instead of
    reading every byte again, while all four are unchanged (any write changes the change time).
    Keyed by the text_key of its absolute path."""

    __tablename__ = "file_hashes"

    path_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    ctime_ns: Mapped[int] = mapped_column(BigInteger)
    inode: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    hashed_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = [
    "ApiToken",
    "Base",
    "ContentClaim",
    "Document",
    "DocumentStatus",
    "FileHash",
    "Job",
    "JobDocument",
    "JobStatus",
    "Line",
    "LineStatus",
    "Page",
    "PageStatus",
    "PendingDeletion",
    "RunOutput",
    "WatchCheckpoint",
    "utcnow",
]
