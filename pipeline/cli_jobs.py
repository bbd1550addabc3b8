"""`quire status` and `quire cancel`: where a job stands, followed to its end, or stopped."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from pipeline.cli_common import Api, Token
from pipeline.cli_common import fail as _fail
from pipeline.cli_common import node_backend as _backend
from pipeline.cli_common import progress_bar as _bar

# A job is named by its id's first characters too (`quire status 32ebb9c9`), as git names commits.
SHORT_ID = 8


def _whole_id(job_id: str, api: str | None) -> str:
    """The id of the one job on this node whose id starts with `job_id` (SHORT_ID characters or
    more); several such jobs end the command with one line listing them. An id no job starts
    with (or one through --api, which takes whole ids) is left as given: its look-up says so."""
    if api or len(job_id) < SHORT_ID:
        return job_id
    from pipeline.db import job_rows
    from pipeline.db.session import session_scope

    _, engine, _ = _backend(existing=True)
    with session_scope(engine) as s:
        found = job_rows.job_ids_starting(s, job_id, limit=6)
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        _fail(f"several jobs' ids start with {job_id}: {shown}; give more of the one you mean")
    return found[0] if found else job_id


def _job(job_id: str, api: str | None, token: str | None) -> dict[str, Any]:
    if api:
        from pipeline.api.client import ApiClient

        return ApiClient(api, token).job(job_id)
    from pipeline.api.views import job_view
    from pipeline.db import job_rows, runs
    from pipeline.db.session import session_scope
    from pipeline.run_process import is_gone

    settings, engine, _ = _backend(existing=True)
    with session_scope(engine) as s:
        job = job_rows.get_job(s, job_id)
        # A `quire run` killed outright could not say so: its job is stopped now, if its process is
        # gone (on this host), or its heartbeat is too old (on another).
        runs.settle_gone_runs(s, is_gone, job.id, silent_after=settings.run.stale_seconds)
        return job_view(s, job_rows.get_job(s, job.id))


def follow_job(job_id: str, api: str | None, token: str | None, progress: bool) -> int:
    """Poll until the job finishes; exit status 1 if any document failed."""
    from pipeline.db.jobs import FINISHED

    told: set[str] = set()
    seen, moved_at, asked_at = None, time.monotonic(), 0.0
    with _bar(100, "job", "%", progress) as bar:
        try:
            while True:
                view = _job(job_id, api, token)
                bar.n = view["percent"]
                bar.set_postfix(status=view["status"], lines=f'{view["lines"]["done"]:,}', refresh=True)
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
    job_id: Annotated[str, typer.Argument(help="Job id printed by `quire submit` or `quire run`, or its first 8 or more characters (this node's jobs).")],
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

    job_id = _whole_id(job_id, api)
    if listing is not None:
        _list_documents(job_id, listing, api, token)
        return
    try:
        view = _job(job_id, api, token)
    except NotFoundError:
        _fail(f"no job {job_id}", 1)
    if wait and not as_json:
        raise typer.Exit(follow_job(job_id, api, token, progress))
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
    job_id: Annotated[str, typer.Argument(help="Job id printed by `quire submit`, or its first 8 or more characters (this node's jobs).")],
    api: Api = None,
    token: Token = None,
) -> None:
    """Stop a queued or running job. Its documents not yet read are dropped from the queues
    (those another running job also asked for go on for that job); lines read so far are kept,
    and submitting the same files again starts a new job that reads them. A finished job cannot
    be cancelled (exit status 1)."""
    from pipeline.errors import JobFinishedError, NotFoundError

    job_id = _whole_id(job_id, api)
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


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("cancel")(cancel)
