"""The process that runs a `quire run` job, recorded with the job, so that a run killed outright
(kill -9, out of memory, a power cut), which can run no code to say so, is told from a live one;
and the heartbeat by which hosts that cannot see that process tell (pipeline.db.runs)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

_PROC = Path("/proc")


def this_process() -> dict[str, Any]:
    """Host, boot, pid and start time of this process (boot and start where /proc has them)."""
    pid = os.getpid()
    stat = _stat(pid)
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid,
            "start": stat[1] if stat else None}


def is_gone(recorded: Mapping[str, Any]) -> bool | None:
    """Whether the process `this_process()` recorded has surely ended: it ran on this host, and
    the machine has restarted since, or no process has its pid, or the one that has it now
    started at another time (the pid was reused), or it is a zombie. None when it cannot be
    told: another host (another machine's processes are not visible here; its heartbeat is)."""
    if recorded.get("host") != socket.gethostname() or not isinstance(recorded.get("pid"), int):
        return None
    boot = _boot_id()
    if recorded.get("boot") and boot and recorded["boot"] != boot:
        return True
    pid = recorded["pid"]
    stat = _stat(pid)
    if stat is not None:
        state, start = stat
        return state in ("Z", "X") or (recorded.get("start") is not None and start != recorded["start"])
    try:  # no /proc (macOS): whether the pid exists at all
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, run by another user
        return False
    return False


def describe(recorded: Mapping[str, Any]) -> str:
    """`pid 1234 on host1`, for messages."""
    return f"pid {recorded.get('pid')} on {recorded.get('host')}"


class Heartbeat:
    """Calls `beat` every `every` seconds on a thread of its own while the `with` block runs,
    so the work never waits on it. A beat that fails (the database busy or away a moment) is
    logged and tried again at the next; `beat` returning False ends the beating."""

    def __init__(self, beat: Callable[[], bool], every: float, what: str) -> None:
        self._beat, self._every, self._what = beat, every, what
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quire-heartbeat", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        # A beat under way is one short UPDATE; a daemon thread never holds the process up.
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._done.wait(self._every):
            try:
                if not self._beat():
                    return
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried, never fatal
                log.warning("%s: heartbeat not recorded (tried again in %g s): %s",
                            self._what, self._every, exc)


def _boot_id() -> str | None:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of a process, from /proc; None if none."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields are counted after it.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])
