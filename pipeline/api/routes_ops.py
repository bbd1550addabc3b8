"""Operations routes: /healthz, /metrics (Prometheus), and S3/MinIO event notifications."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from pipeline.api.deps import ApiContext, Auth, Caller, Ctx
from pipeline.db import jobs as jobrepo
from pipeline.db.session import session_scope
from pipeline.metrics import api_metrics
from pipeline.queue import queue_depths
from pipeline.render import DOCUMENT_SUFFIXES
from pipeline.storage import ObjectInfo
from pipeline.submit import JobOptions, Submitter, s3_source
from pipeline.watch import checkpoint_prefix

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(ctx: Ctx) -> JSONResponse:
    """200 when the database and the object store answer (no upload works without either);
    the broker's state is reported, not required."""
    checks: dict[str, str] = {}
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure means unhealthy
        checks["database"] = f"error: {e.__class__.__name__}"
    try:
        # A listing (not a HEAD, whose 404 reads as "no such object") fails on a missing
        # bucket or bad credentials.
        next(iter(ctx.store.list("documents/.healthz")), None)
        checks["storage"] = "ok"
    except Exception as e:  # noqa: BLE001
        checks["storage"] = f"error: {str(e)[:200]}"
    depths = queue_depths(ctx.settings.broker_url)
    checks["broker"] = "ok" if min(depths.values()) >= 0 else "unreachable"
    ok = checks["database"] == "ok" and checks["storage"] == "ok"
    return JSONResponse({"status": "ok" if ok else "error", **checks},
                        status_code=200 if ok else 503)


@router.get("/metrics")
def metrics(ctx: Ctx) -> Response:
    with session_scope(ctx.engine) as s:
        jobs, totals = jobrepo.job_summary_counts(s), jobrepo.totals(s)
    body, ctype = api_metrics(jobs, totals, queue_depths(ctx.settings.broker_url),
                              dict(ctx.requests))
    return Response(body, media_type=ctype)


@router.post("/v1/events/s3", status_code=202)
async def s3_events(request: Request, ctx: Ctx,
                    caller: Auth) -> dict[str, Any]:
    """S3/MinIO ObjectCreated notifications: each new object becomes a document of one job.

    Shares the watcher's checkpoints, so a file seen by both (or notified twice) runs once.
    """
    body = await request.json()
    return await run_in_threadpool(_take_events, ctx, caller, body)


def _take_events(ctx: ApiContext, caller: Caller, body: Any) -> dict[str, Any]:
    records = body.get("Records", []) if isinstance(body, dict) else []
    objects = []
    for record in records:
        if not str(record.get("eventName", "")).startswith(("ObjectCreated", "s3:ObjectCreated")):
            continue
        s3 = record.get("s3", {})
        bucket = s3.get("bucket", {}).get("name")
        obj = s3.get("object", {})
        if not bucket or not obj.get("key"):
            continue
        key = unquote_plus(obj["key"])  # event keys are URL-encoded
        if not ctx.may_read(f"s3://{bucket}/{key}"):
            continue  # outside QUIRE_API__URI_PREFIXES, or Quire's own stored files
        if PurePosixPath(key).suffix.lower() not in DOCUMENT_SUFFIXES:
            continue  # notes, spreadsheets: passed over, as the bucket watcher does
        objects.append((bucket, ObjectInfo(key=key, size=int(obj.get("size", 0)),
                                           etag=obj.get("eTag") or obj.get("etag"))))
    if not objects:
        return {"job": None, "accepted": 0, "skipped": 0}
    submitter = Submitter(ctx.engine, ctx.store, JobOptions.from_settings(ctx.settings),
                          owner=caller.owner, enqueue=ctx.enqueue)
    fresh = [(bucket, s3_source(ctx.bucket(bucket), info)) for bucket, info in objects]
    fresh = [(b, src) for b, src in fresh if not submitter.seen(src, checkpoint_prefix(b))]
    skipped = len(objects) - len(fresh)
    if not fresh:  # a repeated notification makes no empty job
        return {"job": None, "accepted": 0, "skipped": skipped}
    # Not 'accepting': a crash half-way must not leave a job that can never finish.
    job_id, _ = submitter.open_job(accepting=False)
    outcomes = [submitter.add(job_id, src, checkpoint=checkpoint_prefix(b)) for b, src in fresh]
    skipped += outcomes.count("skipped")
    return {"job": job_id, "accepted": len(objects) - skipped, "skipped": skipped}
