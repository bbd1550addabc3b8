"""Thin Celery tasks: IDs in, stage functions from pipeline.process, rows and objects out.

Every task is safe to run twice: ingest upserts pages and lines by natural keys and keeps
finished lines, recognize skips lines already read, finish rewrites the same export keys and
recounts jobs. SQL counters, not chords, decide when a document and a job are finished.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import Task
from sqlalchemy.exc import InterfaceError, OperationalError

from pipeline import storage
from pipeline.config import get_settings
from pipeline.db import job_rows, readings, repo
from pipeline.db import jobs as jobrepo
from pipeline.db.models import DocumentStatus, JobStatus
from pipeline.db.session import make_engine, session_scope
from pipeline.errors import (
    BadInputError,
    ModelLoadError,
    NotFoundError,
    ObjectNotFoundError,
    QuireError,
    StorageError,
)
from pipeline.exporters import get_exporter, parse_formats
from pipeline.metrics import DOCUMENTS, LINES, LINES_PER_SECOND, PAGES, Timer
from pipeline.process import (
    DocumentRef,
    JobOptions,
    decode_gray,
    finish_document,
    ingest_pages,
    save_texts,
)
from pipeline.queue import FINISH, INGEST, NOTIFY, RECOGNIZE, send
from pipeline.webhooks import WebhookError, deliver
from workers.app import app, recognizer_for
from workers.batching import WidthBatcher

log = logging.getLogger("quire.tasks")
_CACHE: dict[str, Any] = {}
# Failures that pass: the object store or the database restarting or failing over. Celery acks a
# task that raised, so without a retry its work would be gone and its job running for ever. The
# backoff (1 s doubling, at most 5 min apart) rides out about a quarter of an hour.
TRANSIENT = (StorageError, OperationalError, InterfaceError)
RETRY: dict[str, Any] = {"autoretry_for": TRANSIENT, "dont_autoretry_for": (ObjectNotFoundError,), "retry_backoff": True,
         "retry_backoff_max": 300, "max_retries": 10}


class FailsItsDocuments(Task):
    """A task that has failed for good (its retries spent, or an error no retry mends: a source
    object gone from the store, a bug) fails its documents with the reason, so their jobs end
    and say why instead of running for ever. `documents` says what its first argument is: a
    document id, or the line ids of a recognize batch."""

    documents = "document"

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        reason = f"{self.name.removeprefix('quire.')} failed: {exc}"
        try:
            if self.documents == "lines":
                _fail_batch(_engine(), args[0], reason)
            else:
                _fail_documents(_engine(), [args[0]], reason)
        except Exception:  # e.g. the database still down: the log keeps the reason
            log.exception("could not mark the documents of task %s failed (%s)", task_id, reason)


def _engine() -> Any:
    if "engine" not in _CACHE:  # one pool per worker process, made after the fork
        _CACHE["engine"] = make_engine(get_settings().resolved_database_url())
    return _CACHE["engine"]


def _store() -> storage.ObjectStore:
    if "store" not in _CACHE:
        settings = get_settings()
        _CACHE["store"] = storage.open_store(settings.resolved_storage_url(),
                                             settings.s3_endpoint_url)
    return _CACHE["store"]


def _known(fmt: str) -> bool:
    """A format this worker's exporters know (an older worker may lack a newer format)."""
    try:
        get_exporter(fmt)
        return True
    except QuireError:
        return False


def _refresh_jobs(s: Any, job_ids: list[str]) -> list[str]:
    """Recount jobs; return those that just finished and want a webhook."""
    return [job_id for job_id in job_ids if jobrepo.webhook_due(jobrepo.refresh_job(s, job_id))]


@app.task(name=INGEST, base=FailsItsDocuments, **RETRY)
def ingest_document(document_id: str, job_id: str) -> None:
    """Render and segment one document, store pages and crops, enqueue width-grouped batches.
    A document deleted before or while it is read (its job cancelled, then the document: nobody
    wants it) ends the task quietly; what it stored for a page after the deletion goes too."""
    # DocumentGoneError from a page, the document's row gone, or its source deleted with it.
    with _quiet_if_deleted("ingest", document_id, (NotFoundError, ObjectNotFoundError)):
        _ingest(document_id, job_id)


@contextlib.contextmanager
def _quiet_if_deleted(task: str, document_id: str, errors: tuple[type[Exception], ...]) -> Iterator[None]:
    """A task that finds no document (or its source) ends quietly if the document is gone: a
    delete may come between the message and the task (pipeline.deletion), and that is no error."""
    try:
        yield
    except errors:
        with session_scope(_engine()) as s:
            there = readings.document_exists(s, document_id)
        if there:
            raise
        log.info("%s doc=%s: deleted meanwhile, nothing to do", task, document_id)


def _unfinished(s: Any, document_id: str) -> bool:
    """There (not deleted since its lines were claimed: its job cancelled, then the document)
    and not done."""
    doc = repo.find_document(s, document_id)
    return doc is not None and doc.status != DocumentStatus.DONE


def _ingest(document_id: str, job_id: str) -> None:
    settings = get_settings()
    engine, store = _engine(), _store()
    with session_scope(engine) as s:
        if (repo.get_document(s, document_id).status != DocumentStatus.DONE
                and not jobrepo.document_wanted(s, document_id)):
            # Every job that asked for it was cancelled.
            log.info("ingest doc=%s: no live job wants it, skipped", document_id)
            return
        doc = jobrepo.begin_ingest(s, document_id)
        ref = DocumentRef(doc.id, doc.sha256, doc.profile)
        name, done = doc.name, doc.status == DocumentStatus.DONE
        job_row = job_rows.get_job(s, job_id)
        options = dict(job_row.settings)
        notify = _refresh_jobs(s, job_rows.job_ids_for_document(s, document_id)) if done else []
        if not done and job_row.status == JobStatus.QUEUED.value:
            jobrepo.refresh_job(s, job_id)  # a document of it is under way: running, not queued
    for jid in notify:
        send(NOTIFY, jid)
    if done:
        return
    job = JobOptions.from_dict(options)
    model, beam, decode = job.model, job.beam, job.decode
    # The worker's own render settings (pixel limit, chunk size); the job's dpi, scan choice and
    # page turning, as its documents' profile says.
    render = settings.render.model_copy(update={
        "dpi": job.dpi, "embedded_scans": job.embedded_scans, "rotate_pages": job.rotate_pages})
    batcher = WidthBatcher(settings.queue.batch_lines())
    pages = lines = 0
    log.info("ingest job=%s doc=%s name=%s", job_id, document_id, name)
    with Timer("ingest") as timer:
        try:
            with tempfile.TemporaryDirectory(prefix="quire-ingest-") as tmp:
                source = Path(tmp) / "source"
                store.download_file(storage.source_key(ref.sha256), source)
                for page in ingest_pages(engine, store, ref, source, render, store_crops=True):
                    pages += 1
                    PAGES.inc()
                    with session_scope(engine) as s:  # a redelivery re-sends unread lines only
                        if not jobrepo.document_wanted(s, document_id):
                            log.info("ingest doc=%s: cancelled after %d pages", document_id, pages)
                            return
                        todo = jobrepo.pending_lines(s, page.line_ids)
                    lines += len(todo)
                    for batch in batcher.add(todo):
                        send(RECOGNIZE, batch, model, beam, decode)
            for batch in batcher.flush():
                send(RECOGNIZE, batch, model, beam, decode)
        except BadInputError as exc:
            DOCUMENTS.labels("failed").inc()
            _fail_documents(engine, [document_id], exc.reason)
            return
    with session_scope(engine) as s:
        repo.set_page_count(s, document_id, pages)
        complete = repo.document_complete(s, document_id)
        for jid in job_rows.job_ids_for_document(s, document_id):
            jobrepo.refresh_job(s, jid)  # queued -> running for every job sharing the document
    log.info("ingested job=%s doc=%s pages=%d lines_to_read=%d in %.1fs", job_id, document_id,
             pages, lines, timer.seconds)
    if complete:  # no text lines, or all read already (a redelivery after the last batch)
        send(FINISH, document_id)


@app.task(name=RECOGNIZE, base=FailsItsDocuments, documents="lines", **RETRY)
def recognize_lines(line_ids: list[int], model: str, beam: int | None = None,
                    decode: str | None = None) -> None:
    """Recognize a batch of stored crops, topped up with other documents' waiting lines."""
    settings = get_settings()
    q = settings.queue
    engine, store = _engine(), _store()
    with session_scope(engine) as s:
        profile = jobrepo.profile_of_lines(s, line_ids) if q.topup else None
        extra = max(0, q.batch_lines() - len(line_ids)) if q.topup else 0
        todo = jobrepo.claim_lines(s, line_ids, profile=profile, extra=extra,
                                   lease_s=q.lease_seconds)
    started = time.perf_counter()
    try:
        reader = recognizer_for(model, beam, decode) if todo else None
    except ModelLoadError as exc:
        # No retry loads it: the documents fail with the reason (their job ends, not "running"
        # for ever). Another worker's top-up lines of other jobs were only leased: they go back.
        _fail_batch(engine, line_ids, f"{exc}")
        return
    with Timer("recognize"):
        if reader is not None:  # loaded when there are lines to read (todo)
            crops = [decode_gray(data) for data in storage.get_many(store, [key for _, key, _ in todo])]
            texts = reader.recognize(crops)
            save_texts(engine, [lid for lid, _, _ in todo], texts, model)
    elapsed = time.perf_counter() - started
    documents = sorted({doc for _, _, doc in todo})
    if todo:
        LINES.labels(model).inc(len(todo))
        LINES_PER_SECOND.set(len(todo) / elapsed if elapsed > 0 else 0.0)
        log.info("recognized lines=%d (own %d) docs=%s in %.2fs (%.1f lines/s)", len(todo),
                 len(line_ids), ",".join(documents), elapsed, len(todo) / max(elapsed, 1e-9))
    with session_scope(engine) as s:
        candidates = set(documents) | set(repo.documents_of_lines(s, line_ids))
        ready = [d for d in sorted(candidates) if _unfinished(s, d) and repo.document_complete(s, d)]
    for document_id in ready:
        send(FINISH, document_id)


def _fail_documents(engine: Any, documents: list[str], reason: str) -> None:
    """Fail these documents (those not already done), recount their jobs, tell those that ended."""
    with session_scope(engine) as s:
        documents = [d for d in documents if _unfinished(s, d)]
        for document_id in documents:
            repo.fail_document(s, document_id, reason)
        notify = _refresh_jobs(s, sorted({j for d in documents for j in job_rows.job_ids_for_document(s, d)}))
    log.warning("failed docs=%s: %s", ",".join(documents), reason)
    for jid in notify:
        send(NOTIFY, jid)


def _fail_batch(engine: Any, line_ids: list[int], reason: str) -> None:
    """Fail the documents a recognize batch's lines belong to (`_fail_documents`)."""
    with session_scope(engine) as s:
        documents = repo.documents_of_lines(s, line_ids)
    _fail_documents(engine, documents, reason)


@app.task(name=FINISH, base=FailsItsDocuments, **RETRY)
def finish_document_task(document_id: str) -> None:
    """Write the exports every linked job asked for and recount those jobs (safe to run twice).
    A document deleted since the message was sent ends the task quietly."""
    with _quiet_if_deleted("finish", document_id, (NotFoundError,)):
        _finish(document_id)


def _finish(document_id: str) -> None:
    engine, store = _engine(), _store()
    with session_scope(engine) as s:
        if not repo.document_complete(s, document_id):
            log.info("finish doc=%s: not complete yet, ignored", document_id)
            return
        doc = repo.get_document(s, document_id)
        ref = DocumentRef(doc.id, doc.sha256, doc.profile)
        page_count = doc.page_count or 0
        finished = doc.status == DocumentStatus.DONE
        job_ids = job_rows.job_ids_for_document(s, document_id)
        wanted: dict[str, None] = {}
        for jid in job_ids:
            for fmt in job_rows.get_job(s, jid).settings.get("formats") or ["text", "json"]:
                wanted[fmt] = None
    names = [f for f in wanted if _known(f)] or ["text", "json"]
    exporters = parse_formats(",".join(names))
    # Two recognize tasks can both see the last lines read and send a finish each; the second
    # finds the document done (its exports are written in the same transaction) and writes
    # only what a job that joined since asked for.
    if finished and {e.name for e in exporters} <= storage.exports_written(store, ref.sha256, ref.profile):
        log.info("finish doc=%s: done already, exports written", document_id)
    else:
        with Timer("finish"):
            finish_document(engine, store, ref, page_count, exporters)
        DOCUMENTS.labels("done").inc()
    with session_scope(engine) as s:
        job_ids = job_rows.job_ids_for_document(s, document_id)  # a job may have joined meanwhile
        notify = _refresh_jobs(s, job_ids)
    log.info("finished doc=%s pages=%d jobs=%s", document_id, page_count, ",".join(job_ids))
    for jid in notify:
        send(NOTIFY, jid)


@app.task(name=NOTIFY, bind=True, max_retries=jobrepo.WEBHOOK_ATTEMPTS - 1)
def notify_job(self: Any, job_id: str) -> None:
    """Send the job's signed completion webhook once; failures retry with backoff. Each try is
    recorded before it is made, so one lost with a killed worker is queued again by a finish
    worker's sweep (pipeline.webhook_sweep) within minutes."""
    from pipeline.api.views import job_view

    settings = get_settings()
    engine = _engine()
    timeout = settings.api.webhook_timeout
    with session_scope(engine) as s:
        if not jobrepo.begin_webhook_attempt(s, job_id, timeout):
            return  # sent already (a repeated task), not ended, or given up
    try:
        # The claim commits only after the receiver answered 2xx. A worker killed while
        # delivering (kill -9, OOM) leaves no claim behind: its connection goes and the database
        # rolls back, so the sweep (or the redelivered task) sends the webhook instead of finding
        # it 'sent' and dropping it for good. A concurrent notify of the same job waits on the row
        # meanwhile (at most the webhook timeout; on SQLite every writer does) and then finds it
        # sent.
        with session_scope(engine) as s:
            job = job_rows.get_job(s, job_id)
            if job.status not in jobrepo.FINISHED or not jobrepo.claim_webhook(s, job_id):
                return
            delivery = jobrepo.delivery_id(job_id)
            url, payload = job.webhook_url, {"event": "job.finished", "delivery": delivery,
                                             "job": job_view(s, job)}
            status = deliver(url or "", payload, settings.api.webhook_secret, timeout=timeout,
                             delivery=delivery)
        log.info("webhook job=%s -> %s", job_id, status)
    except WebhookError as exc:  # the claim rolled back with the session: a retry takes it
        countdown = min(600, 2 ** self.request.retries)
        with session_scope(engine) as s:  # the sweep leaves it to the retry till then
            more = jobrepo.webhook_failed(s, job_id, countdown + timeout)
        if not more:
            log.warning("webhook job=%s failed: %s; given up after %d tries", job_id, exc,
                        jobrepo.WEBHOOK_ATTEMPTS)
            return
        log.warning("webhook job=%s failed: %s", job_id, exc)
        raise self.retry(exc=exc, countdown=countdown) from exc
