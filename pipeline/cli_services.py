"""`quire watch`, `quire api` and `quire token`: the distributed setup's services, and the API's tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli_common import fail as _fail
from pipeline.cli_common import node_backend as _backend
from pipeline.cli_submit import Beam, Dpi, Formats, Model, job_options

token_app = typer.Typer(help="API tokens: create (printed once, stored hashed), list, revoke.")


def watch(
    uri: Annotated[str, typer.Argument(help="s3://bucket/prefix/ to watch for new files.")],
    once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False,
    interval: Annotated[float, typer.Option(min=1, help="Seconds between passes.")] = 30.0,
    owner: Annotated[str, typer.Option(help="Tenant the watcher's jobs belong to.")] = "watcher",
    model: Model = None,
    beam: Beam = None,
    dpi: Dpi = None,
    fmt: Formats = "txt,json",
) -> None:
    """Submit files dropped under an S3 prefix; a checkpoint in SQL makes restarts safe."""
    from pipeline.watch import Watcher

    settings, engine, store = _backend()
    watcher = Watcher(engine, store, uri, job_options(model, dpi, beam, fmt), owner=owner,
                      endpoint_url=settings.s3_endpoint_url)
    if once:
        result = watcher.scan()
        typer.echo(f"{result.submitted} submitted, {result.skipped} already seen, "
                   f"{result.resent} re-sent" + (f"; job {result.job_id}" if result.job_id else ""))
        return
    typer.echo(f"watching {uri} every {interval:.0f} s", err=True)
    watcher.run(interval)


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the job API (FastAPI on uvicorn)."""
    import uvicorn

    uvicorn.run("pipeline.api.app:create_app", factory=True, host=host, port=port,
                workers=workers, proxy_headers=True, log_level="info")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for.")],
    owner: Annotated[str | None, typer.Option(help="Tenant; default: the name.")] = None,
) -> None:
    """Make a token and print it once; only its SHA-256 is stored."""
    from pipeline.db import jobs as jobrepo
    from pipeline.db.session import session_scope

    if not name.strip() or (owner is not None and not owner.strip()):
        _fail("a token needs a --name (and an --owner, if given) that is not empty: it names the tenant")

    _, engine, _ = _backend()
    with session_scope(engine) as s:
        plain, row = jobrepo.create_token(s, name=name, owner=owner)
        typer.echo(f"token id {row.id} (owner {row.owner}); keep it, it is not shown again:",
                   err=True)
    typer.echo(plain)


@token_app.command("list")
def token_list() -> None:
    """Every token: id, name, owner (tenant), created, and whether it is active or revoked."""
    from pipeline.db import jobs as jobrepo
    from pipeline.db.session import session_scope

    _, engine, _ = _backend(existing=True)
    with session_scope(engine) as s:
        for row in jobrepo.list_tokens(s):
            state = "revoked" if row.revoked_at else "active"
            typer.echo(f"{row.id}\t{row.name}\t{row.owner}\t{state}\t{row.created_at:%Y-%m-%d}")


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="Token id from `token list`.")]) -> None:
    """Revoke a token: requests with it get 401 from then on (its tenant's jobs stay)."""
    from pipeline.db import jobs as jobrepo
    from pipeline.db.session import session_scope

    _, engine, _ = _backend(existing=True)
    with session_scope(engine) as s:
        if not jobrepo.revoke_token(s, token_id):
            _fail(f"no token {token_id}", 1)
    typer.echo(f"revoked {token_id}")


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)
    app.command("api")(api)
    app.add_typer(token_app, name="token")
