"""S3/MinIO ObjectCreated notifications (`POST /v1/events/s3`) submitted as one job per event.

The event's job takes documents ('accepting') until every object in it has been sent, then is
closed, as a watcher pass's is: closed from the start, a job whose first files workers read before
the next was added showed 'done', then 'running' again. It is made under a key of the event's
objects, freed when it is closed: a delivery that died half-way leaves it open under the key, and
the sender's retry of the same event goes on with it and closes it.

An object deleted before its notification is read is passed over (reported as `missing`), not an
error: the sender would retry the event for ever, and each try used to leave an empty job 'queued'.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

from pipeline.document_checks import DOCUMENT_SUFFIXES
from pipeline.errors import BadInputError, ObjectNotFoundError
from pipeline.storage import ObjectInfo
from pipeline.submit import Source, Submitter
from pipeline.watch import checkpoint_prefix


@dataclass
class EventResult:
    job: str | None = None
    accepted: int = 0
    skipped: int = 0
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"job": self.job, "accepted": self.accepted, "skipped": self.skipped}
        if self.missing:
            out["missing"] = self.missing
        return out


def created_objects(body: Any) -> list[tuple[str, ObjectInfo]]:
    """(bucket, object) of each ObjectCreated record of a document; BadInputError (a 422) for a
    body that is not an S3 notification, instead of a 500 with a traceback."""
    records = body.get("Records", []) if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise BadInputError('not an S3 event notification: expected {"Records": [...]}')
    objects = []
    for n, record in enumerate(records):
        s3 = record.get("s3") if isinstance(record, dict) else None
        if not isinstance(s3, dict):
            raise BadInputError(f"Records[{n}] is not an S3 event record (no \"s3\" object)")
        if not str(record.get("eventName", "")).startswith(("ObjectCreated", "s3:ObjectCreated")):
            continue
        bucket = (s3.get("bucket") or {}).get("name") if isinstance(s3.get("bucket"), dict) else None
        found = s3.get("object")
        obj = found if isinstance(found, dict) else {}
        if not bucket or not obj.get("key"):
            continue
        key = unquote_plus(str(obj["key"]))  # event keys are URL-encoded
        if PurePosixPath(key).suffix.lower() not in DOCUMENT_SUFFIXES:
            continue  # notes, spreadsheets: passed over, as the bucket watcher does
        objects.append((bucket, ObjectInfo(key=key, size=int(obj.get("size") or 0),
                                           etag=obj.get("eTag") or obj.get("etag"))))
    return objects


def event_key(owner: str | None, sources: list[tuple[str, Source]]) -> str:
    """The key an event's job is made under: the same event delivered again finds it."""
    where = "\n".join(sorted(f"{src.uri}\t{src.version}" for _, src in sources))
    return "s3event:" + hashlib.sha256(f"{owner}\n{where}".encode()).hexdigest()


def submit_event(submitter: Submitter, sources: list[tuple[str, Source]]) -> EventResult:
    """Send the event's objects as the documents of one job, opened accepting and closed when
    all are sent (or a job an earlier delivery of this event left open, taken up and closed)."""
    result = EventResult()
    key = event_key(submitter.owner, sources)
    job_id = submitter.open_keyed_job(key)
    fresh = [(b, src) for b, src in sources if not submitter.seen(src, checkpoint_prefix(b, submitter.owner))]
    result.skipped = len(sources) - len(fresh)
    try:
        for bucket, src in fresh:
            if job_id is None:
                job_id, _ = submitter.open_job(idempotency_key=key)
            checkpoint = checkpoint_prefix(bucket, submitter.owner)
            try:
                job_id, outcome = submitter.add_keyed(job_id, src, key, checkpoint)
            except ObjectNotFoundError:
                result.missing.append(src.uri)  # deleted since the notification was sent
                continue
            if outcome == "skipped":
                result.skipped += 1
            else:
                result.accepted += 1
    finally:
        result.job = submitter.end_keyed_job(job_id)  # also after a failure
    return result
