"""numba compilation with its machine code cached on disk where that is possible."""

from __future__ import annotations

from numba import njit


def compiled(function):
    """numba-compiled, the machine code kept on disk where numba finds a writable place (beside
    the module, else the user's cache folder); where it finds none (a read-only install run by a
    user without a home), compiled afresh in each process rather than failing to import."""
    try:
        return njit(cache=True)(function)
    except RuntimeError:
        return njit(function)
