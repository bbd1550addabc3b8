"""A training run's settings (TrainConfig, stored in its checkpoint) and what follows from them alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.decodings import DECODINGS

# What the trained model's decode='auto' means: measured at each validation, or set by hand.
DECODING_CHOICES = ("measure", *(d for d in DECODINGS if d != "auto"))


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


def held_out_share(cfg: TrainConfig) -> float:
    """The share of a line folder kept out of training to measure on: none for synthetic data,
    nor where --val-dir gives lines to measure on."""
    return cfg.held_out if cfg.data != "synthetic" and not cfg.val_dir else 0.0
