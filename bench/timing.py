"""The benches' one way to time: the fastest of several runs, as these machines are noisy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def fastest(fn: Callable[[], T], repeat: int, sync: Callable[[], None] = lambda: None,
            warm_up: bool = True) -> tuple[float, T]:
    """Seconds of the fastest of `repeat` calls of `fn` (after one untimed call when `warm_up`),
    and the last call's result. `sync` waits for queued device work (torch.cuda.synchronize), so
    a GPU's time is counted, not just the launches."""
    if warm_up:
        fn()
        sync()
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        result = fn()
        sync()
        best = min(best, time.perf_counter() - started)
    return best, result


def device_sync(device: str) -> Callable[[], None]:
    """What `fastest` should call to wait for `device`: CUDA runs asynchronously, a CPU does not."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None
