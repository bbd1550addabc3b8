"""Document routes: rows with text and boxes, plain text, exports, the viewer, and search."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from pipeline.api.deps import ApiContext, Auth, Caller, Ctx, not_found
from pipeline.api.views import document_view
from pipeline.db import job_rows, repo
from pipeline.db import jobs as jobrepo
from pipeline.db.models import Document
from pipeline.db.session import session_scope
from pipeline.errors import NotFoundError
from pipeline.exporters import file_name, get_exporter
from pipeline.types import DocumentResult

router = APIRouter(tags=["documents"])


def _visible(s: Any, caller: Caller, document_id: str) -> Document:
    doc = s.get(Document, document_id)
    if doc is None or not jobrepo.owner_can_see_document(s, caller.owner, document_id):
        raise not_found("document")
    return doc


def _result(ctx: ApiContext, caller: Caller, document_id: str) -> DocumentResult:
    with session_scope(ctx.engine) as s:
        _visible(s, caller, document_id)
        result = repo.load_document_result(s, document_id)
        return replace(result, name=_name_for(s, caller, document_id) or result.name)


def _name_for(s: Any, caller: Caller, document_id: str) -> str | None:
    """The name the caller sent the document by: a file another tenant also sent keeps, for
    each, its own name (documents are shared by content)."""
    return job_rows.owner_document_name(s, document_id, caller.owner)


@router.get("/v1/documents/{document_id}")
def get_document(document_id: str, ctx: Ctx,
                 caller: Auth) -> dict[str, Any]:
    """Pages and lines with text, boxes and confidence."""
    with session_scope(ctx.engine) as s:
        doc = _visible(s, caller, document_id)
        name = _name_for(s, caller, document_id)
        view = document_view(s, doc, name)
        if name is not None and name != doc.name:
            view["source_uri"] = None  # where another tenant's copy came from is theirs
        return view


@router.delete("/v1/documents/{document_id}")
def delete_document(document_id: str, ctx: Ctx, caller: Auth) -> dict[str, Any]:
    """Delete the document for the caller's tenant: its links to the tenant's jobs go. Documents
    are shared by content, so the document itself (rows, text, stored objects) goes only when no
    other job, of any tenant, links it: "outcome" says "deleted" or "unlinked". 409 while it is
    being read (processing, or in a queued or running job of the caller's)."""
    from pipeline.deletion import delete_document as remove
    from pipeline.deletion import finish_pending

    try:
        done = remove(ctx.engine, ctx.store, document_id, tenant=caller.owner,
                      silent_after=ctx.settings.run.stale_seconds)
    except NotFoundError:
        raise not_found("document") from None
    finish_pending(ctx.engine, ctx.store)  # any a killed delete or run left
    return {**done.as_dict(), "detail": (
        "deleted: its rows, text and stored files are gone" if done.outright else
        "removed from your jobs; other jobs still use the same file, so it is kept for them")}


@router.get("/v1/documents/{document_id}/text")
def get_text(document_id: str, ctx: Ctx,
             caller: Auth) -> Response:
    exporter = get_exporter("text")
    data = _render(exporter, _result(ctx, caller, document_id), ctx)
    return Response(data, media_type=exporter.media_type)


def _render(exporter: Any, result: DocumentResult, ctx: ApiContext) -> bytes:
    """Exports come from the rows; image-based ones read the stored page images."""
    export = getattr(exporter, "export", None)
    if export is not None:
        return bytes(export(result, ctx.store.get_bytes))
    return bytes(exporter.render(result))


@router.get("/v1/documents/{document_id}/export")
def get_export(document_id: str, ctx: Ctx, caller: Auth,
               format: str = Query("json")) -> Response:
    """Any registered format: text, json, hocr, alto, page, pdf, pdfa (400 lists the valid ones)."""
    exporter = get_exporter(format)
    result = _result(ctx, caller, document_id)
    media = getattr(exporter, "media_type_for", None)
    ext = getattr(exporter, "extension_for", None)
    media_type = media(result) if media else exporter.media_type
    extension = ext(result) if ext else exporter.extension
    return Response(_render(exporter, result, ctx), media_type=media_type, headers={
        "Content-Disposition": _inline_file(file_name(result, extension))})


def _inline_file(name: str) -> str:
    """A Content-Disposition for `name`: headers are Latin-1, so an ASCII stand-in goes in
    filename= and the real name, any script, in RFC 6266's filename*."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"inline; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get("/v1/documents/{document_id}/viewer")
def get_viewer(document_id: str, ctx: Ctx, caller: Auth) -> HTMLResponse:
    try:
        from pipeline.viewer import render_viewer
    except ImportError as e:
        raise HTTPException(501, "the viewer is not installed in this build") from e
    result = _result(ctx, caller, document_id)
    return HTMLResponse(render_viewer(result, ctx.store.get_bytes))


@router.get("/v1/search")
def search(ctx: Ctx, caller: Auth, q: str = Query(..., min_length=1, max_length=500),
           limit: int = Query(20, ge=1, le=200),
           superseded: bool = Query(False)) -> dict[str, Any]:
    """Full-text search over the caller's own documents, each by the name the caller sent it by.
    Only the current reading of each name: superseded=true adds those of files the caller
    replaced since under the same name, flagged "superseded"."""
    try:
        from pipeline.search import search_lines
    except ImportError as e:
        raise HTTPException(501, "search is not installed in this build") from e
    with session_scope(ctx.engine) as s:
        hits = search_lines(s, q, limit=limit, owner=caller.owner, superseded=superseded)
        return {"query": q, "hits": [_hit(h) for h in hits]}


def _hit(hit: Any) -> dict[str, Any]:
    """A hit as JSON: matches marked with <mark>, not the search's internal control characters."""
    return hit if isinstance(hit, dict) else hit.to_dict()
