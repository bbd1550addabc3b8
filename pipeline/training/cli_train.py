"""The typer command behind `quire train` (registered by pipeline/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


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
    from pipeline.training.loop import train
    from pipeline.training.run_config import TrainConfig

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
