"""`quire submit`: documents sent to the distributed pipeline, streamed, resumed when run again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli_common import Api, Token
from pipeline.cli_common import fail as _fail
from pipeline.cli_common import node_backend as _backend
from pipeline.cli_common import progress_bar as _bar
from pipeline.cli_jobs import follow_job

Model = Annotated[str | None, typer.Option(help="Recognition model name or folder.")]
Beam = Annotated[int | None, typer.Option(min=1, max=16, help="Beam width; 1 is greedy.")]
Dpi = Annotated[int | None, typer.Option(min=50, max=1200, help="PDF rendering resolution.")]
Formats = Annotated[str, typer.Option("--format", "-f", help="Comma-separated export formats: txt, json, hocr, alto, page, pdf (searchable), pdfa (searchable PDF/A-2b, for archiving).")]


def job_options(model: str | None, dpi: int | None, beam: int | None, fmt: str) -> Any:
    """The JobOptions `submit` and `watch` send, from their options and the settings."""
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
    from pipeline.document_checks import DOCUMENT_SUFFIXES, not_regular

    for spec in inputs:
        if spec.startswith("s3://"):
            continue
        if not Path(spec).exists():
            _fail(f"no such file or folder: {spec}")
        kind = not_regular(Path(spec).stat().st_mode)
        if kind is not None:  # hashing a named pipe waits for a writer for ever
            _fail(f"{spec}: is not a regular file ({kind})")
    options = job_options(model, dpi, beam, fmt)
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
        raise typer.Exit(max(follow_job(job_id, api, token, progress), failed))
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


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
