"""Stopping a run cleanly: SIGTERM/SIGINT end it after the current step, a second one at once."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any


class StopFlag(threading.Event):
    """Set by SIGTERM/SIGINT; `restore` puts the handlers back as they were."""

    def __init__(self) -> None:
        super().__init__()
        self.previous: dict[int, Any] = {}

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


STOPPING = (b"\nstopping after this step, with a checkpoint (a validation under way finishes first); "
            b"Ctrl-C again stops at once, keeping only the last checkpoint\n")


def stop_on_signals() -> StopFlag:
    """SIGTERM/SIGINT end the run after the current step, with a checkpoint, so nothing is lost.
    The first says so at once (a validation can take minutes on a CPU, and a Ctrl-C that seems
    unheard gets pressed again, then killed); a second stops at once (KeyboardInterrupt)."""
    stop = StopFlag()

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
