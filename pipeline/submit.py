"""Submitting documents to the distributed pipeline: source in the store, rows, then an ingest message.

Shared by `quire submit`, the job API and the bucket watcher. Sources stream (a folder or a
prefix of 100,000 files is never listed into memory), and each source is checkpointed per job,
so a stopped submission started again neither loses nor repeats a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

from sqlalchemy import Engine

from pipeline import storage
from pipeline.config import Settings
from pipeline.db import job_rows, locks, repo
from pipeline.db import jobs as jobrepo
from pipeline.db.models import DocumentStatus, JobStatus
from pipeline.db.session import session_scope
from pipeline.document_checks import DOCUMENT_SUFFIXES
from pipeline.errors import BadInputError, JobFinishedError
from pipeline.exporters import parse_formats
from pipeline.process import JobOptions, file_sha256
from pipeline.queue import FINISH, INGEST, NOTIFY, send

Enqueue = Callable[..., None]


@dataclass(frozen=True)
class Source:
    """One file to submit, known before it is read: where, its name, and a version string
    (S3 ETag, or size and mtime) so a file replaced under the same name counts as new."""

    uri: str
    name: str
    size: int
    version: str
    path: Path | None = None  # a local file: hashed and uploaded from disk
    opener: Callable[[], IO[bytes]] | None = field(default=None, compare=False)


def iter_local(paths: Iterable[Path]) -> Iterator[Source]:
    """Files as given, folders walked lazily in name order (hidden entries skipped). A file
    found in a folder is named by its path from that folder's own name (`box1/0001.pdf`),
    as `quire run` names it, so same-named files of two folders are told apart."""
    for path in paths:
        if path.is_dir():
            yield from _walk(path, Path(path.resolve().name))
        else:
            yield _local_source(path, path.name)


def _walk(folder: Path, name: Path) -> Iterator[Source]:
    with os.scandir(folder) as it:
        entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    for entry in entries:
        # Links to folders are not followed (a link back up would loop), as `quire run` walks.
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), name / entry.name)
        elif entry.is_file() and Path(entry.name).suffix.lower() in DOCUMENT_SUFFIXES:
            # (a link to nothing is no file: passed over)
            yield _local_source(Path(entry.path), (name / entry.name).as_posix())


def _local_source(path: Path, name: str) -> Source:
    st = path.stat()
    return Source(uri=path.resolve().as_uri(), name=name, size=st.st_size,
                  version=f"{st.st_size}-{st.st_mtime_ns}", path=path)


def iter_s3(uri: str, endpoint_url: str | None = None) -> Iterator[Source]:
    """Objects under s3://bucket/prefix with a document suffix, page by page from the listing."""
    store, prefix = _bucket(uri, endpoint_url)
    for info in store.list(prefix):
        if Path(info.key).suffix.lower() in DOCUMENT_SUFFIXES:
            yield s3_source(store, info)


def other_objects(uri: str, endpoint_url: str | None = None) -> Iterator[str]:
    """Keys under s3://bucket/prefix that `iter_s3` passes over (not a document by their suffix)."""
    store, prefix = _bucket(uri, endpoint_url)
    for info in store.list(prefix):
        if Path(info.key).suffix.lower() not in DOCUMENT_SUFFIXES:
            yield info.key


def _bucket(uri: str, endpoint_url: str | None) -> tuple[storage.S3Store, str]:
    parsed = urlparse(uri)
    return storage.S3Store(parsed.netloc, endpoint_url=endpoint_url), parsed.path.lstrip("/")


def s3_source(store: storage.S3Store, info: storage.ObjectInfo) -> Source:
    key = info.key
    # The whole key: a bucket's folders tell same-named files apart, as they do on disk.
    return Source(uri=store.url(key), name=key, size=info.size,
                  version=info.etag or f"{info.size}-{info.mtime}",
                  opener=lambda: store.open_read(key))


def iter_sources(specs: Iterable[str], endpoint_url: str | None = None) -> Iterator[Source]:
    for spec in specs:
        if spec.startswith("s3://"):
            yield from iter_s3(spec, endpoint_url)
        else:
            yield from iter_local([Path(spec)])


def store_source(store: storage.ObjectStore, src: Source) -> tuple[str, int]:
    """Put the source's bytes at documents/<sha256>/source (once); returns (sha256, size).

    A remote object is streamed through a temp file while hashing, so memory stays flat and
    the upload can go up in multipart chunks.
    """
    if src.path is not None:
        sha = file_sha256(src.path)
        if not store.exists(storage.source_key(sha)):
            store.put_file(storage.source_key(sha), src.path)
        return sha, src.path.stat().st_size
    if src.opener is None:
        raise BadInputError("source has neither a path nor a reader", source=src.uri)
    digest, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(prefix="quire-src-") as tmp:
        with src.opener() as body:
            while chunk := body.read(1 << 20):
                digest.update(chunk)
                tmp.write(chunk)
                size += len(chunk)
        tmp.flush()
        sha = digest.hexdigest()
        if not store.exists(storage.source_key(sha)):
            store.put_file(storage.source_key(sha), tmp.name)
    return sha, size


class Submitter:
    """Adds sources to jobs: rows and checkpoint in one transaction, the ingest message after."""

    def __init__(self, engine: Engine, store: storage.ObjectStore, options: JobOptions, *,
                 owner: str | None = None, enqueue: Enqueue = send) -> None:
        self.engine, self.store, self.options = engine, store, options
        self.owner, self.enqueue = owner, enqueue

    def open_job(self, *, idempotency_key: str | None = None, webhook_url: str | None = None,
                 accepting: bool = True) -> tuple[str, bool]:
        """(job id, made now); an existing job for the key is reopened for more documents."""
        with session_scope(self.engine) as s:
            job, created = jobrepo.create_keyed_job(
                s, settings=self.options.as_dict(), owner=self.owner,
                idempotency_key=idempotency_key, webhook_url=webhook_url, accepting=accepting)
            if accepting and not created and not job.accepting:
                jobrepo.set_accepting(s, job.id, True)
            return job.id, created

    def discard_job(self, job_id: str) -> None:
        """Remove a job whose submission failed part-way, with its links and checkpoints (its
        documents stay: work already queued for them is reused by the next submission)."""
        with session_scope(self.engine) as s:
            jobrepo.discard_job(s, job_id)

    def job_is_empty(self, job_id: str) -> bool:
        """Whether no document was linked to the job (its submission sent nothing)."""
        with session_scope(self.engine) as s:
            return jobrepo.next_position(s, job_id) == 0

    def close_job(self, job_id: str, *, forget_key: bool = False) -> str:
        """No more documents: the job may now finish (all of them read before, it ends here,
        and its webhook goes out). Returns its status. `forget_key` frees its idempotency key in
        the same transaction: the next submission under that key makes a job of its own."""
        with session_scope(self.engine) as s:
            if forget_key:
                job_rows.get_job(s, job_id, lock=True).idempotency_key = None
            job = jobrepo.set_accepting(s, job_id, False)
            status, notify = job.status, jobrepo.webhook_due(job)
        if notify:
            self.enqueue(NOTIFY, job_id)
        return status

    def open_keyed_job(self, idempotency_key: str) -> str | None:
        """The job made under this key if it still takes documents, else None; a key left on
        a job that no longer does is freed, so it is never reopened."""
        with session_scope(self.engine) as s:
            job = jobrepo.keyed_job(s, idempotency_key, owner=self.owner)
            if job is None:
                return None
            if job.accepting and job.status in jobrepo.LIVE:
                return job.id
            job.idempotency_key = None
            return None

    def add_keyed(self, job_id: str, src: Source, key: str, checkpoint: str) -> tuple[str, str]:
        """`add` to a job opened under idempotency key `key` (a watcher pass's, an S3 event's):
        if it was cancelled meanwhile (its key freed), what it held stays stopped and the file goes
        on in a new job under the key. Returns (the job it went to, the outcome)."""
        try:
            return job_id, self.add(job_id, src, checkpoint=checkpoint)
        except JobFinishedError:
            job_id, _ = self.open_job(idempotency_key=key)
            return job_id, self.add(job_id, src, checkpoint=checkpoint)

    def end_keyed_job(self, job_id: str | None) -> str | None:
        """After a keyed submission (also a failed one): the job is closed, its key freed, and
        what was sent finishes; a job that got nothing is discarded, not left behind (None)."""
        if job_id is None:
            return None
        if self.job_is_empty(job_id):
            self.discard_job(job_id)
            return None
        self.close_job(job_id, forget_key=True)
        return job_id

    def seen(self, src: Source, checkpoint: str) -> bool:
        """Whether this source (same URI and version) was fully taken in before."""
        with session_scope(self.engine) as s:
            found = jobrepo.get_checkpoint(s, checkpoint, src.uri, src.version)
            return found is not None and found.state == "queued"

    def add(self, job_id: str, src: Source, *, checkpoint: str | None = None) -> str:
        """Submit one source to a job: 'queued', 'reused' (already done), 'joined' (in progress
        for another job), 'resent' (committed before a crash, ingest sent now) or 'skipped'."""
        prefix = checkpoint or f"job:{job_id}"
        with session_scope(self.engine) as s:
            seen = jobrepo.get_checkpoint(s, prefix, src.uri, src.version)
            if seen is not None and seen.state == "queued":
                return "skipped"
        if seen is not None and seen.document_id:
            self._send_ingest(seen.document_id, seen.job_id or job_id)
            self._after_link(prefix, src, seen.job_id or job_id, seen.document_id)
            return "resent"
        sha, size = store_source(self.store, src)
        for attempt in locks.until_unclaimed():  # a clean-up deleting its objects: after it
            with attempt, session_scope(self.engine) as s:
                # The file's content lock before the job's (the order of pipeline.db.locks): a
                # delete of the document found here is committed before (a new one is made) or
                # waits for this link and sees it; never a document gone under the link.
                locks.lock_content(s, [sha])
                # Locked: a cancel either sees this document linked or is seen here, never neither.
                if job_rows.get_job(s, job_id, lock=True).status == JobStatus.CANCELLED:
                    raise JobFinishedError(f"job {job_id} was cancelled; submit a new job")
                doc, _ = repo.upsert_document(
                    s, sha256=sha, profile=self.options.profile, name=src.name,
                    source_uri=src.uri, size_bytes=size)
                job_rows.link_job_document(s, job_id, doc.id, jobrepo.next_position(s, job_id),
                                       src.name)
                jobrepo.add_checkpoint(s, prefix, src.uri, src.version, job_id=job_id,
                                       document_id=doc.id)
                document_id, status, profile = doc.id, doc.status, doc.profile
                if status == DocumentStatus.FAILED:
                    # Read again from a clean start, and counted as under way from now: a job's
                    # view must not say "failed, finished" while its ingest is queued.
                    repo.start_document(s, document_id)
                # Recounted before the ingest goes out: a job that earlier files had finished
                # (all read before) is running again, or a worker taking the message at once
                # would find no live job wanting the document and drop it.
                jobrepo.refresh_job(s, job_id)
        # The source was stored (or found there) before the row: the clean-up of a deletion of
        # the only other document of these bytes may have deleted it in between. It claims the
        # file under the content lock taken above and makes no delete once it has let go of the
        # claim (pipeline.db.locks), and no row is made while it holds: with the row committed,
        # none deletes it any more. Put back now if gone, it stays.
        if not self.store.exists(storage.source_key(sha)):
            store_source(self.store, src)
        if status in (DocumentStatus.PENDING, DocumentStatus.FAILED):
            self._send_ingest(document_id, job_id)
            outcome = "queued"
        else:
            outcome = "reused" if status == DocumentStatus.DONE else "joined"
            if status == DocumentStatus.DONE and self._lacks_exports(sha, profile):
                # Read before for jobs that asked for other formats: finish writes this job's
                # from the stored rows (no reading again).
                self.enqueue(FINISH, document_id)
        self._after_link(prefix, src, job_id, document_id)
        return outcome

    def _lacks_exports(self, sha: str, profile: str) -> bool:
        """Whether a format this job asks for has no export in the store yet."""
        written = storage.exports_written(self.store, sha, profile)
        wanted = parse_formats(",".join(self.options.formats or ("text", "json")))
        return any(exporter.name not in written for exporter in wanted)

    def _send_ingest(self, document_id: str, job_id: str) -> None:
        self.enqueue(INGEST, document_id, job_id)

    def _after_link(self, prefix: str, src: Source, job_id: str, document_id: str) -> None:
        with session_scope(self.engine) as s:
            jobrepo.mark_queued(s, prefix, src.uri, src.version)
            # Re-read after the link committed: a finish that ran in between saw no link to
            # this job, so the job is counted here instead (and otherwise by that finish).
            notify = jobrepo.webhook_due(jobrepo.refresh_job(s, job_id))
        if notify:
            self.enqueue(NOTIFY, job_id)

    def resend_unqueued(self, prefix: str) -> int:
        """Send ingest for sources committed before a crash whose message may be missing."""
        with session_scope(self.engine) as s:
            stale = [(c.key, c.etag, c.job_id, c.document_id)
                     for c in jobrepo.unqueued_checkpoints(s, prefix)]
        for key, etag, job_id, document_id in stale:
            if document_id and job_id:
                self._send_ingest(document_id, job_id)
            with session_scope(self.engine) as s:
                jobrepo.mark_queued(s, prefix, key, etag)
        return len(stale)


def submit_files(
    engine: Engine, store: storage.ObjectStore, paths: Iterable[Path], settings: Settings,
    *, formats: list[str], idempotency_key: str | None = None,
) -> str:
    """Create (or reopen) a job, submit each file, close it; returns the job id."""
    submitter = Submitter(engine, store, JobOptions.from_settings(settings, formats=formats))
    job_id, _ = submitter.open_job(idempotency_key=idempotency_key)
    for src in iter_local(paths):
        submitter.add(job_id, src)
    submitter.close_job(job_id)
    return job_id
