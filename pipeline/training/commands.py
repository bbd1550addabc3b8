"""Typer command functions behind `quire train` and `quire eval` (registered by pipeline/cli.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli_common import fail as _fail
from pipeline.cli_common import names_a_folder
from pipeline.config import DEFAULT_MODEL, RETRY_BELOW
from pipeline.precision import PRECISION_HELP
from pipeline.training.preflight import BEST_DIR


def train_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where the HF model (the last step's) and checkpoint/ are written; best/ "
                                          "holds the model at its best validation.")
    ],
    model: Annotated[
        str, typer.Option(help="'new' for a new Quire line model, or one to fine-tune: a shipped "
                          "model's name (quire-line-v1), a VisionEncoderDecoder folder or hub name.")
    ] = "new",
    size: Annotated[
        str,
        typer.Option(
            help="With --model new: 'small' (the shipped model's sizes, fast on CPUs), 'mid' (small's "
            "layers reading lines 48 px tall) or 'base' (48 px, deeper encoder and decoder, 2.3x the "
            "parameters: for a GPU). With a trained Quire model as --model, a new model of this size "
            "starts from its weights where they fit (small -> mid fits all of them). A resume keeps "
            "the checkpoint's sizes."
        ),
    ] = "small",
    data: Annotated[
        str, typer.Option(help="'synthetic', or a folder of line images (NAME.png, .jpg, .tif, ...) "
                          "each beside NAME.gt.txt holding its text, UTF-8, on one line (`quire lines` "
                          "makes one; an empty .gt.txt is left out).")
    ] = "synthetic",
    # min=1 on the counts: 0 would silently mean the default (epochs) or a run that "finishes"
    # at step 0, and a batch of 0 divides by zero after the model has loaded.
    steps: Annotated[
        int | None, typer.Option(min=1, help="Total optimizer steps (default: 60000 on synthetic data).")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(min=1, help="Epochs over a folder (overrides --steps; default with --data FOLDER: 10)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Lines per step.")] = 32,
    lr: Annotated[
        float, typer.Option(help="Peak learning rate (linear warmup, cosine decay).")
    ] = 5e-4,
    warmup: Annotated[int, typer.Option(help="Warmup steps (at most a tenth of the run's steps).")] = 1000,
    freeze_encoder: Annotated[
        bool, typer.Option("--freeze-encoder", help="Train the decoder only.")
    ] = False,
    val_every: Annotated[
        int, typer.Option(min=1, help="Validate every N steps (every epoch with --epochs).")
    ] = 500,
    val_dir: Annotated[
        Path | None, typer.Option(help="Real line folder(s) to measure CER on.")
    ] = None,
    hold_out: Annotated[
        float,
        typer.Option(min=0.0, max=0.49, help="With --data FOLDER and no --val-dir: the share of the "
                     "folder's lines (every Nth by name) kept out of training to measure CER on."),
    ] = 0.1,
    augment: Annotated[
        bool,
        typer.Option("--augment/--no-augment", help="With --data FOLDER: vary each line a little "
                     "every epoch (letter shapes, size, lean, stroke weight, sharpness), so a few "
                     "hundred lines teach the hand rather than being learnt by heart."),
    ] = True,
    rehearse: Annotated[
        float,
        typer.Option(min=0.0, max=0.9, help="With --data FOLDER: the share of each epoch drawn from new "
                     "synthetic lines of --mix's kinds (print, receipts, hands), on top of the folder's, so "
                     "the tuned model keeps reading what the folder lacks (0.25 halved what it forgot at "
                     "almost the same CER on the folder's kind, docs/BENCHMARKS.md); 0: the folder alone."),
    ] = 0.25,
    decoding: Annotated[
        str,
        typer.Option(
            help="What the trained model's --decode auto reads with: 'measure' (at each validation, "
            "the CTC head or the decoder, whichever reads the --val-dir or held-out lines, else the synthetic "
            "ones, clearly better; a model set to 'rescore', as the shipped one, keeps it), or "
            "always 'ctc', 'attention' or 'rescore'."
        ),
    ] = "measure",
    save_every_s: Annotated[float, typer.Option(help="Seconds between checkpoints.")] = 600.0,
    num_workers: Annotated[int, typer.Option(help="Data generation worker processes.")] = 1,
    threads: Annotated[int, typer.Option(help="Torch CPU threads for the training step.")] = 2,
    device: Annotated[
        str, typer.Option(help="auto, cpu or cuda.")
    ] = "auto",
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 autocast on CUDA and on CPUs with native bf16), bf16 or fp32."
        ),
    ] = "auto",
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue from OUT/checkpoint.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    progress: Annotated[bool, typer.Option(help="A progress bar on stderr.")] = True,
    mix: Annotated[
        str | None,
        typer.Option(
            help="Shares of synthetic line kinds, e.g. 'handwritten=0.6,printed=0.25,receipt=0.15' "
            "to fine-tune for handwriting (default printed 0.4, receipt 0.3, handwritten 0.3)."
        ),
    ] = None,
    ink_cut: Annotated[
        float,
        typer.Option(
            help="Share (0-1) of synthetic lines prepared as recognition prepares every crop before "
            "letterboxing: whitened, cut to their ink, sheared upright."
        ),
    ] = 0.0,
    curriculum_lines: Annotated[
        int, typer.Option(help="Synthetic lines grow from short to full length over this many lines (0: off).")
    ] = 0,
    ctc_weight: Annotated[
        float,
        typer.Option(help="Weight of the encoder's CTC loss (Quire's line models; 0: off)."),
    ] = 0.5,
    ema_decay: Annotated[
        float,
        typer.Option(
            help="Save a running average of the weights over about 1/(1-D) steps, steadier than "
            "the last step's (the checkpoint keeps the training weights); 0: save the last step's."
        ),
    ] = 0.999,
    ctc_frames: Annotated[
        int | None,
        typer.Option(
            help="Widen the loaded model's CTC head to N frames per encoder column "
            "(2 reads doubled letters in tight print); the new frames start as copies."
        ),
    ] = None,
) -> None:
    """Train or fine-tune a line recognition model; resumes from OUT/checkpoint when present.

    To adapt the shipped model to your own material, transcribe a few hundred lines into a folder
    (line.png + line.gt.txt) and run: quire train --model quire-line-v1 --data FOLDER --epochs 10
    --out MODEL (`quire lines` cuts such lines from your scans, with drafts to correct). A tenth of
    the lines is held out to measure CER each epoch (copies in MODEL/held-out), a quarter of each
    epoch is synthetic lines (--rehearse), the model's character language model goes with it.
    MODEL holds the last epoch's model, MODEL/best the one that read the held-out lines best:
    `quire run SCANS --model MODEL/best` reads with it. On 2 CPU cores 400 lines took 6-7 minutes
    for 10 epochs; the time grows with lines x epochs.

    Ctrl-C (or SIGTERM) stops after the current step with the checkpoint saved (a fine-tune also
    saves each epoch); run the same command again to go on.
    """
    from pipeline.training.train import TrainConfig, train

    if data != "synthetic" and epochs is None and steps is None:
        epochs = 10  # a folder of a few hundred lines: the README's recipe, not 60,000 steps
    steps = 60_000 if steps is None else steps
    config = TrainConfig(
        out_dir=str(out),
        model=model,
        size=size,
        data=data,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup=warmup,
        freeze_encoder=freeze_encoder,
        val_every=val_every,
        val_dir=str(val_dir) if val_dir else None,
        held_out=hold_out,
        augment=augment,
        rehearse=rehearse,
        decoding=decoding,
        save_every_s=save_every_s,
        num_workers=num_workers,
        threads=threads,
        device=device,
        precision=precision,
        resume=resume,
        seed=seed,
        progress=progress,
        curriculum_lines=curriculum_lines,
        mix=mix,
        ink_cut=ink_cut,
        ctc_weight=ctc_weight,
        ctc_frames=ctc_frames,
        ema_decay=ema_decay,
    )
    from pipeline.errors import QuireError

    try:
        result = train(config)
    except (ValueError, FileNotFoundError) as exc:  # a wrong option or path: say so, no traceback
        typer.echo(f"quire train: {exc}", err=True)
        raise typer.Exit(2) from None
    except QuireError as exc:  # a model that cannot be found, a line file that cannot be read
        typer.echo(f"quire train: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(json.dumps(result))
    if not result.get("finished", True):
        raise typer.Exit(130)  # stopped by Ctrl-C or SIGTERM, saved: the same command goes on


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
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
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

    Scores every line image (png, jpg, tif) that has a non-empty .gt.txt beside it and says how
    many it left out; a folder of such folders (e.g. printed/, receipts/, handwritten/) is scored
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
                typer.echo(f"{folder}: left out {count} line images {why}", err=True)
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
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except QuireError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from exc
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


def build_lm_command(
    out: Annotated[
        Path,
        typer.Argument(help="A model folder (the language model becomes <folder>/char_lm.npz, "
                       "which recognition then weighs in) or a .npz file to write."),
    ],
    text: Annotated[
        list[Path] | None,
        typer.Option("--text", "-t", help="UTF-8 text files, one line of writing per line: "
                     "transcriptions or other text like the material you will read, or a line "
                     "folder (its *.gt.txt). Repeatable. Default: the text the synthetic "
                     "training lines are drawn from."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Know only the characters this model's tokenizer has. Default: the "
                     "folder given as OUT if it holds a model, else the text's own characters."),
    ] = None,
    order: Annotated[
        int, typer.Option(min=1, max=7, help="Characters per n-gram: the last order - 1 are the context.")
    ] = 6,
    generated: Annotated[
        int, typer.Option(min=0, help="With the default text: synthetic lines of each kind (printed, "
                          "receipt, handwritten) added to the book and prose text.")
    ] = 60_000,
    default_text: Annotated[
        bool | None,
        typer.Option("--default-text/--no-default-text", help="Count the default text (the book, "
                     "prose and generated lines the shipped model's is built from) as well as --text: "
                     "a few hundred transcribed lines alone make a thin model. Default: only "
                     "without --text."),
    ] = None,
) -> None:
    """Build a character language model for 'rescore' and 'ctc' reading (pipeline.char_lm).

    Recognition uses <model folder>/char_lm.npz when it is there: the n-gram model weighs how
    likely each reading is as text, so unclear writing is read as the likelier words. Give
    --text with transcriptions of your own collection (another language, another period) to
    fit it to your material; add --default-text to count them with the default text.
    """
    from tqdm import tqdm

    from pipeline import char_lm

    target = out / char_lm.FILE_NAME if out.is_dir() else out
    if target.suffix != ".npz":
        typer.echo(f"error: {out}: give a model folder or a .npz file", err=True)
        raise typer.Exit(2)
    if out.is_dir() and not (out / "config.json").is_file():
        typer.echo(f"error: {out} holds no model (no config.json), so nothing would read a "
                   f"{char_lm.FILE_NAME} there; give the model folder, or a .npz path", err=True)
        raise typer.Exit(2)
    lines: list[str] = []
    for path in text or ():
        if path.is_dir():
            # A line folder (png + gt.txt): its transcriptions are the text.
            lines += [" ".join(t.split()) for _, t in _folder_texts(path)]
            continue
        try:
            lines += [" ".join(line.split()) for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            typer.echo(f"error: {path}: cannot read it as UTF-8 text ({exc})", err=True)
            raise typer.Exit(2) from exc
    if default_text or (default_text is None and not text):
        from pipeline.training.corpus import language_model_lines

        lines += language_model_lines(generated)
    source = model or (str(out) if (out / "tokenizer.json").is_file() else None)
    alphabet = _model_alphabet(source) if source else None
    try:
        with tqdm(total=len(lines), unit="line", desc="count", disable=None) as bar:
            lm = char_lm.build(lines, order, alphabet=alphabet, progress=bar.update)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _save_keeping_previous(lm, target)
    typer.echo(f"{target}: order {order}, {len(lm.alphabet)} characters, {len(lm.ngram_keys):,} "
               f"n-grams from {len(lines):,} lines ({target.stat().st_size / 1e6:.1f} MB)")
    best = out / BEST_DIR
    if out.is_dir() and (best / "best.json").is_file():
        # The run's best model (quire train keeps it beside the last) reads with it too.
        _save_keeping_previous(lm, best / char_lm.FILE_NAME)
        typer.echo(f"{best / char_lm.FILE_NAME}: the same, for the run's best model", err=True)


def _save_keeping_previous(lm, target: Path) -> None:
    """Save over `target`, keeping one step back: a thin model built by mistake is undone."""
    if target.exists():
        previous = target.with_name(target.stem + ".previous.npz")
        target.replace(previous)
        typer.echo(f"the language model that was there is now {previous}", err=True)
    lm.save(target)


def _folder_texts(folder: Path) -> list[tuple[Path, str]]:
    from pipeline.errors import QuireError
    from pipeline.training.evaluate import load_pairs

    try:
        return load_pairs(folder)
    except QuireError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _model_alphabet(model: str) -> str:
    """The single-character tokens of a model's tokenizer, in id order."""
    import transformers
    from transformers import AutoTokenizer

    from pipeline.config import resolve_model_path

    transformers.logging.set_verbosity_error()  # its notices about the model's config are noise here
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model))
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot load the tokenizer of {model!r}: {exc}", err=True)
        raise typer.Exit(2) from exc
    specials = set(tokenizer.all_special_tokens)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return "".join(t for t, _ in vocab if len(t) == 1 and t not in specials)
