"""The `quire` command line: thin commands over the runner, the recognizer and the database."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli_common import DEVICE_HELP, DPI_HELP, counted, file_in_the_way
from pipeline.cli_common import fail as _fail
from pipeline.config import (
    DECODINGS,
    DEFAULT_MODEL,
    Settings,
    SettingsError,
    load_settings,
    unknown_variables,
)
from pipeline.errors import QuireError, unreachable_server
from pipeline.precision import PRECISION_HELP, PRECISIONS

app = typer.Typer(
    name="quire",
    help="Quire: OCR for archives. Scans and PDFs in; text, JSON and more out, kept in SQL "
    "and object storage. Settings come from QUIRE_* environment variables (see README).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # Plain help: it wraps at any width, where rich panels cut option names short at 80 columns.
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema commands (for PostgreSQL or an existing SQLite file).")
app.add_typer(db_app, name="db")


def check_out_folder(out: Path | None) -> None:
    """--out names a folder: a file there is refused before any work, not after the first page."""
    if out is not None and out.exists() and not out.is_dir():
        _fail(f"--out {out} is a file; give a folder (it is made if missing)")
    blocking = file_in_the_way(out) if out is not None else None
    if blocking is not None:  # else each document would fail once read, its output unwritable
        _fail(f"--out {out}: {blocking} is a file, so the folder cannot be made")


PRECISION_OPTION_HELP = PRECISION_HELP + " Default: QUIRE_RECOGNIZE__PRECISION, else auto."
# Where a run's defaults come from, when an option is not given: `quire run --help` says.
MODEL_HELP = (f"Recognition model: a shipped name ({DEFAULT_MODEL}), a folder, or a hub name. "
              f"Default: QUIRE_MODEL, else {DEFAULT_MODEL}.")
LANGUAGE_MODEL_HELP = (
    "Weigh in the model's character language model (char_lm.npz in its folder; the shipped model "
    "has one) when reading with rescore or ctc: unclear writing comes out as the likelier text. "
    "Default: QUIRE_RECOGNIZE__LANGUAGE_MODEL, else on."
)


def _check_precision(precision: str | None) -> None:
    if precision is not None and precision not in PRECISIONS:
        _fail(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")


def _settings(**overrides) -> Settings:
    base = load_settings()
    data = base.model_dump()
    options: dict[str, str] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
        options[key] = "--" + (field or section).replace("_", "-")
    return load_settings(options, **data)


@app.command()
def run(
    paths: Annotated[list[Path], typer.Argument(help="PDF or image files, or folders (searched recursively).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write <name>.<ext> for each document here, mirroring the folders given; a file an earlier run wrote that is still as it was left is left alone (results are always kept in the database and store under QUIRE_HOME, default ./quire-data).")] = None,
    model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
    beam: Annotated[int | None, typer.Option(min=1, max=16, help="Beam width; 1 is greedy (fastest). Default: QUIRE_RECOGNIZE__BEAM, else 1.")] = None,
    dpi: Annotated[int | None, typer.Option(min=50, max=1200, help=DPI_HELP)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Comma-separated output formats: txt, json, hocr, alto, page, pdf (searchable), pdfa (searchable PDF/A-2b, for archiving).")] = "txt,json",
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    decode: Annotated[str | None, typer.Option(help="auto (the model's recorded decoding: rescore for the shipped model, the most accurate), ctc (2-6x faster), attention or rescore. Default: QUIRE_RECOGNIZE__DECODE, else auto.")] = None,
    precision: Annotated[str | None, typer.Option(help=PRECISION_OPTION_HELP)] = None,
    language_model: Annotated[bool | None, typer.Option(help=LANGUAGE_MODEL_HELP)] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr: pages read (their total counted as the run reaches each file), documents finished of all; documents alone until a page is to be read (a rerun of files all done reads none).")] = True,
    redo: Annotated[bool, typer.Option(help="Read documents again even if done before with the same model and settings. The earlier reading stays until the new one is complete, however the run is stopped; the same command then goes on with the new one where it stopped.")] = False,
    rotate_pages: Annotated[bool | None, typer.Option(help="Turn sideways and upside-down pages upright before reading them (default; QUIRE_RENDER__ROTATE_PAGES). The JSON gives each page's rotation. Off for a folder of line crops: one short line is too little to judge by.")] = None,
) -> None:
    """OCR documents in this process (no servers): text in the database, exports in the store and --out.

    A document already done with the same model and settings (same SHA-256) is not redone
    (--redo reads it again), and its files in --out are written again only if missing or changed
    since. Stopped with Ctrl-C (a second Ctrl-C ends it at once), SIGTERM or even kill -9, the
    same command later goes on where it stopped. The summary counts the files done before, naming
    a few, and names each failure (the first 100; `quire status JOB --list failed` names all).
    Exit status 1 if any document failed, 130 if stopped.

    Example: `quire run scans/ --out results/ --format txt,pdf` writes results/box1/0001.txt and
    results/box1/0001.ocr.pdf (searchable) for scans/box1/0001.pdf.
    """
    from tqdm import tqdm

    from pipeline import stopping
    from pipeline.cli_run_summary import print_summary
    from pipeline.exporters import get_exporter, parse_formats
    from pipeline.inputs import find_inputs, own_data, under_folders
    from pipeline.runner import LocalRunner

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        _fail(f"no such file or folder: {', '.join(missing)}")
    runner: LocalRunner | None = None
    check_out_folder(out)
    if decode is not None and decode not in DECODINGS:
        _fail(f"--decode must be one of {', '.join(DECODINGS)}, not {decode!r}")
    _check_precision(precision)
    try:
        exporters = parse_formats(fmt)
        settings = _settings(model=model, device=device, render__dpi=dpi, recognize__beam=beam,
                             recognize__decode=decode, recognize__precision=precision,
                             recognize__language_model=language_model,
                             render__rotate_pages=rotate_pages)
        # Quire's own store and database, when a folder given holds them, are not walked.
        own = own_data(settings.resolved_database_url(), settings.resolved_storage_url())
        # So is an --out inside a folder given (`cd scans && quire run . --out out`): its .txt,
        # .json... are a run's outputs, not files to name one by one as "not a PDF".
        outputs = under_folders({out.resolve()}, paths) if out is not None else []
        found = find_inputs(paths, skip=own | set(outputs))  # one walk: the files to read and those passed over
        inputs = found.documents
        _say_passed_over([str(p) for p in under_folders(own, paths)], ("place", "places"),
                         "Quire's own store and database (QUIRE_HOME)")
        _say_passed_over([str(out)] if outputs else [], ("folder", "folders"),
                         "Quire's own outputs (--out)")
        if out is not None:  # searchable PDFs an earlier run wrote there are not documents to read
            searchable = "." + get_exporter("pdf").extension
            ours = {p for p in inputs if p.name.endswith(searchable)
                    and p.resolve().is_relative_to(out.resolve())}
            inputs = [p for p in inputs if p not in ours]
            _say_passed_over(sorted(p.name for p in ours), ("file", "files"),
                             f"Quire's own searchable PDFs in --out {out}")
        _say_passed_over(found.links, LINKS_TO_FOLDERS, LINKS_NOT_FOLLOWED)
        _say_passed_over(found.specials, why=not_regular_files(found.specials))
        _say_passed_over(found.others)  # first: a folder of .docx alone says what it held
        if not inputs:
            _fail("no PDF or image files found in " + ", ".join(map(str, paths)))
        # Ctrl-C and SIGTERM: the first stops the run in order, a second ends it (pipeline/stopping.py).
        with stopping.handled():
            runner = LocalRunner(settings, exporters=exporters, out_dir=out, redo=redo)
            # Documents until a page is to be read, then pages, their total counted as the run
            # reaches each file (pipeline/run_progress.py): no file is opened before the first.
            bar = tqdm(total=len(inputs), unit="document", desc="OCR", disable=not progress,
                       dynamic_ncols=True, file=sys.stderr)
            with bar:
                summary = runner.run(inputs, progress=bar, roots=paths)
    except QuireError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        stopping.ignore_more()  # the stop is recorded: more Ctrl-C cannot change how it ends
        # The job, for `quire status JOB` (README): a stopped run prints no summary to name it.
        job = runner.job_id if runner is not None else None
        typer.echo("quire: interrupted; documents and pages finished so far are kept, and the same "
                   "command goes on from there" + (f"; job {job} (`quire status {job}`)" if job else ""),
                   err=True)
        if stopping.again.is_set():  # a second Ctrl-C: out now, not after the interpreter's shutdown
            stopping.exit_now()
        raise typer.Exit(stopping.EXIT_STATUS) from None
    print_summary(summary, runner.options, out)
    raise typer.Exit(1 if summary.failures else 0)


# `quire recognize` reads, recognizes and prints this many images at a time: output starts at
# once and memory stays flat on a folder of a hundred thousand lines.
RECOGNIZE_CHUNK = 1024


@app.command()
def recognize(
    images: Annotated[list[Path], typer.Argument(help="Images of single text lines, or folders of them (searched recursively; e.g. a tesstrain ground-truth folder).")],
    model: Annotated[str | None, typer.Option(help="Recognition model name or folder.")] = None,
    beam: Annotated[int, typer.Option(min=1, max=16, help="Beam width; 1 is greedy.")] = 1,
    tsv: Annotated[bool, typer.Option(help="Print path<TAB>text<TAB>confidence per line.")] = False,
    quantize: Annotated[bool, typer.Option(help="int8 dynamic quantization (CPU).")] = False,
    precision: Annotated[str | None, typer.Option(help=PRECISION_OPTION_HELP)] = None,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    decode: Annotated[str, typer.Option(
        help="auto (what the model's config records: rescore for the shipped model), attention "
             "(the decoder generates; --beam applies), ctc (the encoder's CTC head reads; Quire's "
             "own models; 2-6x faster) or rescore (the CTC head proposes a few "
             "readings, the decoder picks one: the most accurate).")] = "auto",
    language_model: Annotated[bool | None, typer.Option(help=LANGUAGE_MODEL_HELP)] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr (when it is a terminal).")] = True,
) -> None:
    """OCR ready-cut line images (no segmentation); one result per image, in the order given.

    Results are printed as they are read, 1,024 images at a time. An unreadable image is reported
    on stderr and skipped; the exit status is then 1.
    """
    from tqdm import tqdm

    from pipeline.document_checks import IMAGE_SUFFIXES
    from pipeline.inputs import collect_inputs
    from pipeline.line_image import looks_like_a_page
    from pipeline.recognize import Recognizer
    from pipeline.training.evaluate import read_line_images

    _check_precision(precision)
    settings = _settings(model=model, device=device, recognize__precision=precision,
                         recognize__language_model=language_model)
    paths = collect_inputs(images, IMAGE_SUFFIXES)
    if not paths:
        _fail("no line images found in " + ", ".join(map(str, images)))
    try:
        recognizer = Recognizer.from_settings(settings, beam=beam, quantize=quantize, decode=decode)
    except QuireError as exc:
        _fail(str(exc), exc.exit_code)
    failed = 0
    # disable=None: a bar only on a terminal, so piped or redirected output stays clean.
    with tqdm(total=len(paths), unit="line", desc="recognize", disable=None if progress else True) as bar:
        for start in range(0, len(paths), RECOGNIZE_CHUNK):
            chunk = paths[start : start + RECOGNIZE_CHUNK]
            kept, crops, unreadable = read_line_images(chunk)
            for path, reason in unreadable:
                typer.echo(f"quire: {path}: {reason}", err=True)
            failed += len(unreadable)
            for k, crop in zip(kept, crops):
                if looks_like_a_page(crop):
                    height, width = crop.shape[:2]
                    typer.echo(f"quire: warning: {chunk[k]} ({width}x{height}) looks like a page or "
                               "a block of lines, read here as one line; `quire run` finds its lines",
                               err=True)
            try:
                results = recognizer.recognize(crops) if crops else []
            except QuireError as exc:
                _fail(str(exc), exc.exit_code)
            for path, line in zip((chunk[k] for k in kept), results):
                if tsv:
                    text = line.text.replace("\t", " ")
                    bar.write(f"{path}\t{text}\t{line.confidence:.4f}", file=sys.stdout)
                else:
                    bar.write(f"{path}: {line.text}  ({line.confidence:.0%})", file=sys.stdout)
            bar.update(len(chunk))
    raise typer.Exit(1 if failed else 0)


LINKS_TO_FOLDERS = ("link to a folder", "links to folders")
LINKS_NOT_FOLLOWED = ("not followed (a link back up would loop); give the folder it leads to",
                      "not followed (a link back up would loop); give the folders they lead to")
NOT_DOCUMENTS = ("not a PDF or an image by its suffix", "not PDFs or images by their suffix")


def not_regular_files(names: list[str]) -> str:
    """Why named pipes, sockets and devices in a folder are passed over, for `_say_passed_over`."""
    return ("not a regular file" if len(names) == 1 else "not regular files") + " (never opened: a pipe would hang)"


def _say_passed_over(names: list[str], what: tuple[str, str] = ("file", "files"),
                     why: str | tuple[str, str] = NOT_DOCUMENTS) -> None:
    """One line for the files of the folders given (or objects under the prefixes given) that
    are not read: notes, spreadsheets... `what`: the singular and plural of what they are;
    `why` the same, or one phrase for any count."""
    if names:
        if not isinstance(why, str):  # "1 file ... not a PDF", never "1 file ... not PDFs"
            why = why[0] if len(names) == 1 else why[1]
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        typer.echo(f"quire: {counted(len(names), *what)} passed over, {why}: {shown}", err=True)


@db_app.command("upgrade")
def db_upgrade(
    url: Annotated[str | None, typer.Option(help="Database URL (default: QUIRE_DATABASE_URL).")] = None,
) -> None:
    """Apply the Alembic migrations up to the newest schema."""
    from pipeline.db.session import upgrade

    target = url or load_settings().resolved_database_url()
    upgrade(target)
    typer.echo(f"database at {target.split('@')[-1]} is up to date")


@app.command()
def worker(
    queue: Annotated[str, typer.Argument(help="ingest, recognize or finish (or several, comma-separated, for a small node).")],
    concurrency: Annotated[int | None, typer.Option(help="Worker processes (recognize: 1 per GPU).")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics (pages, lines, lines/s) on this port.")] = None,
) -> None:
    """Start a Celery worker for one queue with the settings that queue needs.

    recognize: one process (start one worker per GPU), prefetch 1, acks late; ingest and
    finish: one process per CPU core. Settings come from QUIRE_* (see README, Deploy).
    """
    from pipeline.queue import QUEUES

    unknown = [q for q in queue.split(",") if q not in QUEUES]
    if unknown:
        _fail(f"unknown queue {unknown[0]!r}; choose from {', '.join(QUEUES)}")
    from workers.app import start_worker

    start_worker(queue, concurrency=concurrency, loglevel=loglevel, metrics_port=metrics_port)


def _register_training_commands() -> None:
    try:
        from pipeline.training.cli_build_lm import build_lm_command
        from pipeline.training.cli_eval import eval_command
        from pipeline.training.cli_train import train_command
    except ImportError:  # training extras missing in a slim API image: the rest still works
        return
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("build-lm")(build_lm_command)


_register_training_commands()

# Commands of other areas live in their own modules; each has register(app).
# (pipeline/cli_outputs.py: export, search, view; pipeline/cli_submit.py: submit; pipeline/cli_jobs.py:
# status, cancel; pipeline/cli_services.py: watch, api, token; pipeline/cli_lines.py: lines;
# pipeline/cli_delete.py: delete). Their order is the order `quire --help` lists the commands in.
for _module in ("pipeline.cli_outputs", "pipeline.cli_submit", "pipeline.cli_jobs", "pipeline.cli_services",
                "pipeline.cli_lines", "pipeline.cli_delete"):
    try:
        __import__(_module, fromlist=["register"]).register(app)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="quire: %(message)s")
    # SIGTERM (kill, systemd, a container stopping) ends a command as Ctrl-C does: what is done
    # is kept and a run's job is closed, not left queued. Servers (api, workers) set their own.
    signal.signal(signal.SIGTERM, _interrupt)
    for note in unknown_variables(dict(os.environ)):
        typer.echo(f"quire: warning: {note}", err=True)
    try:
        app()
    except SettingsError as e:  # a bad QUIRE_* value: say which, not a traceback
        typer.echo(f"quire: {e}", err=True)
        sys.exit(2)
    except QuireError as e:  # raised on purpose (a store that fails, a bad argument): its message
        typer.echo(f"quire: {e}", err=True)
        sys.exit(e.exit_code)
    except Exception as e:
        message = unreachable_server(e)
        if message is None:
            raise
        typer.echo(f"quire: {message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
