"""Which process runs a trial, and whether that process is still alive.

Every trial records its owner as host:pid:start-time. A RUNNING trial whose owner is a
dead process on this host was cut off (kill -9, a power cut) and is run again.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name; [] when unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _start_time(pid: int) -> str:
    """The kernel's start time of `pid`, which tells a reused pid apart."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""


def this_process() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def is_dead_here(owner: str) -> bool:
    """True when `owner` names a process on this host that no longer runs. Owners on
    other hosts are never called dead here: their trials are left to heartbeats."""
    parts = owner.split(":")
    if len(parts) < 3:
        return False
    host, pid_text, started = ":".join(parts[:-2]), parts[-2], parts[-1]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    fields = _stat(pid)
    if fields and fields[0] == "Z":  # killed, not yet reaped by its parent
        return True
    return bool(started) and _start_time(pid) != started
