"""Which process runs a trial, and whether that process is still alive.

Every trial records its owner as host:pid:start-time. A RUNNING trial whose owner is a
dead process on this host was cut off (kill -9, a power cut) and is run again. Across
machines, a database storage gets heartbeats: a trial whose heartbeat stops is failed by
the other workers (Optuna's fail_stale_trials) and run again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import optuna


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


def heartbeats_on(storage: optuna.storages.BaseStorage) -> bool:
    """Optuna's database storage keeps heartbeats when given an interval."""
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    return isinstance(interval, int)


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial_id: int) -> Iterator[None]:
    """While the block runs, tell the storage every few seconds that the trial is alive
    (storages with heartbeats only). Workers on other machines fail a trial whose
    heartbeat stops, and its point runs again."""
    if not heartbeats_on(storage):
        yield
        return
    interval = storage.get_heartbeat_interval() or 60  # type: ignore[attr-defined]
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            except Exception:  # a database hiccup must not end the trial
                pass
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
