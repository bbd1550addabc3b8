"""The FastAPI application: `create_app(settings)`; served by `quire api` (uvicorn).

It never imports torch or worker code: work is enqueued by task name (pipeline.queue).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from pipeline.api import routes_documents, routes_jobs, routes_ops
from pipeline.api.deps import ApiContext
from pipeline.config import Settings, get_settings
from pipeline.errors import QuireError, unreachable_server

_LIMITED = ("/v1/jobs",)


def create_app(settings: Settings | None = None, *,
               enqueue: Callable[..., None] | None = None) -> FastAPI:
    """The API for these settings; `enqueue` replaces Celery in unit tests."""
    settings = settings or get_settings()
    if enqueue is None:
        from celery import Celery

        from pipeline.queue import ROUTES, configure

        # The API's own Celery app from *these* settings (not the process-wide default).
        celery = configure(Celery("quire-api"), settings)

        def enqueue(task: str, *args: object) -> None:
            queue = ROUTES[task]["queue"]
            celery.send_task(task, args=list(args), queue=queue, routing_key=queue)

    app = FastAPI(title="Quire job API", version="1", docs_url="/docs", redoc_url=None)
    app.state.ctx = ApiContext(settings=settings, enqueue=enqueue)
    app.include_router(routes_jobs.router)
    app.include_router(routes_documents.router)
    app.include_router(routes_ops.router)

    @app.middleware("http")
    async def limit_and_count(request: Request, call_next: Callable) -> Response:
        # Refuse an oversized upload from its Content-Length before reading any of it.
        length = request.headers.get("content-length")
        if (request.method == "POST" and request.url.path.startswith(_LIMITED) and length
                and length.isdigit() and int(length) > settings.api.max_upload_bytes):
            response: Response = JSONResponse(
                {"detail": f"upload over {settings.api.max_upload_bytes} bytes"}, 413)
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        app.state.ctx.requests[(path, response.status_code)] += 1
        return response

    @app.exception_handler(QuireError)
    async def quire_error(_request: Request, exc: QuireError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)

    async def unreachable(_request: Request, exc: Exception) -> JSONResponse:
        """A database or broker that cannot be reached: 503 with the reason, not a bare 500."""
        return JSONResponse({"detail": unreachable_server(exc)}, status_code=503,
                            headers={"Retry-After": "30"})

    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import OperationalError as DatabaseError

    for kind in (BrokerError, RedisConnectionError, DatabaseError):
        app.add_exception_handler(kind, unreachable)

    return app
