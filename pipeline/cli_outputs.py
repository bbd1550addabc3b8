"""`quire export`, `quire search` and `quire view`: outputs of documents already processed,
read from the database and the object store (nothing is recognized again)."""

from __future__ import annotations

import json
import sys
from datetime import UTC
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from pipeline.cli_common import fail as _fail
from pipeline.cli_common import names_a_folder, write_output

# The most hits search_lines gives (pipeline/db/search.py caps its limit there).
MAX_HITS = 500
FORMAT_HELP = "txt, json, hocr, alto, page, pdf (searchable) or pdfa (searchable PDF/A-2b, for archiving)."


def _open():
    """(settings, engine, store) of the configured database, which must exist, and object store."""
    from pipeline import storage
    from pipeline.cli_common import open_existing_database
    from pipeline.config import load_settings

    settings = load_settings()
    engine = open_existing_database(settings.resolved_database_url())
    return settings, engine, storage.open_store(settings.resolved_storage_url(),
                                                settings.s3_endpoint_url)


PROCESS_FIRST = "; process it first (`quire run`, or `quire submit` and its workers)"


def matching_documents(s, ref: str, hint: str = PROCESS_FIRST):
    """The documents `ref` names, in any state: its id, a source file (by SHA-256) or its name;
    the one sent last first. NotFoundError, saying what was tried and then `hint`, when none does."""
    from sqlalchemy import func, select

    from pipeline.db.models import Document, Job, JobDocument
    from pipeline.errors import NotFoundError
    from pipeline.process import file_sha256

    doc = s.get(Document, ref)
    if doc is not None:
        return [doc]
    path = Path(ref)
    if path.is_file():
        where, what = Document.sha256 == file_sha256(path), f"file {ref}"
    else:
        # The name of any run or job that sent it: the same bytes sent as another file
        # are one document under several names. A file found in a folder is named by its
        # path there (box1/0001.pdf); its file name alone finds it too.
        named = select(JobDocument.document_id).where(
            (JobDocument.name == ref) | JobDocument.name.endswith("/" + ref, autoescape=True))
        where, what = (Document.name == ref) | Document.id.in_(named), f"id or name {ref!r}"
    sent_last = (select(func.max(Job.created_at)).join(JobDocument, JobDocument.job_id == Job.id)
                 .where(JobDocument.document_id == Document.id).correlate(Document).scalar_subquery())
    # Not a --redo's reading in progress: its document keeps the reading it had till then.
    candidates = list(s.scalars(select(Document).where(where, Document.redo_of.is_(None)).order_by(
        sent_last.desc().nulls_last(), Document.updated_at.desc())))
    if not candidates:
        where_db = s.get_bind().url.render_as_string(hide_password=True)
        raise NotFoundError(f"no document with {what} in {where_db} (QUIRE_HOME or "
                            f"QUIRE_DATABASE_URL){hint}")
    return candidates


def find_document(s, ref: str):
    """The done document that `ref` names (`matching_documents`): the one sent last when several
    match (a file replaced under its name is the new one). Errors say what was tried."""
    from pipeline.db.models import DocumentStatus
    from pipeline.errors import QuireError

    candidates = matching_documents(s, ref)
    done = [d for d in candidates if d.status == DocumentStatus.DONE]
    doc = done[0] if done else candidates[0]
    if len(done) > 1:
        # Other files by that name, or the same file read under other settings (model,
        # dpi, page turning...): each is its own reading.
        which = (f"{len(done)} different files are named {ref!r}" if len({d.sha256 for d in done}) > 1
                 else f"{ref!r} was read {len(done)} times with different settings")
        others = ", ".join(f"{d.id} ({d.name})" for d in done[1:4]) + (", ..." if len(done) > 4 else "")
        typer.echo(f"quire: {which}; using {doc.id} ({doc.name}, the one sent last); "
                   f"pass an id to choose another: {others}", err=True)
    if doc.status != DocumentStatus.DONE:
        error = f": {doc.error}" if doc.error else ""
        # "failed: file is empty", not "is failed"; pending or processing: not read yet.
        state = "failed" if doc.status == DocumentStatus.FAILED else f"is {doc.status}, not read yet"
        raise QuireError(f"document {doc.name} ({doc.id}) {state}{error}")
    return doc


def asked_name(s, doc, ref: str) -> str:
    """The name among those jobs sent `doc` by that `ref` asks for (a copy's own, not the
    first file's): the one sharing the longest path ending with `ref` (`sub2/same.pdf` is
    D/sub2/same.pdf, not D/sub1/same.pdf), the one sent last among equals; else the name it
    was first sent by."""
    from sqlalchemy import select

    from pipeline.db.models import Job, JobDocument

    path = Path(ref)
    # A source file: its real folders (a link to a file keeps its own name, as runs name it).
    parts = (path.parent.resolve() / path.name).parts if path.is_file() else PurePosixPath(ref).parts
    names = s.scalars(select(JobDocument.name).join(Job).where(JobDocument.document_id == doc.id)
                      .order_by(Job.created_at.desc(), JobDocument.position))
    best, shared = doc.name, (0, False)
    for name in names:
        n = (_shared_ending(PurePosixPath(name).parts, parts), name == ref)
        if n[0] and n > shared:
            best, shared = name, n
    return best


def _shared_ending(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many path parts two paths end with in common."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def load_asked(s, ref: str):
    """The done document `ref` names, as exporters take it, under the name it was asked by."""
    from dataclasses import replace

    from pipeline.db import repo

    doc = find_document(s, ref)
    return replace(repo.load_document_result(s, doc.id), name=asked_name(s, doc, ref))


def export(
    document: Annotated[str, typer.Argument(help="Document id, source file, or name.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP)] = "txt",
    out: Annotated[str | None, typer.Option("--out", "-o", help="Write here: a file, or a folder (an existing one, or ending in /) to write <name>.<ext> in, named as `quire run --out` names it (sub1/same.txt for D/sub1/same.pdf) (default: stdout; PDF and ZIP to <file name>.<ext> when stdout is a terminal).")] = None,
) -> None:
    """Export a processed document from its stored rows and page images."""
    from pipeline.db.session import session_scope
    from pipeline.errors import QuireError
    from pipeline.exporters import file_name, mirrored_name, parse_formats

    try:
        exporters = parse_formats(fmt)
        if len(exporters) != 1:
            _fail("export writes one format at a time; give one --format")
        [exporter] = exporters
        _, engine, store = _open()
        with session_scope(engine) as s:
            result = load_asked(s, document)
        data = exporter.export(result, store.get_bytes)
    except QuireError as exc:
        _fail(str(exc), exc.exit_code)
    extension = exporter.extension_for(result)
    binary = not exporter.media_type_for(result).startswith(("text/", "application/json",
                                                              "application/xml"))
    name = file_name(result, extension)
    if out is None and binary and sys.stdout.isatty():  # piped or redirected: bytes to stdout
        out = name
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    # A folder takes the file where `quire run --out` puts it (sub1/same.txt apart from
    # sub2/same.txt), as `quire view --out DIR/` does.
    target = Path(out) / f"{mirrored_name(result.name)}.{extension}" if names_a_folder(out) else Path(out)
    write_output(target, data)
    typer.echo(f"wrote {target} ({len(data):,} bytes, {exporter.name})", err=True)


def search(
    words: Annotated[str, typer.Argument(help='Words to find (all must appear); "a phrase", prefix*.')],
    limit: Annotated[int, typer.Option(min=1, max=MAX_HITS, help=f"At most this many lines (up to {MAX_HITS}).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of hits.")] = False,
    superseded: Annotated[bool, typer.Option("--superseded", help="Also search the old readings of files since replaced under their name (a rescan), each marked superseded with its document id and when it was read.")] = False,
) -> None:
    """Full-text search over the recognized lines of every processed document.

    Prints one hit a line: file, page, line, box (x0,y0,x1,y1 in page pixels) and the text with
    the matches in [brackets]. Words a line break cuts (a phrase running on to the next line, a
    word hyphenated at the line end) are found too, as one hit "line 14-15" with both lines'
    text ("... [Then he] / [says], ..."); --json gives the next line as "runs_on".
    Where a file was read more than once with different results
    (another model, pages turned or not), its name carries each reading's document id, which
    `quire export ID` takes.

    Only what each file holds now is searched: a file replaced by other bytes under the same name
    (a rescan, run again) is searched as its new reading. --superseded adds the old readings,
    named "NAME (superseded: ID, read DATE)"."""
    from pipeline.db.search import search_lines
    from pipeline.db.session import session_scope
    from pipeline.errors import QuireError

    try:
        _, engine, _ = _open()
        with session_scope(engine) as s:
            # One hit more than shown, to tell whether the limit left any out.
            hits = search_lines(s, words, limit=min(limit + 1, MAX_HITS), superseded=superseded)
            more, hits = len(hits) > limit or len(hits) == MAX_HITS, hits[:limit]
            old = [] if hits or superseded else search_lines(s, words, limit=1, superseded=True)
    except QuireError as exc:
        _fail(str(exc), exc.exit_code)
    if more:  # on stderr, so --json's output stays one array
        first = "the first hit" if limit == 1 else f"the first {limit} hits"
        typer.echo(f"quire: {first} shown; --limit N shows more (at most {MAX_HITS})" if limit < MAX_HITS
                   else f"quire: {first} shown, the most search gives (there may be more); more words "
                   "narrow it", err=True)
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        hint = "; superseded readings of replaced files do (--superseded shows them)" if old else ""
        typer.echo(f"no lines match {words!r}{hint}", err=True)
        raise typer.Exit(1)
    for row in hit_rows(hits):
        typer.echo(row)


def hit_rows(hits) -> list[str]:
    """One tab-separated row per hit: name, page, line, box, the line with its matches marked.
    A file read under several settings (another model, pages turned or not) is one document per
    reading; where hits come from more than one, each name carries its reading's document id.
    A superseded reading (the file was replaced since) always says so, with its id and date."""
    readings: dict[str, set[str]] = {}
    for hit in hits:
        if not hit.superseded:
            readings.setdefault(hit.document_name, set()).add(hit.document_id)
    rows = []
    for hit in hits:
        name = hit.document_name
        if hit.superseded:
            when = f", read {hit.read_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if hit.read_at else ""
            name += f" (superseded: {hit.document_id}{when})"
        elif len(readings[name]) > 1:
            name += f" ({hit.document_id})"
        box = ",".join(map(str, hit.bbox.as_list()))
        line, shown = f"line {hit.line}", hit.highlighted()
        if hit.runs_on:  # words a line break cuts: both lines, the box the first one's
            line, shown = f"{line}-{hit.runs_on.line}", f"{shown} / {hit.runs_on.highlighted()}"
        rows.append(f"{name}\tpage {hit.page}\t{line}\t[{box}]\t{shown}")
    return rows


def view(
    document: Annotated[str, typer.Argument(help="Document id, source file, or name.")],
    out: Annotated[str | None, typer.Option("--out", "-o", help="Where to write the HTML: a file, or a folder (an existing one, or ending in /) to write <name>.html in, named as `quire run --out` names outputs (sub1/same.html for D/sub1/same.pdf) (default: under QUIRE_HOME/viewer/<document id>/).")] = None,
    port: Annotated[int, typer.Option(help="Serve on 127.0.0.1:PORT (0: any free port).")] = 0,
    serve: Annotated[bool, typer.Option(help="Serve the page locally until Ctrl-C.")] = True,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open it in the default browser.")] = True,
) -> None:
    """Show a processed document's pages with their line boxes and text in a browser."""
    import webbrowser

    from pipeline.db.session import session_scope
    from pipeline.errors import QuireError
    from pipeline.exporters import mirrored_name
    from pipeline.viewer import make_server, render_viewer

    try:
        settings, engine, store = _open()
        with session_scope(engine) as s:
            result = load_asked(s, document)
        html = render_viewer(result, store.get_bytes)
    except QuireError as exc:
        _fail(str(exc), exc.exit_code)
    # Named as `quire run --out` names outputs, so copies of a file in two folders (one document)
    # get two pages; under the document id by default, so two readings of one name do too.
    page = f"{mirrored_name(result.name)}.html"
    target = settings.home / "viewer" / result.id / page
    if out:
        target = Path(out) / page if names_a_folder(out) else Path(out)
    write_output(target, html)
    if not serve:
        typer.echo(target.resolve().as_uri())
        if open_browser:
            webbrowser.open(target.resolve().as_uri())
        return
    try:
        server = make_server(html, port)
    except OSError as exc:  # the port taken (another viewer), or not ours to bind (< 1024)
        _fail(f"cannot serve the viewer on 127.0.0.1:{port} ({exc.strerror or exc}); give another "
              f"--port, or leave it out for any free one (the page is written to {target})")
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    typer.echo(f"viewer for {result.name} at {url} (also written to {target}); Ctrl-C stops")
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("search")(search)
    app.command("view")(view)
