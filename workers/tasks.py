"""Thin Celery tasks: IDs in, stage functions from pipeline.process, rows and objects out."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from pipeline import storage
from pipeline.config import RenderOptions, get_settings
from pipeline.db import repo
from pipeline.db.session import make_engine, session_scope
from pipeline.errors import BadInputError, StorageError
from pipeline.exporters import parse_formats
from pipeline.process import DocumentRef, decode_gray, finish_document, ingest_pages, save_texts
from pipeline.queue import FINISH, INGEST, RECOGNIZE, send
from workers.app import app, recognizer_for

log = logging.getLogger(__name__)


def _engine():
    return _cached("engine", lambda: make_engine(get_settings().resolved_database_url()))


def _store():
    settings = get_settings()
    return _cached("store", lambda: storage.open_store(settings.resolved_storage_url(), settings.s3_endpoint_url))


_CACHE: dict[str, object] = {}


def _cached(name: str, factory):
    if name not in _CACHE:
        _CACHE[name] = factory()
    return _CACHE[name]


@app.task(name=INGEST, autoretry_for=(StorageError,), retry_backoff=True, max_retries=5)
def ingest_document(document_id: str, job_id: str) -> None:
    """Render and segment one document, store page images and crops, enqueue recognition batches."""
    engine, store = _engine(), _store()
    with session_scope(engine) as s:
        doc = repo.get_document(s, document_id)
        job_settings = dict(repo.get_job(s, job_id).settings)
        ref = DocumentRef(doc.id, doc.sha256, doc.profile)
        if doc.status == "done":
            repo.update_job_counts(s, job_id)
            return
        repo.start_document(s, doc.id)
    options = RenderOptions(dpi=job_settings.get("dpi", get_settings().render.dpi))
    model = job_settings.get("model", get_settings().model)
    batch = get_settings().recognize.batch_size
    pages = 0
    try:
        with tempfile.TemporaryDirectory(prefix="quire-ingest-") as tmp:
            source = Path(tmp) / (doc.name or "source")
            store.download_file(storage.source_key(ref.sha256), source)
            for page in ingest_pages(engine, store, ref, source, options, store_crops=True):
                pages += 1
                for start in range(0, len(page.line_ids), batch):
                    send(RECOGNIZE, list(page.line_ids[start : start + batch]), model)
    except BadInputError as exc:
        log.warning("document %s failed: %s", document_id, exc)
        with session_scope(engine) as s:
            repo.fail_document(s, document_id, exc.reason)
            for jid in repo.job_ids_for_document(s, document_id):
                repo.update_job_counts(s, jid)
        return
    with session_scope(engine) as s:
        repo.set_page_count(s, document_id, pages)
        complete = repo.document_complete(s, document_id)
    if complete:  # a document without text lines has nothing to recognize
        send(FINISH, document_id)


@app.task(name=RECOGNIZE, autoretry_for=(StorageError,), retry_backoff=True, max_retries=5)
def recognize_lines(line_ids: list[int], model: str) -> None:
    """Recognize a batch of stored line crops; lines already done are skipped."""
    engine, store = _engine(), _store()
    with session_scope(engine) as s:
        todo = repo.lines_to_recognize(s, line_ids)  # [(line_id, crop_key, document_id)]
    if todo:
        crops = [decode_gray(store.get_bytes(key)) for _, key, _ in todo]
        texts = recognizer_for(model).recognize(crops)
        save_texts(engine, [lid for lid, _, _ in todo], texts, model)
    with session_scope(engine) as s:
        documents = repo.documents_of_lines(s, line_ids)
        ready = [d for d in documents if repo.document_complete(s, d)]
    for document_id in ready:
        send(FINISH, document_id)


@app.task(name=FINISH, autoretry_for=(StorageError,), retry_backoff=True, max_retries=5)
def finish_document_task(document_id: str) -> None:
    """Write the exports and update every job the document belongs to (safe to run twice)."""
    engine, store = _engine(), _store()
    with session_scope(engine) as s:
        doc = repo.get_document(s, document_id)
        ref = DocumentRef(doc.id, doc.sha256, doc.profile)
        page_count = doc.page_count or 0
        job_ids = repo.job_ids_for_document(s, document_id)
        formats = ",".join(repo.get_job(s, job_ids[0]).settings.get("formats", ["text", "json"])) if job_ids else "text,json"
    finish_document(engine, store, ref, page_count, parse_formats(formats))
    with session_scope(engine) as s:
        for job_id in job_ids:
            repo.update_job_counts(s, job_id)
