"""What a training step minimises and how: the loss, AdamW's parameter groups, the LR schedule."""

from __future__ import annotations

import math
from typing import Any

import torch

from pipeline.training.run_config import TrainConfig


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


def optimizer_and_schedule(model: Any, cfg: TrainConfig) -> tuple[list[Any], Any, Any]:
    """The trainable parameters, AdamW over them (no weight decay on biases and norms) and its
    learning-rate schedule (`lr_lambda`)."""
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
    return params, opt, sched
