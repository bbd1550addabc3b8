"""The process that runs a `quire run` job, recorded with the job, so that a run killed outright
(kill -9, out of memory, a power cut), which can run no code to say so, is told from a live one."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_PROC = Path("/proc")


def this_process() -> dict[str, Any]:
    """Host, boot, pid and start time of this process (boot and start where /proc has them)."""
    pid = os.getpid()
    stat = _stat(pid)
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid,
            "start": stat[1] if stat else None}


def is_gone(recorded: Mapping[str, Any]) -> bool:
    """Whether the process `this_process()` recorded has surely ended: it ran on this host, and
    the machine has restarted since, or no process has its pid, or the one that has it now
    started at another time (the pid was reused), or it is a zombie. False when it cannot be
    told: another host (another machine's processes are not visible here)."""
    if recorded.get("host") != socket.gethostname() or not isinstance(recorded.get("pid"), int):
        return False
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
