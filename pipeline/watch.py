"""Bucket drop: find new objects under s3://bucket/prefix and submit them as documents of a job.

Each object is checkpointed in SQL by (bucket, key, ETag) in the same transaction that links
its document to the job, so a watcher restarted at any point neither skips nor repeats a file;
one whose ingest message may have been lost in a crash is re-sent on the next pass.

A pass's job takes documents ('accepting') until the pass has sent them all, then is closed: it
shows 'running' meanwhile, however fast workers read what was sent, and finishes once (it used
to show 'done', then 'running' again when the pass sent the next file). The job is made under a
key of the watched prefix, freed when it is closed: a pass killed mid-way leaves its job open
under the key, and the next pass goes on with it and closes it.

An object deleted between the listing and its reading (an archive inbox moves and deletes files
all the time) is passed over, named in a one-line notice and reported as `missing`, as an S3
event's is; no checkpoint is kept for it, so if it comes back it is taken. It used to end the
whole pass ("watch pass failed"), leaving the rest of the listing to the next one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy import Engine

from pipeline import storage
from pipeline.document_checks import DOCUMENT_SUFFIXES
from pipeline.errors import ConfigError, ObjectNotFoundError
from pipeline.queue import send
from pipeline.submit import Enqueue, JobOptions, Submitter, s3_source

log = logging.getLogger(__name__)


def checkpoint_prefix(bucket: str, owner: str | None) -> str:
    """Checkpoints are per bucket and tenant, shared by the tenant's watchers and S3 event
    webhooks. Per tenant: a file another tenant was sent first is still this tenant's to take
    (the reading is shared by content), not passed over as seen, leaving it no job or document."""
    return f"s3://{bucket}/" if owner is None else f"s3://{bucket}/{OWNER_MARK}{owner}"


# Between a checkpoint prefix's bucket and its tenant: '#' is in no bucket name (migration 0010).
OWNER_MARK = "#owner="


@dataclass
class ScanResult:
    job_id: str | None = None
    submitted: int = 0
    skipped: int = 0
    resent: int = 0
    missing: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


class Watcher:
    """Lists a prefix page by page (never all keys in memory) and submits what is new."""

    def __init__(self, engine: Engine, store: storage.ObjectStore, uri: str,
                 options: JobOptions, *, owner: str | None = "watcher",
                 endpoint_url: str | None = None, enqueue: Enqueue = send) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(f"watch needs an s3://bucket/prefix URI, not {uri!r}")
        self.bucket = storage.S3Store(parsed.netloc, endpoint_url=endpoint_url)
        self.prefix = parsed.path.lstrip("/")
        self.checkpoint = checkpoint_prefix(parsed.netloc, owner)
        self.submitter = Submitter(engine, store, options, owner=owner, enqueue=enqueue)
        # One open job at a time per watched prefix and owner (hashed: a prefix may be 1,024
        # bytes, a key 255).
        where = f"{owner}\n{self.checkpoint}{self.prefix}"
        self.pass_key = "watch:" + hashlib.sha256(where.encode()).hexdigest()

    def scan(self) -> ScanResult:
        """One pass: new objects become one job (made only if something is new), closed when
        the pass is over; one a killed pass left open is taken up and closed too."""
        result = ScanResult(resent=self.submitter.resend_unqueued(self.checkpoint))
        result.job_id = self.submitter.open_keyed_job(self.pass_key)
        try:
            for info in self.bucket.list(self.prefix):
                if Path(info.key).suffix.lower() not in DOCUMENT_SUFFIXES:
                    continue
                src = s3_source(self.bucket, info)
                if self.submitter.seen(src, self.checkpoint):
                    result.skipped += 1
                    continue
                if result.job_id is None:
                    result.job_id, _ = self.submitter.open_job(idempotency_key=self.pass_key)
                try:
                    result.job_id, outcome = self.submitter.add_keyed(
                        result.job_id, src, self.pass_key, self.checkpoint)
                except ObjectNotFoundError:
                    # Deleted since it was listed: passed over, no checkpoint (taken if it comes back).
                    result.missing.append(src.uri)
                    log.warning("watch: %s is missing (deleted since it was listed); passed over",
                                src.uri)
                    continue
                result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
                if outcome == "skipped":
                    result.skipped += 1
                else:
                    result.submitted += 1
                    log.info("watch: %s -> job=%s (%s)", src.uri, result.job_id, outcome)
        finally:
            # Also after a failed listing: what was sent finishes; the rest is the next pass's.
            # A job that got nothing (its only new files were missing) is not left behind.
            result.job_id = self.submitter.end_keyed_job(result.job_id)
        return result

    def run(self, interval: float, stop: threading.Event | None = None) -> None:
        """Scan every `interval` seconds until stopped; a failed pass is logged and retried."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                result = self.scan()
                if result.submitted:
                    log.warning("watch: %d new file(s) in job %s", result.submitted,
                                result.job_id)
            except Exception:
                log.exception("watch pass failed; retrying in %.0f s", interval)
            stop.wait(interval)
