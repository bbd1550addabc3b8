"""An exponential moving average of a model's weights: the weights Quire ships from a training run.

On small batches the weights wander from step to step, and a checkpoint taken at any one step
reads a few characters better or worse than its neighbours by chance. The average over the last
~1/(1-decay) steps is steadier and usually a little better, at the cost of one extra copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class WeightAverage:
    """Float32 running average of every floating tensor in `model.state_dict()`."""

    def __init__(
        self,
        model: torch.nn.Module,
        decay: float,
        updates: int = 0,
        start: dict[str, torch.Tensor] | None = None,
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must be between 0 and 1, not {decay}")
        self.decay = decay
        self.updates = updates
        start = start or {}
        self.shadow: dict[str, torch.Tensor] = {}
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                # A tensor reshaped since the average was saved (a widened CTC head) starts anew.
                kept = start.get(name)
                source = kept if kept is not None and kept.shape == value.shape else value
                self.shadow[name] = source.detach().to(value.device, torch.float32, copy=True)

    def current_decay(self) -> float:
        # Early on the average would be dominated by the starting weights; this warm-up lets it
        # follow closely at first (decay 0.18 after one update) and reach `decay` over time.
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        state = model.state_dict()
        names = list(self.shadow)
        torch._foreach_lerp_(
            [self.shadow[n] for n in names],
            [state[n].detach().float() for n in names],
            1.0 - self.current_decay(),
        )

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow, strict=False)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """The averaged weights in `model` for the block (validation, saving); the training ones after."""
        training = snapshot(model)
        self.copy_to(model)
        try:
            yield
        finally:
            model.load_state_dict(training, strict=False)


def snapshot(model: Any) -> dict[str, torch.Tensor]:
    """A detached copy of the model's floating weights (to start an average from)."""
    return {n: t.detach().clone() for n, t in model.state_dict().items() if t.is_floating_point()}
