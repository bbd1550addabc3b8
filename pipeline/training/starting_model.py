"""The model a run starts from: built new, loaded to resume or fine-tune, or grown to another size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.model_location import locate_model
from pipeline.training.averaging import snapshot
from pipeline.training.checkpoint import TRAINING_WEIGHTS
from pipeline.training.preflight import CHECKPOINT, check_output_folder
from pipeline.training.run_config import TrainConfig


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
