"""The typer command behind `quire eval`: CER and WER on line folders (registered by pipeline/cli.py)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli_common import DEVICES, counted, names_a_folder
from pipeline.cli_common import fail as _fail
from pipeline.config import DEFAULT_MODEL, DEVICE_PATTERN, RETRY_BELOW
from pipeline.precision import PRECISION_HELP


def _recognizer_fn(
    model: str, device: str, beam: int, quantize: bool, batch_size: int, decode: str,
    retry_below: float, precision: str, language_model: bool = True,
) -> tuple[Any, dict[str, Any], Any]:
    """The function that reads crops, what it reads with (`_reading`) and its tokenizer."""
    # Imported here so `quire --help` never loads torch.
    from pipeline.recognize import Recognizer

    rec = Recognizer(
        model, device=device, beam=beam, quantize=quantize, batch_size=batch_size, decode=decode,
        retry_below=retry_below, precision=precision, language_model=language_model,
    )
    return ((lambda crops: [(line.text, line.confidence) for line in rec.recognize(crops)]), _reading(rec, quantize),
            rec.processor.tokenizer)


def _reading(rec: Any, quantize: bool) -> dict[str, Any]:
    """What a recognizer reads with, as it resolved what was asked: 'auto' decoding is the one the
    model records, a language model only where it has one and the decoding weighs it in, no retry
    for square-input models, the precision the device runs. Two reports are told apart by these."""
    return {"model": rec.model_id, "decode": rec.decode, "beam": rec.beam, "retry_below": rec.retry_below,
            "language_model": rec.fusion is not None, "quantize": quantize,
            "precision": "bf16" if rec.bf16 else "fp32", "device": rec.device}


def eval_command(
    directory: Annotated[
        Path, typer.Argument(help="Folder of line images with *.gt.txt ground truth.")
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="A shipped model's name, a folder or a hub name.")
    ] = DEFAULT_MODEL,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Also write the report as JSON: the scores, every "
                                  "line's reading and CER, and the model and settings read with.")
    ] = None,
    fold: Annotated[
        bool, typer.Option("--fold", help="Case- and space-insensitive scoring.")
    ] = False,
    quantize: Annotated[
        bool, typer.Option("--quantize", help="int8 dynamic quantization (CPU).")
    ] = False,
    # Not QUIRE_DEVICE: eval reads only its options, as --model is not QUIRE_MODEL.
    device: Annotated[str, typer.Option(help=DEVICES)] = "auto",
    beam: Annotated[int, typer.Option(min=1, help="Beam width (1 = greedy).")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Lines per batch.")] = 32,
    worst: Annotated[int, typer.Option(min=0, help="How many worst lines to list.")] = 10,
    decode: Annotated[
        str,
        typer.Option(
            help="auto, attention (decoder), ctc (encoder's CTC head) or rescore (the decoder "
            "picks among the CTC head's readings)."
        ),
    ] = "auto",
    retry_below: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0,
            help="Read lines under this confidence again, stretched wider, and keep the surer "
            "reading (Quire's line models; 0: off). The default is quire run's.",
        ),
    ] = RETRY_BELOW,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
    language_model: Annotated[
        bool,
        typer.Option(help="Weigh in the model's character language model (char_lm.npz in its "
                     "folder) when reading with rescore or ctc, as quire run does."),
    ] = True,
    progress: Annotated[
        bool | None, typer.Option(help="A progress bar on stderr (default: on a terminal).")
    ] = None,
) -> None:
    """CER and WER (after NFC, quote and whitespace normalisation), lines/s and the worst lines.

    Scores every line image (png, jpg, tif, webp, jp2...: any image `quire run` reads) that has a
    non-empty .gt.txt beside it and says how many it left out; a folder of such folders (e.g. printed/, receipts/, handwritten/) is scored
    folder by folder, the model loaded once. Exit status 1 if an image could not be read."""
    from tqdm import tqdm

    from pipeline.errors import QuireError
    from pipeline.training.evaluate import (
        evaluate_dir,
        left_out,
        line_folders,
        line_images,
        transcribed,
    )
    from pipeline.training.preflight import unwritable_notice, without_image_notice

    if not re.fullmatch(DEVICE_PATTERN, device):  # torch's own refusal is a traceback
        _fail(f"bad setting --device={device!r}: use auto, cpu, cuda or cuda:N")
    json_path = _json_target(json_out) if json_out else None  # refused before the long work
    reports = []
    try:
        folders = line_folders(directory)  # a wrong folder fails before the model loads
        recognizer_fn, reading, tokenizer = _recognizer_fn(
            model, device, beam, quantize, batch_size, decode, retry_below, precision,
            language_model,
        )
        for folder in folders:
            found = line_images(folder)  # each .gt.txt read once: counted, then scored
            for why, count in left_out(found).items():
                typer.echo(f"{folder}: left out {counted(count, 'line image')} {why}", err=True)
            orphans = without_image_notice(folder)
            if orphans:
                typer.echo(orphans, err=True)
            pairs = transcribed(found)
            unwritable = unwritable_notice(tokenizer, folder, pairs, model)
            if unwritable:
                typer.echo(unwritable, err=True)
            # A bar only on a terminal (disable=None) unless asked: piped reports stay clean.
            disable = None if progress is None else not progress
            with tqdm(total=len(pairs), unit="line", desc="eval", disable=disable,
                      file=sys.stderr) as bar:
                # Hand the recognizer many lines at once so its width sorting keeps padding small.
                report = evaluate_dir(
                    folder, recognizer_fn, fold=fold, batch_size=batch_size * 8, n_worst=worst,
                    progress=bar, pairs=pairs,
                )
            _print_report(report, fold)
            reports.append(report)
    except FileNotFoundError as exc:  # "quire: ...", as every command's one-line errors
        _fail(str(exc))
    except QuireError as exc:
        _fail(str(exc), exc.exit_code)
    if json_path:
        # What was read with, so reports of two models or settings can be told apart and diffed.
        data = ({**reports[0].to_dict(), "reading": reading} if len(reports) == 1
                else {"folders": [r.to_dict() for r in reports], "reading": reading})
        try:
            json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        except OSError as exc:  # e.g. no permission: the report above stands, the file does not
            _fail(f"--json {json_path}: cannot write it: {exc.strerror or exc}", 1)
    if any(r.unreadable for r in reports):
        raise typer.Exit(1)  # scored without them: the figures are not the whole folder's


def _json_target(given: str) -> Path:
    """The --json file, its folders made: a folder or an unusable path fails at once, not after
    the evaluation it would have reported."""
    path = Path(given)
    if names_a_folder(given):
        _fail(f"--json {given} is a folder; give a file name, e.g. {path / 'eval.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent that is a file, no permission
        _fail(f"--json {given}: cannot make its folder {path.parent}: {exc.strerror or exc}")
    try:
        # Opened now (and left as it was) so that a folder without write permission, a read-only
        # disk or /proc fails here, not after the evaluation.
        existed = path.exists()
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        _fail(f"--json {given}: cannot write it: {exc.strerror or exc}")
    if not existed:
        path.unlink()
    return path


def _print_report(report: Any, fold: bool) -> None:
    for problem in report.unreadable:
        typer.echo(f"skipped {problem}", err=True)
    for page in report.pages:
        typer.echo(f"warning: {page} looks like a page or a block of lines, read and scored here "
                   "as one line; `quire lines` cuts a page into its lines", err=True)
    typer.echo(
        f"{report.directory}: {report.lines} lines  CER {report.cer:.2%}  WER {report.wer:.2%}"
        f"{'  (folded)' if fold else ''}  {report.lines_per_second:.1f} lines/s"
    )
    if report.cer_by_confidence:
        kept = "  ".join(f"top {k} {v:.2%}" for k, v in report.cer_by_confidence.items())
        typer.echo(f"  CER of the most confident lines: {kept}")
    for line in report.worst:
        conf = f"  conf {line.confidence:.2f}" if line.confidence is not None else ""
        typer.echo(
            f"  {line.cer:6.1%}{conf}  {line.name}: {line.reference!r} -> {line.hypothesis!r}"
        )
