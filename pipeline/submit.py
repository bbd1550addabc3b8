"""Submitting documents to the distributed pipeline: rows and source objects first, then an ingest message."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pipeline import storage
from pipeline.config import Settings
from pipeline.db import repo
from pipeline.db.session import session_scope
from pipeline.process import file_sha256, profile_key
from pipeline.queue import INGEST, send


def job_settings(settings: Settings, formats: list[str]) -> dict:
    return {"model": settings.model, "dpi": settings.render.dpi,
            "beam": settings.recognize.beam, "formats": formats}


def submit_files(
    engine, store: storage.ObjectStore, paths: Iterable[Path], settings: Settings,
    *, formats: list[str], idempotency_key: str | None = None,
) -> str:
    """Create (or find) the job, register each file as a document and enqueue its ingest."""
    options = job_settings(settings, formats)
    profile = profile_key(model=settings.model, dpi=settings.render.dpi, beam=settings.recognize.beam)
    with session_scope(engine) as s:
        job_id = repo.create_job(s, settings=options, idempotency_key=idempotency_key).id
    for position, path in enumerate(paths):
        sha = file_sha256(path)
        key = storage.source_key(sha)
        if not store.exists(key):
            store.put_file(key, path)
        with session_scope(engine) as s:
            doc, done = repo.upsert_document(
                s, sha256=sha, profile=profile, name=path.name, source_uri=store.url(key),
                size_bytes=path.stat().st_size,
            )
            repo.link_job_document(s, job_id, doc.id, position)
            document_id = doc.id
            if done:
                repo.update_job_counts(s, job_id)
        if not done:
            send(INGEST, document_id, job_id)
    return job_id
