"""Whether to run the model under bf16 autocast; here, apart from torch's import, so settings can name the choices."""

from __future__ import annotations

PRECISIONS = ("auto", "bf16", "fp32")
# The --precision help of quire run, recognize and eval.
PRECISION_HELP = ("auto (bf16 autocast on GPUs and on CPUs with native bf16, e.g. AVX512-BF16 or AMX: "
                  "1.2-1.5x faster on CPU, same accuracy), bf16 or fp32.")


def use_bf16(precision: str, device: str) -> bool:
    """Whether to run training or recognition under bf16 autocast.

    auto picks it on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX). There it measured twice
    fp32's training lines per second with the same losses, and 1.2-1.5x fp32's recognition speed
    at the same CER (docs/BENCHMARKS.md); on other CPUs bf16 is emulated and slower.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if device.startswith("cuda"):
        return True
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
