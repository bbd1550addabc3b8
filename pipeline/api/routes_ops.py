"""Operations routes: /healthz, /metrics (Prometheus), and S3/MinIO event notifications."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from pipeline.api.deps import ApiContext, Auth, Caller, Ctx
from pipeline.db import jobs as jobrepo
from pipeline.db.session import session_scope
from pipeline.metrics import api_metrics
from pipeline.queue import queue_depths
from pipeline.s3_events import created_objects, submit_event
from pipeline.submit import JobOptions, Submitter, s3_source

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
    """S3/MinIO ObjectCreated notifications: each event's new objects become the documents of
    one job, which runs until all are sent (see pipeline.s3_events).

    Shares the watcher's checkpoints, so a file seen by both (or notified twice) runs once.
    """
    try:
        body = await request.json()
    except ValueError as e:
        raise HTTPException(400, f"body is not JSON: {e}") from e
    return await run_in_threadpool(_take_events, ctx, caller, body)


def _take_events(ctx: ApiContext, caller: Caller, body: Any) -> dict[str, Any]:
    objects = [(bucket, info) for bucket, info in created_objects(body)
               if ctx.may_read(f"s3://{bucket}/{info.key}")]  # QUIRE_API__URI_PREFIXES; never documents/
    if not objects:
        return {"job": None, "accepted": 0, "skipped": 0}
    submitter = Submitter(ctx.engine, ctx.store, JobOptions.from_settings(ctx.settings),
                          owner=caller.owner, enqueue=ctx.enqueue)
    sources = [(bucket, s3_source(ctx.bucket(bucket), info)) for bucket, info in objects]
    return submit_event(submitter, sources).as_dict()
