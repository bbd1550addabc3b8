"""Keeping a long CPU run's memory flat while it reads lines of every width.

Each batch of lines has its own shape (its size, its width cut to the widest line's ink), and on
a CPU torch runs the model's layers through oneDNN, which builds a kernel for every shape it meets
and keeps up to 1,024 of them; the activations of each shape are freed into glibc's heap, which
keeps most of what is freed. Left alone, a recognizer's resident memory grew from 0.55 GB to
2.0 GB over 6,000 lines, still rising; bounded here (and trimmed every RELEASE_EVERY_LINES by the
Recognizer) it comes back to about 1.0 GB at each trim and peaks near 1.6 GB between them
(`bench/bench_recognize_memory.py`, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache

# Kernels oneDNN keeps for reuse, a few dozen per batch shape (one per layer). Lines of the same
# widths recur, and rebuilding their kernels is slow: with 64 the dev hands read at 25 lines/s
# instead of 40; 512 reads them at 40 and holds about 110 MB less than oneDNN's own 1,024.
KERNEL_CACHE = "512"


def bound_kernel_cache() -> None:
    """Let oneDNN keep only KERNEL_CACHE kernels, unless the user set ONEDNN_PRIMITIVE_CACHE_CAPACITY.

    oneDNN reads the variable when it makes its first kernel, so this must run before the process's
    first CPU matrix product or convolution (a recognizer's loading is early enough)."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", KERNEL_CACHE)


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim); elsewhere, nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): no malloc_trim
        return None
