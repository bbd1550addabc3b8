"""CLI commands of the distributed setup: api, watch, submit, status, token (register(app) adds them)."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli_common import fail as _fail

Api = Annotated[str | None, typer.Option("--api", help="Job API URL; default: this node's database and broker.")]
Token = Annotated[str | None, typer.Option("--token", envvar="QUIRE_TOKEN", help="API bearer token.")]
Model = Annotated[str | None, typer.Option(help="Recognition model name or folder.")]
Beam = Annotated[int | None, typer.Option(min=1, max=16, help="Beam width; 1 is greedy.")]
Dpi = Annotated[int | None, typer.Option(min=50, max=1200, help="PDF rendering resolution.")]
Formats = Annotated[str, typer.Option("--format", "-f", help="Comma-separated export formats: txt, json, hocr, alto, page, pdf (searchable), pdfa (searchable PDF/A-2b, for archiving).")]

token_app = typer.Typer(help="API tokens: create (printed once, stored hashed), list, revoke.")


def _backend(existing: bool = False) -> tuple[Any, Any, Any]:
    """(settings, engine, store) of this node; the embedded SQLite default migrates itself.
    `existing`: a command that only reads or changes what is there; no database is made."""
    from pipeline import storage
    from pipeline.cli_common import open_existing_database
    from pipeline.config import get_settings
    from pipeline.db.session import open_database

    settings = get_settings()
    engine = (open_existing_database if existing else open_database)(settings.resolved_database_url())
    store = storage.open_store(settings.resolved_storage_url(), settings.s3_endpoint_url)
    return settings, engine, store


def _options(model: str | None, dpi: int | None, beam: int | None, fmt: str) -> Any:
    from pipeline.config import get_settings
    from pipeline.exporters import UnknownFormatError, parse_formats
    from pipeline.submit import JobOptions

    try:
        # An unknown format fails here, as the API refuses it, not at finish; stored by the
        # exporters' names (txt is text), as the API stores them.
        formats = [exporter.name for exporter in parse_formats(fmt)]
    except UnknownFormatError as e:
        _fail(f"--format: {e}")
    return JobOptions.from_settings(get_settings(), model=model, dpi=dpi, beam=beam, formats=formats)


def _default_key(specs: list[str], options: Any, owner: str | None = None) -> str:
    """The same command over the same inputs finds its job again: resumable by default."""
    norm = sorted(s if s.startswith("s3://") else str(Path(s).resolve()) for s in specs)
    fields: dict[str, Any] = {"inputs": norm, "options": options.as_dict()}
    if owner:
        fields["owner"] = owner  # (left out otherwise: jobs begun before --owner keep their key)
    spec = json.dumps(fields, sort_keys=True)
    return "cli:" + hashlib.sha256(spec.encode()).hexdigest()[:32]


def _sources(specs: list[str]) -> Iterator[Any]:
    from pipeline.config import get_settings
    from pipeline.submit import iter_sources

    return iter_sources(specs, get_settings().s3_endpoint_url)


def _other_objects(specs: list[str]) -> list[str]:
    """The names of the objects under the s3:// prefixes given that are not documents."""
    from pipeline.config import get_settings
    from pipeline.submit import other_objects

    endpoint = get_settings().s3_endpoint_url
    return [key.rsplit("/", 1)[-1] for spec in specs if spec.startswith("s3://")
            for key in other_objects(spec, endpoint)]


def _count(specs: list[str]) -> int:
    """A counting pass (no list kept) so the bar knows the whole job's size."""
    return sum(1 for _ in _sources(specs))


def _bar(total: int | None, desc: str, unit: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                file=sys.stderr)


def submit(
    inputs: Annotated[list[str], typer.Argument(help="Files, folders, or s3://bucket/prefix.")],
    api: Api = None,
    token: Token = None,
    model: Model = None,
    beam: Beam = None,
    dpi: Dpi = None,
    fmt: Formats = "txt,json",
    job_key: Annotated[str | None, typer.Option(help="Idempotency key; default: derived from the inputs and options, so rerunning resumes.")] = None,
    webhook: Annotated[str | None, typer.Option(help="URL told (signed) when the job finishes.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job to the end with a progress bar.")] = False,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr.")] = True,
    owner: Annotated[str | None, typer.Option(help="Tenant the job belongs to (a token's --owner), so that tenant's API tokens see it; with --api the token decides.")] = None,
) -> None:
    """Submit documents to the distributed pipeline; streams, and resumes when run again."""
    from pipeline.render import DOCUMENT_SUFFIXES, not_regular

    for spec in inputs:
        if spec.startswith("s3://"):
            continue
        if not Path(spec).exists():
            _fail(f"no such file or folder: {spec}")
        kind = not_regular(Path(spec).stat().st_mode)
        if kind is not None:  # hashing a named pipe waits for a writer for ever
            _fail(f"{spec}: is not a regular file ({kind})")
    options = _options(model, dpi, beam, fmt)
    from pipeline.cli import (
        LINKS_NOT_FOLLOWED,
        LINKS_TO_FOLDERS,
        _say_passed_over,
        not_regular_files,
    )
    from pipeline.inputs import passed_over

    others, links, specials = passed_over(Path(s) for s in inputs if not s.startswith("s3://"))
    _say_passed_over(links, LINKS_TO_FOLDERS, LINKS_NOT_FOLLOWED)
    _say_passed_over(specials, why=not_regular_files(specials))
    _say_passed_over(others)  # first: a folder of .docx alone says what it held
    if next(_sources(inputs), None) is None:
        suffixes = ", ".join(sorted(DOCUMENT_SUFFIXES))
        _fail(f"nothing to submit: no documents ({suffixes}) in {', '.join(inputs)}", 1)
    _say_passed_over(_other_objects(inputs), ("object", "objects"))
    key = job_key or _default_key(inputs, options, None if api else owner)
    total = _count(inputs) if progress else None
    refused: list[str] = []
    if api:
        from pipeline.api.client import ApiClient

        client = ApiClient(api, token)
        bar = _bar(total, "submit", "file", progress)
        job_id, refused = client.submit_stream(_sources(inputs), options, key, webhook, bar,
                                               on_missing=lambda uri: _say_missing(bar, uri))
        for reason in refused:
            typer.echo(f"quire: NOT SENT {reason}", err=True)
    else:
        from pipeline.queue import broker_problem

        problem = broker_problem()
        if problem:
            _fail(f"cannot reach the broker (QUIRE_BROKER_URL): {problem}; nothing was submitted", 1)
        job_id = _submit_direct(inputs, options, key, webhook, total, progress, owner)
    typer.echo(job_id)
    failed = 1 if refused else 0
    if wait:
        raise typer.Exit(max(_follow(job_id, api, token, progress), failed))
    raise typer.Exit(failed)


def _say_missing(bar: Any, uri: str) -> None:
    """An object deleted since it was listed: passed over, the others go on; no checkpoint is
    kept for it, so the same command takes it if it comes back."""
    bar.clear()
    typer.echo(f"quire: {uri} is missing (deleted since it was listed); passed over", err=True)


def _submit_direct(inputs: list[str], options: Any, key: str, webhook: str | None,
                   total: int | None, progress: bool, owner: str | None = None) -> str:
    from pipeline.errors import ObjectNotFoundError
    from pipeline.submit import Submitter

    _, engine, store = _backend()
    submitter = Submitter(engine, store, options, owner=owner)
    job_id, created = submitter.open_job(idempotency_key=key, webhook_url=webhook)
    if not created:
        typer.echo(f"resuming job {job_id}", err=True)
    counts: dict[str, int] = {}
    with _bar(total, "submit", "file", progress) as bar:
        try:
            for src in _sources(inputs):
                try:
                    outcome = submitter.add(job_id, src)
                except ObjectNotFoundError:
                    _say_missing(bar, src.uri)
                    outcome = "missing"
                counts[outcome] = counts.get(outcome, 0) + 1
                bar.update(1)
                bar.set_postfix(counts, refresh=False)
        except Exception as e:
            from pipeline.errors import unreachable_server

            message = unreachable_server(e)
            if message is None:
                raise
            bar.close()
            # The job stays open: the same command reopens it (same key) and sends what is missing.
            _fail(f"{message.rstrip('.')}. Job {job_id} keeps what was taken in ({sum(counts.values())} files sent "
                  "on); run the same command again once the broker answers: it goes on from there", 1)
    submitter.close_job(job_id)
    typer.echo(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to submit",
               err=True)
    return job_id


def _job(job_id: str, api: str | None, token: str | None) -> dict[str, Any]:
    if api:
        from pipeline.api.client import ApiClient

        return ApiClient(api, token).job(job_id)
    from pipeline.api.views import job_view
    from pipeline.db import repo, runs
    from pipeline.db.session import session_scope
    from pipeline.run_process import is_gone

    settings, engine, _ = _backend(existing=True)
    with session_scope(engine) as s:
        job = repo.get_job(s, job_id)
        # A `quire run` killed outright could not say so: its job is stopped now, if its process is
        # gone (on this host), or its heartbeat is too old (on another).
        runs.settle_gone_runs(s, is_gone, job.id, silent_after=settings.run.stale_seconds)
        return job_view(s, repo.get_job(s, job.id))


def _follow(job_id: str, api: str | None, token: str | None, progress: bool) -> int:
    """Poll until the job finishes; exit status 1 if any document failed."""
    from pipeline.db.jobs import FINISHED

    told: set[str] = set()
    seen, moved_at, asked_at = None, time.monotonic(), 0.0
    with _bar(100, "job", "%", progress) as bar:
        try:
            while True:
                view = _job(job_id, api, token)
                bar.n = view["percent"]
                bar.set_postfix(status=view["status"], lines=view["lines"]["done"], refresh=True)
                if view["status"] in FINISHED:
                    break
                now = time.monotonic()
                if (view["percent"], view["lines"]) != seen:
                    seen, moved_at = (view["percent"], view["lines"]), now
                elif not api and now - moved_at >= STALL_S and now - asked_at >= STALL_S:
                    asked_at = now  # the job has not moved for a while: say why, once per reason
                    for hint in _stall_hints():
                        if hint not in told:
                            told.add(hint)
                            bar.write(f"quire: job {job_id} has not moved for {now - moved_at:.0f} s: {hint}",
                                      file=sys.stderr)
                time.sleep(1.0)
        except KeyboardInterrupt:
            bar.close()
            # Only the watching stops: the workers go on with the job.
            typer.echo(f"stopped following job {job_id}, which goes on; `quire status {job_id} --wait` "
                       "follows it again", err=True)
            raise typer.Exit(130) from None
    _print_view(view)
    return 0 if view["status"] == "done" else 1


# How long `status --wait` watches a job that does not move before asking the broker why.
STALL_S = 60.0


def _stall_hints() -> list[str]:
    """What keeps the queues from moving (no worker for a queue, tasks held by a killed worker),
    asked of the broker; empty when all is well. Only the direct path can ask: an API client
    sees the API, not the queues."""
    from pipeline.config import get_settings
    from pipeline.queue import QUEUES
    from pipeline.worker_presence import queue_report, stall_hints

    settings = get_settings()
    report = queue_report(settings.broker_url, QUEUES)
    if isinstance(report, str):
        # With no broker set, the job is `quire run`'s (embedded): no queues to explain.
        configured = "broker_url" in settings.model_fields_set
        return [f"cannot tell whether workers are running: {report}"] if configured else []
    return stall_hints(report, settings.queue.visibility_timeout)


def _print_view(view: dict[str, Any]) -> None:
    """One line of counts, how a stopped `quire run` ended, then each failed document with its reason."""
    from pipeline.db.runs import STOP_REASONS, stop_described

    c = view["documents_count"]
    typer.echo(f"job {view['id']}: {view['status']}, {view['percent']}% - {c['done']} done, "
               f"{c['failed']} failed, {c['pending']} pending of {c['total']} documents; "
               f"{view['lines']['done']}/{view['lines']['total']} lines read")
    run = view.get("run")
    if run and view["status"] == "stopped":
        typer.echo(f"  {stop_described(run, run['reached'])}")
    # An API older than session 38 lists every document, not the first failed ones.
    failed = view.get("failed_documents",
                      [doc for doc in view.get("documents", []) if doc["status"] == "failed"])
    for doc in failed:
        # A stopped run's unfinished documents are not failures of the files (api/views.py).
        label = "UNFINISHED" if doc["error"] in STOP_REASONS else "FAILED"
        typer.echo(f"  {label} {doc['name']}: {doc['error']}")
    if view.get("failed_more"):
        typer.echo(f"  ... and {view['failed_more']} more failed or unfinished: `quire status "
                   f"{view['id']} --list failed` (or GET /v1/jobs/{view['id']}/documents?status=failed) "
                   "lists them all")


def status(
    job_id: Annotated[str, typer.Argument(help="Job id printed by `quire submit` or `quire run`.")],
    api: Api = None,
    token: Token = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full JSON view.")] = False,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end with a progress bar; exit status 1 unless every document is done.")] = False,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr (with --wait).")] = True,
    listing: Annotated[str | None, typer.Option("--list", metavar="done|failed|pending|processing|all", help="Instead, list every document of the job in that state, one a line in submission order (a failed one with its reason; with all, each after its state), however many.")] = None,
) -> None:
    """Where a job stands: status, counts, percent done, failed documents with reasons (the first
    100; --list failed names them all); for a job not yet finished, what keeps the queues from
    moving (a queue no running worker takes, tasks taken by a worker that was killed)."""
    from pipeline.db.jobs import FINISHED
    from pipeline.errors import NotFoundError

    if listing is not None:
        _list_documents(job_id, listing, api, token)
        return
    try:
        view = _job(job_id, api, token)
    except NotFoundError:
        _fail(f"no job {job_id}", 1)
    if wait and not as_json:
        raise typer.Exit(_follow(job_id, api, token, progress))
    if as_json:
        typer.echo(json.dumps(view, indent=2))
        return
    _print_view(view)
    if not api and view["status"] not in FINISHED:
        for hint in _stall_hints():
            typer.echo(f"  {hint}")


def _list_documents(job_id: str, listing: str, api: str | None, token: str | None) -> None:
    """`quire status JOB --list STATE`: every such document of the job, streamed a page at a time."""
    from pipeline import job_listing
    from pipeline.errors import NotFoundError

    if listing not in job_listing.LISTS:
        _fail(f"--list must be one of {', '.join(job_listing.LISTS)}, not {listing!r}")
    if api:
        from pipeline.api.client import ApiClient

        documents = job_listing.api_documents(ApiClient(api, token), job_id, listing)
    else:
        documents = job_listing.local_documents(_backend(existing=True)[1], job_id, listing)
    try:
        for doc in documents:
            typer.echo(job_listing.described(doc, listing))
    except NotFoundError:
        _fail(f"no job {job_id}", 1)


def cancel(
    job_id: Annotated[str, typer.Argument(help="Job id printed by `quire submit`.")],
    api: Api = None,
    token: Token = None,
) -> None:
    """Stop a queued or running job. Its documents not yet read are dropped from the queues
    (those another running job also asked for go on for that job); lines read so far are kept,
    and submitting the same files again starts a new job that reads them. A finished job cannot
    be cancelled (exit status 1)."""
    from pipeline.errors import JobFinishedError, NotFoundError

    try:
        if api:
            from pipeline.api.client import ApiClient

            view = ApiClient(api, token).cancel(job_id)
        else:
            view = _cancel_direct(job_id)
    except NotFoundError:
        _fail(f"no job {job_id}", 1)
    except JobFinishedError as exc:
        _fail(str(exc), 1)
    _print_view(view)


def _cancel_direct(job_id: str) -> dict[str, Any]:
    from pipeline.api.views import job_view
    from pipeline.db import jobs as jobrepo
    from pipeline.db.session import session_scope
    from pipeline.errors import unreachable_server
    from pipeline.queue import NOTIFY, send

    _, engine, _ = _backend(existing=True)
    with session_scope(engine) as s:
        job, cancelled_now = jobrepo.cancel_job(s, job_id)
        webhook, view = cancelled_now and jobrepo.webhook_due(job), job_view(s, job)
    if webhook:
        from kombu.exceptions import OperationalError

        try:
            send(NOTIFY, job_id)
        except OperationalError as exc:  # the cancel stands; only its webhook waits for a broker
            typer.echo(f"quire: job {job_id} is cancelled, but its webhook could not be queued: "
                       f"{unreachable_server(exc) or exc}", err=True)
    return view


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
    watcher = Watcher(engine, store, uri, _options(model, dpi, beam, fmt), owner=owner,
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
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("cancel")(cancel)
    app.command("watch")(watch)
    app.command("api")(api)
    app.add_typer(token_app, name="token")
