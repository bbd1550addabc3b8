"""Ctrl-C and SIGTERM in `quire run`: the first stops the run in order; a second one ends the
process with exit status 130, promptly, but never halfway through recording the stop.

Python's own handling raises KeyboardInterrupt on every Ctrl-C: a second one while the first was
being handled cut the stop's database writes short, or, once they were done, ended the process by
the signal itself (status -2 to a parent, not 130), as Python's shutdown puts the default handler
back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

EXIT_STATUS = 130  # 128 + SIGINT, what shells report for a command ended by Ctrl-C

again = threading.Event()  # set by a second signal
_signals = 0
_holding = 0  # > 0 while a stop is being recorded: a second signal waits for it to end


def install() -> dict[int, Any]:
    """Route SIGINT and SIGTERM through this module (from the main thread); returns the handlers
    they had, for `restore`."""
    global _signals
    _signals = 0
    again.clear()
    return {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """`install` for the block; the handlers it replaced come back after it, unless it is
    interrupted: the process is ending then, and a second signal must still end it with 130."""
    previous = install()
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException:
        restore(previous)
        raise
    restore(previous)


def _handler(signum: int, frame: Any) -> None:
    global _signals
    _signals += 1
    if _signals == 1:
        raise KeyboardInterrupt
    again.set()
    if not _holding:
        exit_now()


@contextlib.contextmanager
def holding() -> Iterator[None]:
    """Around work that records its own stop when the first signal interrupts it: a second
    signal then only sets `again` (see `wait_for`), and the process ends once the stop is
    recorded and the caller is through (`exit_now`). The first signal still interrupts."""
    global _holding
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1


def wait_for(thread: threading.Thread, seconds: float) -> None:
    """Join `thread` for up to `seconds`, less if a second signal comes: it wants out now."""
    thread.join(0)
    waited = 0.0
    while thread.is_alive() and waited < seconds and not again.is_set():
        thread.join(0.1)
        waited += 0.1


def ignore_more() -> None:
    """Once the stop is recorded and the process is on its way out: Python puts the default
    handlers back while it shuts down, so a signal then would end the process by the signal
    (status -2 to a parent) instead of with 130; ignored, it cannot."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def exit_now() -> NoReturn:
    """End the process with EXIT_STATUS at once: no interpreter shutdown (a thread may still be
    in native code, and a signal during shutdown would end the process by the signal)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(EXIT_STATUS)
