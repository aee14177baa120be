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
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import TrialState


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


class Lease:
    """A worker's hold on the trial it runs. With heartbeats, other workers take a trial
    whose heartbeat has been silent for the grace period; its own worker must then stop
    it, and drop what it measured. `lost` says when: the storage no longer shows the
    trial RUNNING (it was taken), or no heartbeat has reached the storage for the grace
    period less one interval (it is about to be taken: stop before another worker starts
    it, so that a point is never trained twice at once)."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        self.storage, self.trial_id = storage, trial_id
        self.on = heartbeats_on(storage)
        interval = storage.get_heartbeat_interval() if self.on else 0  # type: ignore[attr-defined]
        grace = getattr(storage, "grace_period", None) or 2 * interval
        self.interval, self.fence_s = interval, grace - interval
        self.last_ok = time.monotonic()  # the claim recorded the first heartbeat
        self.reason = ""  # why the trial is lost; once lost, never this worker's again

    def beat(self) -> bool:
        try:
            self.storage.record_heartbeat(self.trial_id)  # type: ignore[attr-defined]
        except Exception:  # a database hiccup: try again soon, `lost` tells how long
            return False
        self.last_ok = time.monotonic()
        return True

    def lost(self) -> str:
        """'' while the trial is still this worker's; else why not, as a phrase."""
        if not self.on or self.reason:
            return self.reason  # only heartbeats let a live process's trial be taken
        try:
            state = self.storage.get_trial(self.trial_id).state
        except Exception:  # unknown: the silence below decides
            state = TrialState.RUNNING
        silent = time.monotonic() - self.last_ok
        if state != TrialState.RUNNING:
            self.reason = "another worker took it over when its heartbeat stopped"
        elif silent > self.fence_s:
            self.reason = f"its heartbeat has not reached the storage for {silent:.0f} s"
        return self.reason

    def give_up(self, error: str) -> None:
        """Fail the trial with `error`, so that its point runs again, unless another
        worker has taken it already."""
        self.reason = self.reason or error
        try:
            self.storage.set_trial_user_attr(self.trial_id, "error", error)
            self.storage.set_trial_state_values(self.trial_id, TrialState.FAIL)
        except Exception:  # taken meanwhile, or the storage is unreachable: then the
            pass  # silence of its heartbeat fails it


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial_id: int) -> Iterator[Lease]:
    """While the block runs, tell the storage every few seconds that the trial is alive
    (storages with heartbeats only); a failed beat is tried again after a second."""
    lease = Lease(storage, trial_id)
    if not lease.on:
        yield lease
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease.interval if lease.beat() else 1):
            pass

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        # Not longer: a beat stuck in the database must not hold up the next trial.
        thread.join(timeout=lease.interval)
