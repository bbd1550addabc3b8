"""What routes share: the API context (settings, engine, stores, enqueue) and bearer-token auth."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from pipeline import storage
from pipeline.config import Settings
from pipeline.db import jobs as jobrepo
from pipeline.db.session import open_database, session_scope


@dataclass
class ApiContext:
    """Built once per app; the engine and stores are made lazily (no connection at import)."""

    settings: Settings
    enqueue: Callable[..., None]
    engine_: Engine | None = None
    store_: storage.ObjectStore | None = None
    buckets: dict[str, storage.S3Store] = field(default_factory=dict)
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)

    @property
    def engine(self) -> Engine:
        if self.engine_ is None:
            self.engine_ = open_database(self.settings.resolved_database_url())  # SQLite: migrated
        return self.engine_

    @property
    def store(self) -> storage.ObjectStore:
        if self.store_ is None:
            self.store_ = storage.open_store(self.settings.resolved_storage_url(),
                                             self.settings.s3_endpoint_url)
        return self.store_

    def may_read(self, uri: str) -> bool:
        """Whether a tenant may submit this s3:// URI (QUIRE_API__URI_PREFIXES). Quire's own
        stored sources and pages are never submittable: they are other tenants' files."""
        own = self.settings.resolved_storage_url().rstrip("/") + "/documents/"
        return not uri.startswith(own) and _within(uri, self.settings.api.uri_prefixes)

    def may_notify(self, url: str) -> bool:
        """Whether a tenant's webhook_url is allowed (QUIRE_API__WEBHOOK_PREFIXES)."""
        return _within(url, self.settings.api.webhook_prefixes)

    def bucket(self, name: str) -> storage.S3Store:
        """A client for a bucket named in an s3:// URI or an S3 event."""
        if name not in self.buckets:
            self.buckets[name] = storage.S3Store(name, endpoint_url=self.settings.s3_endpoint_url)
        return self.buckets[name]


def listed(setting: str) -> list[str]:
    """The items of a comma-separated setting (QUIRE_API__MODELS, ..._PREFIXES)."""
    return [item.strip() for item in setting.split(",") if item.strip()]


def _within(value: str, prefixes: str) -> bool:
    """Whether `value` starts with one of a setting's comma-separated prefixes; an empty
    setting allows everything."""
    allowed = listed(prefixes)
    return any(value.startswith(p) for p in allowed) if allowed else True


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's id and the tenant (owner) whose jobs it may see."""

    token_id: str
    owner: str


def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False)


Ctx = Annotated[ApiContext, Depends(get_ctx)]


def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)], ctx: Ctx,
) -> Caller:
    """401 without a valid, unrevoked token; tokens are compared by their SHA-256 only."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    with session_scope(ctx.engine) as s:
        row = jobrepo.verify_token(s, credentials.credentials)
        caller = Caller(row.id, row.owner) if row is not None else None
    if caller is None:
        raise HTTPException(401, "invalid or revoked token",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return caller


Auth = Annotated[Caller, Depends(require_token)]


def not_found(what: str) -> HTTPException:
    # The same answer whether the thing is missing or another tenant's: no existence leaks.
    return HTTPException(404, f"no such {what}")


def scoped_key(owner: str, key: str | None) -> str | None:
    """Idempotency keys are per tenant: two tenants using "batch-1" get two jobs."""
    import hashlib

    return None if not key else "api:" + hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()


def options_dict(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "")}
