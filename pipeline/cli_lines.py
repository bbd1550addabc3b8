"""`quire lines`: line pairs (line.png + line.gt.txt) to transcribe, fine-tune and measure on."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli_common import DEVICE_HELP, DPI_HELP


def lines(
    inputs: Annotated[list[Path], typer.Argument(
        help="PDFs or images to cut into lines, PAGE XML or ALTO files (Transkribus, eScriptorium, "
             "`quire export --format page|alto`), or folders of either (searched recursively; a folder "
             "with XML files gives their lines, its images being their pages).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The line folder to write (created if missing).")],
    draft: Annotated[bool, typer.Option(
        "--draft/--no-draft", help="Fill each new .gt.txt cut from a document with the model's reading, to "
        "correct rather than type; --no-draft leaves them empty (empty ones are not trained on).")] = True,
    sample: Annotated[int | None, typer.Option(
        min=1, help="Keep only N lines drawn at random from all inputs, every line as likely (the same N for "
        "the same inputs and --seed), rather than every line: a few hundred lines to transcribe that show "
        "the whole collection, not just its first pages.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample's draw.")] = 0,
    images: Annotated[Path | None, typer.Option(
        help="Where the page images named in XML files are, if not beside them or one folder up.")] = None,
    model: Annotated[str | None, typer.Option(help="The model whose readings are the drafts. Default: QUIRE_MODEL, else quire-line-v1.")] = None,
    dpi: Annotated[int | None, typer.Option(min=50, max=1200, help=DPI_HELP)] = None,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Cut documents or PAGE/ALTO transcriptions into line pairs for `quire train` and `quire eval`.

    From a document, each line Quire's segmenter finds (as recognition will see it) becomes
    NAME.png with NAME.gt.txt holding the model's draft reading (OUT/drafts.tsv lists them, least
    sure first): correct the drafts, then
    `quire train --model quire-line-v1 --data OUT --epochs 10 --out MY-MODEL`. From a PAGE XML or
    ALTO file, each transcribed line is cut from its page image along the file's polygon, with the
    file's text. A .gt.txt already in OUT is never overwritten, so running it again is safe;
    OUT/sources.tsv records which file each name is cut from, so another file of the same name
    (0001.pdf of the next box) gets names of its own (0001-2_...).
    Exit status 1 if any input failed; the others are still written.
    """
    from tqdm import tqdm

    from pipeline.cli import _fail, _settings, check_out_folder
    from pipeline.cli_common import counted
    from pipeline.errors import QuireError
    from pipeline.ground_truth import read_transcription
    from pipeline.inputs import output_names, total_pages
    from pipeline.line_pairs import (
        DRAFTS_INDEX,
        Written,
        document_lines,
        sample_lines,
        split_inputs,
        transcribed_lines,
        untranscribed_scans,
        write_draft_index,
        write_pairs,
    )
    from pipeline.line_sources import SOURCES_INDEX, claim_names, source_key
    from pipeline.training.evaluate import some_of

    missing = [str(p) for p in [*inputs, *([images] if images else [])] if not p.exists()]
    if missing:
        _fail(f"no such file or folder: {', '.join(missing)}")
    check_out_folder(out)
    if (out / "config.json").is_file():
        # The shipped model's folder given for --out had line pairs and their indexes written
        # among its weights.
        _fail(f"--out {out} holds a model (config.json): line pairs go in a folder of their own, "
              "e.g. my-lines/")
    inside = [p for p in inputs if p.is_dir() and out.resolve().is_relative_to(p.resolve())]
    if inside:
        _fail(f"--out {out} is inside the input folder {inside[0]}: its line images would be cut "
              "again as documents on the next run; write them somewhere else")
    found = split_inputs(inputs)
    documents, transcriptions, passed_over = found.documents, found.transcriptions, found.passed_over
    if passed_over:
        shown = ", ".join(p.name for p in passed_over[:5]) + (" ..." if len(passed_over) > 5 else "")
        typer.echo(f"passed over {counted(len(passed_over), 'XML file')} that "
                   f"{'is' if len(passed_over) == 1 else 'are'} neither PAGE XML nor ALTO: {shown}", err=True)
    if not documents and not transcriptions:
        _fail("no PDF, image, PAGE XML or ALTO files found in " + ", ".join(map(str, inputs)))
    settings = _settings(model=model, device=device, render__dpi=dpi)
    wanted = output_names([*documents, *transcriptions])
    names = claim_names(out, wanted, {path: source_key(path, path in transcriptions) for path in wanted})
    for path in (p for p in wanted if names[p] != wanted[p]):
        typer.echo(f"{path}: its lines are named {names[path]}_* ({wanted[path]} is another file's "
                   f"lines in {out}, see {out / SOURCES_INDEX})")
    written = Written()
    failed: list[str] = []
    # Each transcription is read once, here: its pages count towards the bar, and a bad file is
    # kept as its error, reported in its turn.
    parsed: dict[Path, list | QuireError] = {}
    for path in transcriptions:
        try:
            parsed[path] = read_transcription(path)
        except QuireError as exc:
            parsed[path] = exc
    untranscribed = untranscribed_scans(found.scans, (page for p in parsed.values() if isinstance(p, list)
                                                      for page in p), images)
    if untranscribed:
        many = len(untranscribed) > 1
        typer.echo(f"{counted(len(untranscribed), 'scan')} beside the transcriptions {'are' if many else 'is'} "
                   f"named by no PAGE XML or ALTO file, so not cut: {some_of([p.name for p in untranscribed])}; "
                   f"give {'them' if many else 'it'} by name to cut {'them' if many else 'it'} with the "
                   "model's drafts", err=True)
    pages = total_pages(documents) + sum(len(p) for p in parsed.values() if isinstance(p, list))
    bar = tqdm(total=pages, unit="page", desc="lines", disable=not progress, dynamic_ncols=True, file=sys.stderr)

    def each_line():
        """Every input's lines in turn; a bad input is reported and skipped, the rest go on."""
        for path in [*documents, *transcriptions]:
            try:
                if path in parsed:
                    transcribed = parsed[path]
                    if isinstance(transcribed, QuireError):
                        raise transcribed
                    yield from transcribed_lines(transcribed, names[path], settings.render, images, written,
                                                 lambda: bar.update(1))
                else:
                    yield from document_lines(path, names[path], settings.render, lambda: bar.update(1))
            except QuireError as exc:
                failed.append(str(exc))
            except (OSError, ValueError) as exc:
                failed.append(f"{path}: {exc}")

    recognizer = None

    def read(crops):
        nonlocal recognizer
        if recognizer is None:  # loaded only when a line needs a draft
            from pipeline.recognize import Recognizer

            recognizer = Recognizer.from_settings(settings)
        return recognizer.recognize(crops)

    try:
        if sample:
            with bar:  # the whole collection is cut first, to draw the sample from
                chosen: Any = sample_lines(each_line(), sample, seed)
            drafting = tqdm(total=len(chosen), unit="line", desc="draft", disable=not (progress and draft),
                            dynamic_ncols=True, file=sys.stderr)
            with drafting:
                write_pairs(chosen, out, read if draft else None, written, drafted=drafting.update)
        else:
            with bar:
                write_pairs(each_line(), out, read if draft else None, written)
    except QuireError as exc:  # the model failed to load: nothing can be drafted
        _fail(str(exc), exc.exit_code)
    if not written.drafts and (out / DRAFTS_INDEX).exists():
        write_draft_index(out, {})  # drop lines corrected since, or deleted
    if written.drafts:
        index = write_draft_index(out, written.drafts)
        doubtful = sum(confidence < 0.9 for confidence, _ in written.drafts.values())
        typer.echo(f"{counted(len(written.drafts), 'draft')} to correct, {doubtful} of them read with less than 90 % "
                   f"confidence; {index} lists them, least sure first")
    typer.echo(f"{out}: {counted(written.new, 'new line pair')}, {written.kept} already there (kept as they are)"
               + (f", {counted(written.untranscribed, 'line')} without text skipped" if written.untranscribed else "")
               + (f"; {counted(len(failed), 'input')} failed" if failed else ""))
    for reason in failed:
        typer.echo(f"  FAILED {reason}")
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command("lines")(lines)
