"""`quire delete`: an operator removes documents and everything Quire stored for them
(pipeline.deletion does the work; this module finds the documents, asks, and reports)."""

from __future__ import annotations

import shutil
import sys
from typing import Annotated

import typer

from pipeline.cli_common import counted
from pipeline.cli_common import fail as _fail


def delete(
    documents: Annotated[list[str], typer.Argument(help="Document ids, source files or names, as `quire export` takes them. A name or file that several documents match (read with other settings, or other files by that name) deletes none of them: the ids are listed to choose from.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking. Needed when not on a terminal.")] = False,
) -> None:
    """Delete documents and everything Quire stored for them.

    Deleted: the document's rows (pages and lines with their text, so `quire search`, `export`
    and `view` no longer find it; its links to jobs, which stay and no longer count it), and in
    the object store its source file, page images, line crops and exports
    (documents/<sha256>/...), and the viewer page `quire view` wrote under QUIRE_HOME/viewer/.
    The source is kept while another reading of the same bytes (another model or settings) is
    left; delete that one too to remove it.

    Not deleted: your own files, i.e. the scans given to `quire run` and what `--out` and
    `export --out` wrote; an object the watcher took from an inbox (delete it there: unchanged,
    it is not read again). Documents shared with API tenants are deleted for them too.

    A document being read now (processing, or in a queued or running job) is refused; the others
    are deleted. Asks for confirmation on a terminal. Exit status 1 if a DOC was not found, is
    ambiguous or was refused."""
    from pipeline.cli_outputs import _open, matching_documents
    from pipeline.db.session import session_scope
    from pipeline.deletion import delete_document, finish_pending
    from pipeline.errors import NotFoundError, QuireError

    problems = 0
    chosen: dict[str, str] = {}  # id -> name, each once however many DOCs name it
    try:
        settings, engine, store = _open()
        finish_pending(engine, store)  # what a delete or --redo killed midway left
        with session_scope(engine) as s:
            for ref in documents:
                try:
                    # Not "process it first": there is nothing of it to delete.
                    docs = matching_documents(s, ref, hint="; nothing deleted for it")
                except NotFoundError as exc:
                    typer.echo(f"quire: {exc}", err=True)
                    problems += 1
                    continue
                if len(docs) > 1:
                    listed = ", ".join(f"{d.id} ({d.name}, {d.status})" for d in docs)
                    typer.echo(f"quire: {ref!r} names {len(docs)} documents, none deleted: {listed}; "
                               "give the ids of those to delete", err=True)
                    problems += 1
                    continue
                chosen.setdefault(docs[0].id, docs[0].name)
    except QuireError as exc:
        _fail(str(exc), exc.exit_code)
    if chosen and not yes:
        if not sys.stdin.isatty():
            _fail("not on a terminal to ask; give --yes to delete "
                  + ", ".join(f"{name} ({id_})" for id_, name in chosen.items()))
        for id_, name in chosen.items():
            typer.echo(f"  {name} ({id_})")
        if not typer.confirm(f"Delete {counted(len(chosen), 'document')} and all Quire stored for "
                             "them (rows, text, page images, exports)?", default=False):
            typer.echo("nothing deleted", err=True)
            raise typer.Exit(1)
    removed = 0
    for id_, name in chosen.items():
        try:
            done = delete_document(engine, store, id_, silent_after=settings.run.stale_seconds)
        except QuireError as exc:
            typer.echo(f"quire: {name} ({id_}): {exc}", err=True)
            problems += 1
            continue
        # What `quire view` wrote in Quire's own home: an image of the pages too.
        shutil.rmtree(settings.home / "viewer" / id_, ignore_errors=True)
        removed += 1
        line = (f"deleted {name} ({id_}): {counted(done.pages, 'page')}, {counted(done.lines, 'line')}, "
                f"{counted(done.jobs, 'job link')}, {counted(done.objects, 'stored object')}")
        if done.objects_left:
            line += (f"; {counted(done.objects_left, 'stored object')} could not be deleted now (the "
                     "store failed): the next `quire run` or `quire delete` deletes them")
        typer.echo(line)
    if len(chosen) > 1:
        typer.echo(f"{counted(removed, 'document')} deleted")
    if problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("delete")(delete)
