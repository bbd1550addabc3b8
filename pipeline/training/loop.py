"""The training loop: sets a run up, steps, validates, saves, and says how it went."""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.model_input import cuts_padding, encoder_channels
from pipeline.precision import use_bf16
from pipeline.training.averaging import WeightAverage
from pipeline.training.best_model import beats, best_validation, best_verdict, judged_cer, save_best
from pipeline.training.checkpoint import restore, save, source_language_model
from pipeline.training.data import batches, folder_pairs, rehearsal_count
from pipeline.training.evaluate import line_images, transcribed
from pipeline.training.optimization import optimizer_and_schedule, training_loss
from pipeline.training.preflight import (  # CHECKPOINT: the resume state's folder in --out
    CHECKPOINT,
    HELD_OUT_DIR,
    check_line_images,
    earlier_split,
    keep_held_out,
    left_out_notice,
    without_image_notice,
    without_pages,
    without_unwritable_lines,
)
from pipeline.training.run_config import DECODING_CHOICES, TrainConfig, held_out_share
from pipeline.training.starting_model import load_or_build
from pipeline.training.stopping import stop_on_signals
from pipeline.training.synth import parse_mix
from pipeline.training.validation import validate, validation_sets


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns the last step, lines seen and validation scores."""
    if cfg.decoding not in DECODING_CHOICES:
        raise ValueError(f"decoding must be one of {', '.join(DECODING_CHOICES)}, not {cfg.decoding!r}")
    mix = parse_mix(cfg.mix)
    # Checked before the model loads (`quire train` refuses them too; this is for python -m).
    for name, value in (("steps", cfg.steps), ("epochs", cfg.epochs), ("batch-size", cfg.batch_size),
                        ("val-every", cfg.val_every)):
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be at least 1, not {value}")
    if not 0.0 <= cfg.ink_cut <= 1.0:
        raise ValueError(f"ink cut is a share of lines, from 0 to 1, not {cfg.ink_cut}")
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = (
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    # A line folder is listed once, before the model loads: what it leaves out, the lines to
    # train on and those held out to measure on.
    found = line_images(cfg.data) if cfg.data != "synthetic" else []
    for notice in (left_out_notice(cfg.data, found),
                   without_image_notice(cfg.data) if cfg.data != "synthetic" else None):
        if notice:
            print(notice, flush=True)
    train_lines, held_lines = folder_pairs(cfg.data, held_out_share(cfg), transcribed(found)) \
        if cfg.data != "synthetic" else ([], [])
    model, processor, saved_average = load_or_build(cfg)
    model.to(device)
    channels = encoder_channels(model)
    max_length = int(getattr(model.generation_config, "max_length", None) or 128)
    train_lines, held_lines, unwritable = without_unwritable_lines(processor.tokenizer, cfg.data, train_lines,
                                                                   held_lines)
    if unwritable:
        print(unwritable, flush=True)
    resuming = cfg.resume and (Path(cfg.out_dir) / CHECKPOINT / "state.pt").exists()
    earlier = earlier_split(train_lines + held_lines, Path(cfg.out_dir) / HELD_OUT_DIR) \
        if held_lines and resuming else None
    if earlier is not None and [p for p, _ in earlier[1]] != [p for p, _ in held_lines]:
        train_lines, held_lines = earlier
        print(f"the lines in {cfg.data} changed since this run began: the {len(held_lines)} held out then "
              "stay held out, and the others, new ones included, are trained on", flush=True)
    if held_out_share(cfg) and not held_lines:
        # Else the run goes on judging its epochs, and picking best/, on synthetic lines alone.
        print(f"{cfg.data}: none of its {len(train_lines)} lines is held out to measure on (at "
              f"--hold-out {cfg.held_out:g} one of every {max(2, round(1 / cfg.held_out))} is): the CER "
              "each epoch is of synthetic lines only, which says little about your material; transcribe "
              "more lines, raise --hold-out, or give --val-dir a folder of other transcribed lines",
              flush=True)
    train_lines, held_lines, pages = without_pages(cfg.data, check_line_images(train_lines + held_lines),
                                                   train_lines, held_lines)
    if pages:
        print(pages, flush=True)
    rehearsed = rehearsal_count(len(train_lines), cfg.rehearse)  # 0 for synthetic data: no folder lines
    if cfg.data != "synthetic" and cfg.epochs is not None:
        # Full batches only (a short last batch is dropped), unless the folder fills less than one.
        per_epoch = max(1, (len(train_lines) + rehearsed) // cfg.batch_size)
        cfg.steps = cfg.epochs * per_epoch
        cfg.val_every = per_epoch  # validation once per epoch
    if cfg.freeze_encoder:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        # Its BatchNorm running statistics would still follow the new lines in train mode (and
        # its CTC head read worse): the encoder stays in eval mode whatever model.train() says.
        model.encoder.eval()
        model.encoder.train = lambda mode=True: model.encoder
        cfg.ctc_weight = 0.0  # a frozen encoder has nothing to learn from CTC
    tok = processor.tokenizer
    specials = {t for t in (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) if t is not None}
    params, opt, sched = optimizer_and_schedule(model, cfg)
    step, lines, updates = 0, 0, 0
    history: list[dict[str, Any]] = []
    if resuming:
        step, lines, updates, history = restore(cfg.out_dir, opt, sched)
        print(f"resumed from {cfg.out_dir} at step {step} ({lines} lines seen)", flush=True)
        if step >= cfg.steps:
            print(f"it has run its {cfg.steps} steps already: nothing to train (more --epochs or "
                  "--steps go on; a new --out starts afresh)", flush=True)
    # A run resumed without a saved average starts one from its weights, with the warm-up.
    average = (
        WeightAverage(model, cfg.ema_decay, updates if saved_average else 0, saved_average)
        if cfg.ema_decay
        else None
    )
    val_sets = validation_sets(cfg, processor, held_out=held_lines)
    if "held_out" in val_sets:
        kept = keep_held_out(held_lines, Path(cfg.out_dir) / HELD_OUT_DIR)
        print(f"{len(val_sets['held_out'][1])} of the lines in {cfg.data} are held out to measure CER on "
              f"(--hold-out); they are not trained on. Copies are in {kept}: `quire eval {kept} "
              f"--model {cfg.out_dir}` measures them as quire run reads (the CER printed here is "
              "the decoder's greedy reading)", flush=True)
    if rehearsed:
        print(f"each epoch adds {rehearsed} synthetic lines to the {len(train_lines)} of {cfg.data} (--rehearse "
              f"{cfg.rehearse:g}), so the tuned model keeps reading what the folder lacks", flush=True)
    language_model = source_language_model(cfg)
    if language_model is not None:
        print(f"{language_model} goes with the tuned model; `quire build-lm {cfg.out_dir} --text FILE` "
              "builds one from your own transcriptions instead", flush=True)
    autocast = torch.autocast(
        "cuda" if device == "cuda" else "cpu",
        dtype=torch.bfloat16,
        enabled=use_bf16(cfg.precision, device),
    )
    from tqdm import tqdm

    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not cfg.progress,
        mininterval=1 if sys.stderr.isatty() else 60,
        dynamic_ncols=True,
    )
    model.train()
    stop = stop_on_signals()
    last_save = time.monotonic()
    t0, lines0 = time.monotonic(), lines
    best = best_validation(history)  # a resumed run's best is still the one to beat
    smooth: float | None = None  # the decoder's loss, comparable across models with and without CTC
    smooth_ctc: float | None = None
    scores: dict[str, float] = {}
    # A new seed per resume so a resumed run sees fresh lines, not a replay of the first ones.
    data = batches(
        cfg.data,
        processor,
        channels,
        max_length,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        seed=cfg.seed * 1_000_003 + step,
        start_lines=lines,
        curriculum_lines=cfg.curriculum_lines,
        trim=cuts_padding(model),
        mix=mix,
        ink_cut=cfg.ink_cut,
        lines=train_lines,
        augment=cfg.augment,
        rehearse=cfg.rehearse,  # synthetic data has no folder to rehearse beside
    )
    try:
        if step == 0 and cfg.model != "new":
            # A fine-tune's starting point: how the base model reads the validation lines, so each
            # epoch's CER has something to be compared with.
            history.append({"step": 0, "lines_seen": 0, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            **validate(model, processor, val_sets, channels, device, cfg.decoding)})
            print(json.dumps(history[-1]), flush=True)
            judged = judged_cer(history[-1])
            if judged is not None and beats(judged, best):  # best/ starts as the model started from
                best = (0, judged)
                save_best(model, processor, cfg, 0, judged)
            t0 = time.monotonic()  # lines per second count training only
        while step < cfg.steps:
            batch = next(data)
            pv, labels = batch["pixel_values"].to(device), batch["labels"].to(device)
            with autocast:
                loss, parts = training_loss(model, pv, labels, cfg.ctc_weight, specials)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            if average is not None:
                average.update(model)
            step += 1
            lines += len(batch["texts"])
            smooth = parts["ce"] if smooth is None else 0.98 * smooth + 0.02 * parts["ce"]
            if "ctc" in parts:
                smooth_ctc = parts["ctc"] if smooth_ctc is None else 0.98 * smooth_ctc + 0.02 * parts["ctc"]
            rate = (lines - lines0) / max(1e-9, time.monotonic() - t0)
            bar.update(1)
            bar.set_postfix(
                loss=f"{smooth:.3f}",
                lr=f"{sched.get_last_lr()[0]:.2e}",
                lps=f"{rate:.1f}",
                refresh=False,
            )
            if cfg.log_every and step % cfg.log_every == 0:
                print(
                    json.dumps(
                        {
                            "step": step,
                            "lines_seen": lines,
                            "loss": round(smooth, 4),
                            **({"ctc_loss": round(smooth_ctc, 4)} if smooth_ctc is not None else {}),
                            "lr": float(f"{sched.get_last_lr()[0]:.3g}"),
                            "lines_per_s": round(rate, 2),
                            "time": time.strftime("%H:%M:%S"),
                        }
                    ),
                    flush=True,
                )
            if step % cfg.val_every == 0 or step == cfg.steps:
                # Validation measures what is saved and shipped: the average where there is one.
                with average.applied(model) if average is not None else contextlib.nullcontext():
                    scores = validate(model, processor, val_sets, channels, device, cfg.decoding)
                    judged = judged_cer(scores)
                    if judged is not None and beats(judged, best):
                        best = (step, judged)  # kept apart: later steps may read worse
                        save_best(model, processor, cfg, step, judged)
                history.append(
                    {
                        "step": step,
                        "lines_seen": lines,
                        "loss": round(smooth, 4),
                        **({"ctc_loss": round(smooth_ctc, 4)} if smooth_ctc is not None else {}),
                        "lines_per_s": round(rate, 2),
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        **scores,
                    }
                )
                print(json.dumps(history[-1]), flush=True)
            stopping = stop.is_set()
            # A fine-tune over epochs keeps every epoch: a kill that cannot be caught (kill -9, out
            # of memory, the machine going down) loses the epoch under way, not all that was done
            # since the last timed save (10 minutes: the whole of a small fine-tune).
            epoch_done = cfg.epochs is not None and cfg.data != "synthetic" and step % cfg.val_every == 0
            if time.monotonic() - last_save > cfg.save_every_s or step == cfg.steps or stopping or epoch_done:
                save(model, processor, opt, sched, step, lines, cfg, history, average)
                last_save = time.monotonic()
                print(f"saved step {step} to {cfg.out_dir}", flush=True)
            if stopping:
                break
    finally:
        # Also when a batch failed: the data workers (which ignore Ctrl-C) are shut down and
        # Ctrl-C works again, so the process ends instead of waiting on them.
        data.close()
        stop.restore()
    bar.close()
    print_progress_summary(history)
    for line in best_verdict(history, best, cfg.out_dir):
        print(line, flush=True)
    if step < cfg.steps:
        print(f"stopped at step {step} of {cfg.steps}, saved: the same command goes on from there",
              flush=True)
    return {"step": step, "lines_seen": lines, "loss": smooth, "finished": step >= cfg.steps, **scores}


def print_progress_summary(history: list[dict[str, Any]]) -> None:
    """One line per validation set: CER at the first validation against the last (for a
    fine-tune, the base model's reading against the tuned one's)."""
    if len(history) < 2:
        return
    first, last = history[0], history[-1]
    for key in last:
        if key.startswith("cer_") and key in first:
            name = key.removeprefix("cer_")
            ctc = f"ctc_cer_{name}"
            label = name.replace("_", "-")
            both = f"; CTC head {first[ctc]:.2%} -> {last[ctc]:.2%}" if ctc in first and ctc in last else ""
            print(f"{label} lines: CER {first[key]:.2%} at step {first['step']} -> {last[key]:.2%} at step "
                  f"{last['step']} (decoder, greedy{both})", flush=True)
