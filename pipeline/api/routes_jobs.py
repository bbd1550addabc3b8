"""Job routes: submit (multipart upload or s3:// URIs), add documents, close, cancel, list, status."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select
from starlette.datastructures import UploadFile

from pipeline.api import views
from pipeline.api.deps import (
    ApiContext,
    Auth,
    Caller,
    Ctx,
    listed,
    not_found,
    scoped_key,
)
from pipeline.api.schemas import DocumentsAdd, JobCreate, JobOptionsIn
from pipeline.db import job_rows, repo
from pipeline.db.job_status import BadCursor
from pipeline.db.models import DocumentStatus, Job, JobStatus
from pipeline.db.session import session_scope
from pipeline.errors import NotFoundError, ObjectNotFoundError
from pipeline.exporters import get_exporter
from pipeline.queue import NOTIFY
from pipeline.storage import check_key
from pipeline.submit import JobOptions, Source, Submitter, s3_source

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class _Upload:
    """An uploaded file spooled to disk, so the store can upload it in multipart chunks."""

    def __init__(self, name: str, path: Path, size: int, sha256: str) -> None:
        self.name, self.path, self.size, self.sha256 = name, path, size, sha256


async def _parse(request: Request, ctx: ApiContext) -> tuple[dict[str, Any], list[_Upload]]:
    """The body as (options, uploads): multipart form with files, or JSON with s3:// URIs."""
    limit = ctx.settings.api.max_upload_bytes
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1000, max_fields=100)
        fields: dict[str, Any] = {}
        uploads: list[_Upload] = []
        tmpdir = Path(tempfile.mkdtemp(prefix="quire-upload-"))
        request.state.tmpdir = tmpdir
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                target = tmpdir / f"{len(uploads):05d}"
                size, digest = 0, hashlib.sha256()
                with target.open("wb") as out:
                    while chunk := await value.read(1 << 20):
                        size += len(chunk)
                        digest.update(chunk)
                        if size > limit:
                            raise HTTPException(413, f"{value.filename}: over {limit} bytes")
                        out.write(chunk)
                uploads.append(_Upload(upload_name(value.filename), target, size, digest.hexdigest()))
            elif key == "uris":
                fields.setdefault("uris", []).append(value)
            else:
                fields[key] = value
        return fields, uploads
    try:
        body = await request.json() if await request.body() else {}
    except json.JSONDecodeError as e:
        raise HTTPException(400, f"body is not JSON: {e.msg}") from e
    if not isinstance(body, dict):
        raise HTTPException(400, "body must be a JSON object")
    return body, []


def _sources(ctx: ApiContext, uris: list[str], uploads: list[_Upload],
             missing: list[str] | None = None) -> list[Source]:
    """Uploads as sources, and each s3:// URI checked to exist before any job is made. A URI
    whose object does not exist is a 422, or goes to `missing` where that list is given."""
    # Checkpointed by name and content: the same upload sent again is taken in once.
    found = [Source(uri=f"upload:{u.name}", name=u.name, size=u.size,
                    version=u.sha256, path=u.path) for u in uploads]
    for uri in uris:
        if not ctx.may_read(uri):
            raise HTTPException(403, f"{uri}: outside the locations this API accepts "
                                     "(QUIRE_API__URI_PREFIXES)")
        bucket, _, key = uri[5:].partition("/")
        if key.endswith("/"):
            raise HTTPException(422, f"{uri} is a prefix: the API takes one object per URI "
                                     "(s3://bucket/key); `quire submit s3://bucket/prefix/` takes a prefix")
        store = ctx.bucket(bucket)
        try:
            check_key(key)
            info = next((o for o in store.list(key) if o.key == key), None)
        except Exception as e:
            raise HTTPException(422, f"cannot read {uri}: {e}") from e
        if info is None:
            if missing is None:
                raise HTTPException(422, f"no such object: {uri}")
            missing.append(uri)
            continue
        found.append(s3_source(store, info))
    return found


def _options(ctx: ApiContext, opts: JobOptionsIn) -> JobOptions:
    # Unknown formats are a 400 now, not a surprise at finish; `txt` is stored as `text`, so
    # the same request made either way is the same job's options.
    formats = [get_exporter(fmt).name for fmt in opts.formats] if opts.formats else None
    offered = listed(ctx.settings.api.models) or [ctx.settings.model]
    if opts.model is not None and opts.model not in offered:
        raise HTTPException(422, f"model {opts.model!r} is not offered here; models: "
                                 f"{', '.join(offered)} (the operator lists them in QUIRE_API__MODELS)")
    if opts.webhook_url and not ctx.may_notify(opts.webhook_url):
        raise HTTPException(403, f"webhook_url {opts.webhook_url}: outside the addresses this API "
                                 "sends webhooks to (QUIRE_API__WEBHOOK_PREFIXES)")
    return JobOptions.from_settings(ctx.settings, model=opts.model, dpi=opts.dpi,
                                    beam=opts.beam, formats=formats)


def _load(ctx: ApiContext, caller: Caller, job_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as s:
        job = s.get(Job, job_id)
        if job is None or job.owner != caller.owner:
            raise not_found("job")
        return views.job_view(s, job)


def _replay(ctx: ApiContext, caller: Caller, key: str | None, options: JobOptions,
            body: JobCreate, uploads: list[_Upload]) -> bool:
    """Whether this Idempotency-Key already names a job of the caller's (its sources are then
    not read again: the replay answers with the job as it stands). The same key sent with other
    options or other documents is a 422: answering with the first job would drop them unsaid;
    a 409 while the job still takes documents, which the first request may yet send."""
    if key is None:
        return False
    with session_scope(ctx.engine) as s:
        job = s.scalars(select(Job).where(Job.idempotency_key == key)).first()
        if job is None or job.owner != caller.owner:
            return False
        docs = job_rows.job_documents(s, job.id)
        held = {d.sha256 for d in docs} | {d.source_uri for d in docs if d.source_uri}
        same_options, job_id, filling = job.settings == options.as_dict(), job.id, job.accepting
    sent = {u.sha256 for u in uploads} | set(body.uris)
    if same_options and filling and not sent <= held:
        # A retry that came while the first request is still sending its files (a client that
        # timed out on a large upload): not "other documents", it is too early to tell.
        raise HTTPException(409, f"Idempotency-Key {body.idempotency_key!r} names job {job_id}, "
                                 "which is still taking documents (the first request with this key "
                                 "may still be sending them): retry in a moment, or add documents "
                                 f"with POST /v1/jobs/{job_id}/documents")
    if not same_options or not sent <= held:
        raise HTTPException(422, f"Idempotency-Key {body.idempotency_key!r} was used for job {job.id} "
                                 "with other options or documents; send a new key for a new job")
    return True


def _cleanup(request: Request) -> None:
    import shutil

    tmpdir = getattr(request.state, "tmpdir", None)
    if tmpdir is not None:
        shutil.rmtree(tmpdir, ignore_errors=True)


@router.post("", status_code=202)
async def create_job(request: Request, ctx: Ctx,
                     caller: Auth) -> JSONResponse:
    """Submit a job: multipart `files` (+ option fields) or JSON `uris`; 202 with the job id."""
    try:
        fields, uploads = await _parse(request, ctx)
        key = request.headers.get("Idempotency-Key") or fields.get("idempotency_key")
        try:
            body = JobCreate.model_validate({**fields, "idempotency_key": key})
        except ValidationError as e:
            raise HTTPException(422, json.loads(e.json(include_url=False))) from e
        if not body.uris and not uploads and not body.open:
            raise HTTPException(422, "no documents: send files or uris (or open=true)")
        return await run_in_threadpool(_create, ctx, caller, body, uploads)
    finally:
        _cleanup(request)


def upload_name(filename: str | None) -> str:
    """The name an upload is kept by: its path as sent (`quire submit` sends `box1/0001.pdf` for a
    file found in a folder, as the embedded run names it), never climbing out (`..`, a root)."""
    parts = [part for part in PurePosixPath((filename or "").replace("\\", "/")).parts
             if part not in ("/", ".", "..") and not part.endswith(":")]  # nor a drive, C:
    return "/".join(parts) or "upload"


def _create(ctx: ApiContext, caller: Caller, body: JobCreate, uploads: list[_Upload]
            ) -> JSONResponse:
    options = _options(ctx, body)
    submitter = Submitter(ctx.engine, ctx.store, options, owner=caller.owner, enqueue=ctx.enqueue)
    key = scoped_key(caller.owner, body.idempotency_key)
    sources: list[Source] = []
    if not _replay(ctx, caller, key, options, body, uploads):
        # A URI that cannot be read is a 422 before any job exists, so the request leaves nothing.
        sources = _sources(ctx, body.uris, uploads)
    job_id, created = submitter.open_job(idempotency_key=key, webhook_url=body.webhook_url,
                                         accepting=True)
    if created:
        try:
            for src in sources:
                submitter.add(job_id, src)
        except Exception:
            # The store or database failed part-way: the job goes, so a retry with the same
            # Idempotency-Key makes it afresh instead of finding an empty one that never ends.
            submitter.discard_job(job_id)
            raise
    if not body.open:
        submitter.close_job(job_id)
    view = _load(ctx, caller, job_id)
    headers = {"Location": f"/v1/jobs/{job_id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse({"id": job_id, "status": view["status"], "created": created,
                         "documents": view["documents_count"]["total"],
                         "url": f"/v1/jobs/{job_id}"}, status_code=202, headers=headers)


@router.post("/{job_id}/documents", status_code=202)
async def add_documents(job_id: str, request: Request, ctx: Ctx,
                        caller: Auth) -> dict[str, Any]:
    """Add documents to an open job (for streaming large submissions)."""
    try:
        fields, uploads = await _parse(request, ctx)
        try:
            body = DocumentsAdd.model_validate({"uris": fields.get("uris", []), "pass_over_missing":
                                                fields.get("pass_over_missing", False)})
        except ValidationError as e:
            raise HTTPException(422, json.loads(e.json(include_url=False))) from e
        return await run_in_threadpool(_add, ctx, caller, job_id, body.uris, uploads,
                                       body.pass_over_missing)
    finally:
        _cleanup(request)


def _add(ctx: ApiContext, caller: Caller, job_id: str, uris: list[str],
         uploads: list[_Upload], pass_over_missing: bool = False) -> dict[str, Any]:
    with session_scope(ctx.engine) as s:
        job = s.get(Job, job_id)
        if job is None or job.owner != caller.owner:
            raise not_found("job")
        if not job.accepting:
            what = "was cancelled" if job.status == JobStatus.CANCELLED else "is closed"
            raise HTTPException(409, f"job {what}; submit a new job")
        settings = dict(job.settings)
    options = JobOptions.from_dict(settings)
    submitter = Submitter(ctx.engine, ctx.store, options, owner=caller.owner,
                          enqueue=ctx.enqueue)
    if not pass_over_missing:
        return {"id": job_id, "added": [submitter.add(job_id, src) for src in _sources(ctx, uris, uploads)]}
    missing: list[str] = []
    outcomes = []
    for src in _sources(ctx, uris, uploads, missing):
        try:
            outcomes.append(submitter.add(job_id, src))
        except ObjectNotFoundError:  # deleted since it was checked above: no checkpoint is kept
            missing.append(src.uri)
    return {"id": job_id, "added": outcomes, "missing": missing}


@router.post("/{job_id}/close")
def close_job(job_id: str, ctx: Ctx,
              caller: Auth) -> dict[str, Any]:
    _load(ctx, caller, job_id)  # 404 for others' jobs
    from pipeline.db import jobs as jobrepo

    with session_scope(ctx.engine) as s:
        notify = jobrepo.webhook_due(jobrepo.set_accepting(s, job_id, False))
    if notify:  # every document was read before: the job ends here
        ctx.enqueue(NOTIFY, job_id)
    return _load(ctx, caller, job_id)


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, ctx: Ctx, caller: Auth) -> dict[str, Any]:
    """Stop a queued or running job: its waiting documents are not read (those another live job
    also asked for go on for that job); lines read so far are kept. 409 once it has finished;
    cancelling it again answers with the job as it is. Its webhook, if any, is sent."""
    from pipeline.db import jobs as jobrepo

    _load(ctx, caller, job_id)  # 404 for others' jobs
    with session_scope(ctx.engine) as s:
        job, cancelled_now = jobrepo.cancel_job(s, job_id)
        webhook = cancelled_now and jobrepo.webhook_due(job)  # a second cancel queues nothing
    if webhook:
        ctx.enqueue(NOTIFY, job_id)
    return _load(ctx, caller, job_id)


@router.get("")
def list_jobs(ctx: Ctx, caller: Auth,
              limit: int = 50) -> dict[str, Any]:
    with session_scope(ctx.engine) as s:
        jobs = s.scalars(select(Job).where(Job.owner == caller.owner)
                         .order_by(Job.created_at.desc()).limit(max(1, min(limit, 500))))
        return {"jobs": views.job_views(s, list(jobs))}


@router.get("/{job_id}/documents")
def list_documents(job_id: str, ctx: Ctx, caller: Auth, status: DocumentStatus | None = None,
                   limit: int = 100, after: str | None = None) -> dict[str, Any]:
    """A job's documents in submission order, `limit` (at most 1,000) at a time: `next` is the
    URL of the following page (None after the last); `status=failed` lists the failed ones."""
    with session_scope(ctx.engine) as s:
        job = s.get(Job, job_id)
        if job is None or job.owner != caller.owner:
            raise not_found("job")
        try:
            return views.documents_list(s, job_id, status=status.value if status else None,
                                        after=after, limit=max(1, min(limit, 1000)))
        except BadCursor as e:
            raise HTTPException(422, str(e)) from e


@router.get("/{job_id}")
def get_job(job_id: str, ctx: Ctx,
            caller: Auth) -> dict[str, Any]:
    """Status, counts, percent done, and each document with its error if it failed."""
    try:
        return _load(ctx, caller, job_id)
    except NotFoundError as e:
        raise not_found("job") from e


__all__ = ["repo", "router"]
