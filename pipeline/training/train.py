"""Fine-tune or train a VisionEncoderDecoder line model on synthetic lines or a folder of *.png + *.gt.txt; resumable."""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import char_lm
from pipeline.config import resolve_model_path
from pipeline.decodings import DECODINGS
from pipeline.model_input import (
    cuts_padding,
    encoder_channels,
    fit_lines,
    input_shape,
    model_batches,
    pixel_values,
)
from pipeline.model_location import locate_model
from pipeline.precision import PRECISIONS, use_bf16
from pipeline.training.averaging import WeightAverage, snapshot
from pipeline.training.data import batches, folder_pairs, rehearsal_count
from pipeline.training.evaluate import cer, line_images, load_pairs, read_gray, transcribed
from pipeline.training.preflight import (  # CHECKPOINT: the resume state's folder in --out
    BEST_DIR,
    CHECKPOINT,
    HELD_OUT_DIR,
    check_line_images,
    check_output_folder,
    earlier_split,
    keep_held_out,
    left_out_notice,
    without_image_notice,
    without_pages,
    without_unwritable_lines,
)
from pipeline.training.synth import LineSynthesizer, parse_mix

# With a weight average the shipped model.safetensors holds the average; the weights training
# goes on from are kept here, in the checkpoint.
TRAINING_WEIGHTS = "training_weights.safetensors"
ATTENTION_MARGIN = 0.9  # the decoder's CER must be below this share of CTC's to be chosen
# What the trained model's decode='auto' means: measured at each validation, or set by hand.
DECODING_CHOICES = ("measure", *(d for d in DECODINGS if d != "auto"))
VAL_SEED = 987_654  # held-out synthetic lines come from a seed the training stream never uses


@dataclass
class TrainConfig:
    """Everything that defines a run; stored in the checkpoint so a resume continues the same run."""

    out_dir: str
    model: str = (
        "new"  # "new" builds LineModelConfig(); else a path or hub name of a VisionEncoderDecoder
    )
    data: str = "synthetic"  # "synthetic" or a folder of *.png + *.gt.txt
    steps: int = 60_000  # total optimizer steps; with --epochs on a folder it is derived
    epochs: int | None = None
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 1000
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999  # the saved model is this running average of the weights; 0: the last step's
    ctc_weight: float = 0.5  # weight of the encoder's CTC loss, for models with a CTC head
    ctc_frames: int | None = None  # widen a loaded model's CTC head to this many frames per token
    freeze_encoder: bool = False
    val_every: int = 500
    curriculum_lines: int = 0  # synthetic text grows from short to full length over this many lines
    mix: str | None = None  # shares of synthetic kinds, "handwritten=0.6,printed=0.25,receipt=0.15"
    ink_cut: float = 0.0  # share of synthetic lines prepared (cut to their ink, upright) as recognition prepares crops
    log_every: int = 50  # a plain log line (the tqdm bar is throttled when not on a terminal)
    val_lines: int = 200
    val_dir: str | None = None
    held_out: float = 0.1  # share of a folder's lines measured, not trained on, when there is no val_dir
    augment: bool = True  # vary a folder's lines every epoch (degrade.vary_scan)
    rehearse: float = 0.25  # share of each epoch over a folder drawn from synthetic lines (data.Rehearsal)
    decoding: str = "measure"  # one of DECODING_CHOICES
    save_every_s: float = 600.0
    num_workers: int = 1
    threads: int = 2
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA and on CPUs with native bf16, else fp32
    resume: bool = True
    progress: bool = True
    size: str = "small"  # the LineModelConfig preset --model new builds (MODEL_SIZES)
    model_overrides: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- model and state


def load_or_build(cfg: TrainConfig) -> tuple[Any, Any, dict[str, torch.Tensor] | None]:
    """The model to train, in float32 (a checkpoint may store bf16 weights to stay small), its
    processor, and on a resume the saved weight average (None where the run kept none)."""
    from safetensors.torch import load_model
    from transformers import AutoProcessor, VisionEncoderDecoderModel

    from pipeline.training.model import LineModelConfig, build_line_model

    out = Path(cfg.out_dir)
    check_output_folder(cfg)
    if cfg.resume and (out / CHECKPOINT / "state.pt").exists():
        source = str(out)
    elif cfg.model == "new":
        frames = {"ctc_frames": cfg.ctc_frames} if cfg.ctc_frames else {}
        sizes = LineModelConfig.preset(cfg.size, **{**cfg.model_overrides, **frames})
        return (*build_line_model(sizes), None)
    elif cfg.size != "small":
        return (*grow(cfg, locate_model(cfg.model)), None)
    else:
        source = locate_model(cfg.model)
    model = VisionEncoderDecoderModel.from_pretrained(source).float()
    average = None
    training_weights = out / CHECKPOINT / TRAINING_WEIGHTS
    if source == str(out) and training_weights.exists():
        average = snapshot(model)  # model.safetensors held the average
        load_model(model, training_weights, strict=True)
    if cfg.ctc_frames:
        if not hasattr(model.encoder, "widen_ctc_head"):
            raise ValueError(
                f"--ctc-frames needs a model with Quire's line encoder; {source} has "
                f"{type(model.encoder).__name__}, which has no CTC head"
            )
        if model.encoder.ctc_frames != cfg.ctc_frames:
            model.encoder.widen_ctc_head(cfg.ctc_frames)
    return model, AutoProcessor.from_pretrained(source), average


# A grow that would take less than this share of the new model's weights is a new model in all
# but name; say so rather than pretend it starts from the trained one.
GROW_AT_LEAST = 0.5


def grow(cfg: TrainConfig, source: str) -> tuple[Any, Any]:
    """A new model of --size that starts from a trained Quire line model's weights wherever a
    tensor of the same name and shape exists (all of them from small to mid); the rest start
    fresh. Says how much was taken, so a size that fits nothing is never mistaken for a grow."""
    from transformers import VisionEncoderDecoderModel

    from pipeline.training.model import LineModelConfig, build_line_model

    trained = VisionEncoderDecoderModel.from_pretrained(source).float()
    if not hasattr(trained.encoder, "widen_ctc_head"):
        raise ValueError(
            f"--size {cfg.size} with --model {cfg.model}: only a Quire line model can be grown to "
            f"another size; {source} has {type(trained.encoder).__name__}. Fine-tune it at its own "
            "sizes (drop --size)"
        )
    frames = cfg.ctc_frames or trained.encoder.ctc_frames
    model, processor = build_line_model(
        LineModelConfig.preset(cfg.size, **{**cfg.model_overrides, "ctc_frames": frames})
    )
    if trained.encoder.ctc_frames != frames:
        trained.encoder.widen_ctc_head(frames)
    theirs = trained.state_dict()
    ours = model.state_dict()
    fits = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    numbers_taken, numbers = (sum(v.numel() for v in d.values()) for d in (fits, ours))
    taken = numbers_taken / numbers
    if len(fits) == len(ours) == len(theirs) and model.encoder.config.image_height == trained.encoder.config.image_height:
        raise ValueError(f"{cfg.model} already has --size {cfg.size}'s sizes: drop --size to "
                         "fine-tune it (a fine-tune keeps its own sizes)")
    if taken < GROW_AT_LEAST:
        raise ValueError(
            f"only {taken:.0%} of --size {cfg.size}'s weights can come from {cfg.model}: train it "
            f"new (--model new --size {cfg.size}), which is what starting from so little amounts to"
        )
    model.load_state_dict(fits, strict=False)
    print(
        f"--size {cfg.size} from {cfg.model}: {len(fits)} of {len(ours)} tensors taken from it "
        f"({numbers_taken:,} of {numbers:,} numbers); the rest start fresh",
        flush=True,
    )
    return model, processor


def training_loss(
    model: Any, pv: torch.Tensor, labels: torch.Tensor, ctc_weight: float, skip: set[int]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Decoder cross-entropy, plus the weighted CTC loss where the encoder has a CTC head."""
    encoder = model.encoder
    if not ctc_weight or getattr(encoder, "ctc_head", None) is None:
        loss = model(pixel_values=pv, labels=labels).loss
        return loss, {"ce": loss.item()}
    encoded = encoder(pixel_values=pv)
    ce = model(encoder_outputs=encoded, labels=labels).loss
    # zero_infinity: a line longer than the encoder's columns adds nothing rather than inf.
    ctc, _ = encoder.ctc_nll(encoded.last_hidden_state, labels, skip, zero_infinity=True)
    return ce + ctc_weight * ctc, {"ce": ce.item(), "ctc": ctc.item()}


def warmup_steps(cfg: TrainConfig) -> int:
    """The run's warm-up: --warmup steps, but at most a tenth of the run (rounded up), so a short
    fine-tune (an epoch over a small folder) warms up within its first steps instead of still
    warming at its end; 0 only where --warmup 0 asks for none."""
    return min(cfg.warmup, math.ceil(cfg.steps / 10)) if cfg.warmup > 0 else 0


def lr_lambda(cfg: TrainConfig) -> Any:
    """The learning rate's share of its peak at each step: linear warm-up, then cosine decay."""
    warmup = warmup_steps(cfg)

    def f(step: int) -> float:
        if step < warmup:
            # The peak comes only after the warm-up: Adam's first steps move every weight by
            # about the learning rate, and a run of a few steps at its peak harms the model it tunes.
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, cfg.steps - warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _compact(state: dict[str, Any]) -> dict[str, Any]:
    """Adam state small enough to commit: second moments in bf16, first moments dropped.

    The first moment (momentum, beta1 0.9) rebuilds itself within a few dozen steps of a resume;
    the second moment scales each weight's step and would take thousands, so it is kept.
    """
    out = {"param_groups": state["param_groups"], "state": {}}
    for k, v in state["state"].items():
        out["state"][k] = {
            n: (t.to(torch.bfloat16) if t.is_floating_point() and t.dim() > 0 else t)
            for n, t in v.items()
            if n != "exp_avg"
        }
    return out


def _expand(state: dict[str, Any]) -> dict[str, Any]:
    """Undo _compact: a zero first moment where it was dropped (load_state_dict casts the rest)."""
    for v in state["state"].values():
        if "exp_avg_sq" in v and "exp_avg" not in v:
            v["exp_avg"] = torch.zeros_like(v["exp_avg_sq"], dtype=torch.float32)
    return state


def save(
    model: Any,
    processor: Any,
    opt: Any,
    sched: Any,
    step: int,
    lines: int,
    cfg: TrainConfig,
    history: list[dict[str, Any]],
    average: WeightAverage | None = None,
) -> None:
    """Write the HF model to out_dir and the resume state to out_dir/checkpoint, each atomically.

    With a weight average, the HF model is the average and the checkpoint keeps the training weights.
    """
    from safetensors.torch import save_model

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / CHECKPOINT).mkdir(parents=True)
    # Weights in bf16: half the size, and inference and training upcast them on load.
    training = copy.deepcopy(model).to(torch.bfloat16)
    if average is None:
        training.save_pretrained(tmp)
        (out / CHECKPOINT / TRAINING_WEIGHTS).unlink(missing_ok=True)  # a stale one would win on resume
    else:
        shipped = copy.deepcopy(model)
        average.copy_to(shipped)
        shipped.to(torch.bfloat16).save_pretrained(tmp)
        save_model(training, str(tmp / CHECKPOINT / TRAINING_WEIGHTS))
    processor.save_pretrained(tmp)
    torch.save(_compact(opt.state_dict()), tmp / CHECKPOINT / "optimizer.pt")
    torch.save(
        {
            "step": step,
            "lines_seen": lines,
            "average_updates": average.updates if average is not None else 0,
            "scheduler": sched.state_dict(),
            "train_config": asdict(cfg),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
        },
        tmp / CHECKPOINT / "state.pt",
    )
    (tmp / CHECKPOINT / "history.json").write_text(json.dumps(history, indent=1))
    language_model = source_language_model(cfg)
    if language_model is not None:
        shutil.copyfile(language_model, tmp / char_lm.FILE_NAME)
    make_readable(tmp)
    for f in tmp.rglob("*"):
        if f.is_file():
            dest = out / f.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)  # atomic per file: a kill mid-save never leaves a torn file
    shutil.rmtree(tmp, ignore_errors=True)


def make_readable(folder: Path) -> None:
    """Give what a save wrote the modes the user's umask gives new files and folders: the
    weights come from a private temp file (0600), and a worker running as another user must
    be able to load the model."""
    umask = os.umask(0)
    os.umask(umask)
    for f in folder.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)


def judged_cer(scores: dict[str, Any]) -> float | None:
    """The CER a validation is judged by: the decoder's mean over the real lines (held out of
    the folder, or --val-dir's), else over the synthetic ones."""
    real = [v for k, v in scores.items() if k.startswith("cer_") and k != "cer_synthetic"]
    chosen = real or ([scores["cer_synthetic"]] if "cer_synthetic" in scores else [])
    return sum(chosen) / len(chosen) if chosen else None


def beats(judged: float, best: tuple[int, float] | None) -> bool:
    """Whether a validation's judged CER makes its model the best so far. Only a lower CER does:
    on a tie the earlier model stays, the one the run started from included, as a step that
    reads no better is no reason to take its changes (a few held-out lines tie often)."""
    return best is None or judged < best[1]


def best_validation(history: list[dict[str, Any]]) -> tuple[int, float] | None:
    """(step, judged CER) of the first of a run's best validations, the starting model's (step 0
    of a fine-tune) included, or None before its first."""
    best: tuple[int, float] | None = None
    for h in history:
        judged = judged_cer(h)
        if judged is not None and beats(judged, best):
            best = (h["step"], judged)
    return best


def best_verdict(history: list[dict[str, Any]], best: tuple[int, float] | None, out_dir: str) -> list[str]:
    """What the end of a run says about its best model: where it is when it is not the last
    step's, and when no step read better than the model the run started from."""
    if best is None or not history or history[-1]["step"] == best[0]:
        return []
    kept = Path(out_dir) / BEST_DIR
    if best[0] > 0:
        return [(f"the best validation was at step {best[0]} (CER {best[1]:.2%}): that model is in {kept}; "
                 f"{out_dir} holds the last step's")]
    last = judged_cer(history[-1])
    at_last = f", the last step {last:.2%}" if last is not None else ""
    said = (f"no step of this run read the validation lines better than the model it started from "
            f"(CER {best[1]:.2%}{at_last}): {kept} holds that model; {out_dir} holds the last step's")
    if last is not None and last > best[1]:
        said = f"warning: {said}. Keep using it, or train again with a lower --lr or on more lines"
    return [said]


def save_best(model: Any, processor: Any, cfg: TrainConfig, step: int, score: float) -> Path:
    """Write the model as it is now to OUT/best, a model folder of its own (config, weights,
    processor, language model), replacing the one there; `best.json` says which step it is."""
    out = Path(cfg.out_dir)
    tmp, best = out / ".best-saving", out / BEST_DIR
    shutil.rmtree(tmp, ignore_errors=True)
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(tmp)
    processor.save_pretrained(tmp)
    language_model = source_language_model(cfg) or out / char_lm.FILE_NAME
    if language_model.is_file():
        shutil.copyfile(language_model, tmp / char_lm.FILE_NAME)
    (tmp / "best.json").write_text(json.dumps({"step": step, "judged_cer": round(score, 4)}) + "\n")
    make_readable(tmp)
    shutil.rmtree(best, ignore_errors=True)
    os.replace(tmp, best)
    return best


def source_language_model(cfg: TrainConfig) -> Path | None:
    """The character language model of the checkpoint being fine-tuned, if it has one: it goes
    with the tuned model (which keeps the tokenizer), unless the output has its own already."""
    if cfg.model == "new" or (Path(cfg.out_dir) / char_lm.FILE_NAME).is_file():
        return None
    path = Path(resolve_model_path(cfg.model)) / char_lm.FILE_NAME
    return path if path.is_file() else None


def held_out_share(cfg: TrainConfig) -> float:
    """The share of a line folder kept out of training to measure on: none for synthetic data,
    nor where --val-dir gives lines to measure on."""
    return cfg.held_out if cfg.data != "synthetic" and not cfg.val_dir else 0.0


def restore(out_dir: str, opt: Any, sched: Any) -> tuple[int, int, int, list[dict[str, Any]]]:
    """Optimizer, scheduler and random state; returns the step, lines seen, the weight average's
    update count and the validation history."""
    ck = Path(out_dir) / CHECKPOINT
    state = torch.load(ck / "state.pt", weights_only=False)
    opt.load_state_dict(_expand(torch.load(ck / "optimizer.pt", weights_only=False)))
    for group in opt.param_groups:
        for p in group["params"]:
            # A layer reshaped since the checkpoint (a widened CTC head) starts its Adam state anew.
            if p in opt.state and opt.state[p]["exp_avg_sq"].shape != p.shape:
                del opt.state[p]
    sched.load_state_dict(state["scheduler"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    hist_file = ck / "history.json"
    history = json.loads(hist_file.read_text()) if hist_file.exists() else []
    updates = int(state.get("average_updates", 0))
    return int(state["step"]), int(state.get("lines_seen", 0)), updates, history


# ---------------------------------------------------------------- validation


@torch.inference_mode()
def recognize_batch(
    model: Any,
    processor: Any,
    images: list[np.ndarray],
    channels: int,
    device: str,
    max_new_tokens: int = 128,
    batch_size: int = 32,
) -> list[str]:
    """Greedy decode gray crops; used for validation during training."""
    was_training = model.training
    model.eval()
    texts = [""] * len(images)
    # Never ask for more tokens than the decoder has positions for.
    limit = int(getattr(model.generation_config, "max_length", None) or max_new_tokens + 1)
    max_length = min(max_new_tokens + 1, limit)
    for chunk, batch in _recognition_batches(model, processor, images, channels, device, batch_size):
        ids = model.generate(pixel_values=batch, max_length=max_length, num_beams=1, do_sample=False)
        for j, text in zip(chunk, processor.tokenizer.batch_decode(ids, skip_special_tokens=True)):
            texts[j] = text
    model.train(was_training)
    return texts


@torch.inference_mode()
def ctc_read_batch(
    model: Any, processor: Any, images: list[np.ndarray], channels: int, device: str,
    batch_size: int = 32,
) -> list[str]:
    """Read gray crops with the encoder's CTC head alone (best path)."""
    was_training = model.training
    model.eval()
    texts = [""] * len(images)
    for chunk, batch in _recognition_batches(model, processor, images, channels, device, batch_size):
        for j, (text, _) in zip(chunk, model.encoder.ctc_read(batch, processor.tokenizer)):
            texts[j] = text
    model.train(was_training)
    return texts


def _recognition_batches(
    model: Any, processor: Any, images: list[np.ndarray], channels: int, device: str, batch_size: int
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(indices into `images`, pixel_values) batches, formed and cut as recognition forms them."""
    trim = cuts_padding(model)
    shape = input_shape(processor, channels)
    lines = fit_lines(images, shape)
    for chunk, batch in model_batches(lines, shape, batch_size, trim):
        yield chunk, pixel_values(batch, shape, processor, trim).to(device)


def validate(
    model: Any,
    processor: Any,
    sets: dict[str, tuple[list[np.ndarray], list[str]]],
    channels: int,
    device: str,
    decoding: str = "measure",
) -> dict[str, float]:
    """CER per set of the decoder and, where the encoder has a CTC head, of the CTC reading.

    It also notes in the model's config how recognition's decode='auto' reads: `decoding`, or
    with 'measure' whichever of the two reads the validation lines better (the real lines of
    --val-dir where given: the synthetic ones flatter the decoder, which learns their language).
    """
    scores: dict[str, float] = {}
    has_ctc = getattr(model.encoder, "ctc_head", None) is not None
    judged = [name for name in sets if name != "synthetic"] or ["synthetic"]
    judged_refs: list[str] = []
    judged_reads: dict[str, list[str]] = {"attention": [], "ctc": []}
    for name, (images, refs) in sets.items():
        hyps = recognize_batch(model, processor, images, channels, device)
        scores[f"cer_{name}"] = round(cer(refs, hyps), 4)
        if has_ctc:
            ctc_hyps = ctc_read_batch(model, processor, images, channels, device)
            scores[f"ctc_cer_{name}"] = round(cer(refs, ctc_hyps), 4)
            if name in judged:
                judged_refs.extend(refs)
                judged_reads["attention"].extend(hyps)
                judged_reads["ctc"].extend(ctc_hyps)
    if has_ctc and decoding != "measure":
        model.config.quire_decoding = decoding
    elif has_ctc and judged_refs and getattr(model.config, "quire_decoding", None) != "rescore":
        # A model set to 'rescore' (the shipped one) reads with both heads and keeps doing so.
        # CTC reads 2-3.5x faster than the decoder (dev sets), so the decoder must earn its cost:
        # it is chosen only when clearly better (a tenth lower CER), not on a few lines' noise.
        attention_cer, ctc_cer = (cer(judged_refs, judged_reads[m]) for m in ("attention", "ctc"))
        clearly = attention_cer < ATTENTION_MARGIN * ctc_cer
        model.config.quire_decoding = "attention" if clearly else "ctc"
    return scores


def validation_sets(
    cfg: TrainConfig, processor: Any, seed: int = VAL_SEED, held_out: Sequence[tuple[Path, str]] = ()
) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    """cfg.val_lines synthetic lines from `seed`, the line pairs of cfg.val_dir and each folder in
    it, and `held_out`, the lines held out of a training folder (`held_out_share`)."""
    shape = input_shape(processor, 1)  # the size only
    synth = LineSynthesizer(shape.height, shape.width, seed=seed)
    samples = [synth.sample() for _ in range(cfg.val_lines)]
    sets = {"synthetic": ([s.image for s in samples], [s.text for s in samples])}
    if cfg.val_dir:
        for sub in [
            Path(cfg.val_dir),
            *sorted(p for p in Path(cfg.val_dir).iterdir() if p.is_dir()),
        ]:
            pairs = load_pairs(sub)
            if pairs:
                sets[sub.name] = ([read_gray(p) for p, _ in pairs], [t for _, t in pairs])
    if held_out:
        sets["held_out"] = ([read_gray(p) for p, _ in held_out], [t for _, t in held_out])
    return sets


# ---------------------------------------------------------------- loop


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
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
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
    from tqdm import tqdm  # type: ignore[import-untyped]

    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not cfg.progress,
        mininterval=1 if sys.stderr.isatty() else 60,
        dynamic_ncols=True,
    )
    model.train()
    stop = _stop_on_signals()
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


class _StopFlag(threading.Event):
    """Set by SIGTERM/SIGINT; `restore` puts the handlers back as they were."""

    def __init__(self) -> None:
        super().__init__()
        self.previous: dict[int, Any] = {}

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


STOPPING = (b"\nstopping after this step, with a checkpoint (a validation under way finishes first); "
            b"Ctrl-C again stops at once, keeping only the last checkpoint\n")


def _stop_on_signals() -> _StopFlag:
    """SIGTERM/SIGINT end the run after the current step, with a checkpoint, so nothing is lost.
    The first says so at once (a validation can take minutes on a CPU, and a Ctrl-C that seems
    unheard gets pressed again, then killed); a second stops at once (KeyboardInterrupt)."""
    stop = _StopFlag()

    def handle(*_: Any) -> None:
        if stop.is_set():
            stop.restore()
            raise KeyboardInterrupt
        stop.set()
        os.write(sys.stderr.fileno(), STOPPING)  # not print: the handler may run inside one

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            stop.previous[sig] = signal.signal(sig, handle)
    return stop


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    from pipeline.training.model import MODEL_SIZES

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, dest="out_dir")
    p.add_argument("--model", default="new")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--size", default="small", choices=tuple(MODEL_SIZES))
    for name, typ in (
        ("steps", int),
        ("epochs", int),
        ("batch-size", int),
        ("lr", float),
        ("warmup", int),
        ("val-every", int),
        ("log-every", int),
        ("val-lines", int),
        ("save-every-s", float),
        ("num-workers", int),
        ("threads", int),
        ("seed", int),
        ("curriculum-lines", int),
        ("ctc-weight", float),
        ("ema-decay", float),
        ("ctc-frames", int),
        ("ink-cut", float),
    ):
        p.add_argument(
            f"--{name}", type=typ, default=getattr(TrainConfig, name.replace("-", "_"), None)
        )
    p.add_argument("--val-dir", default=None)
    p.add_argument("--mix", default=None)
    p.add_argument("--decoding", default="measure", choices=DECODING_CHOICES)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--freeze-encoder", action="store_true")
    p.add_argument("--hold-out", dest="held_out", type=float, default=TrainConfig.held_out)
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--rehearse", type=float, default=TrainConfig.rehearse)
    p.add_argument("--no-resume", dest="resume", action="store_false")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return TrainConfig(**vars(p.parse_args(argv)))


if __name__ == "__main__":
    print(json.dumps(train(parse_args())), flush=True)
