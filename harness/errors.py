"""The errors a user sees: bad input (exit 2), each problem one line that names what was
wrong, where, and how to fix it; a full disk (exit 3); one-line warnings. Kept free of
heavy imports, so that the command line reports bad input without loading torch."""

from __future__ import annotations

import errno
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

from harness.types import RETRYABLE

MAX_LINES = 20  # a config with more problems shows the first ones and how many more
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# A CUDA error that leaves the context unusable reads as one of these (torch raises
# AcceleratorError for them since 2.8, a RuntimeError before).
STICKY_CUDA = ("CUDA error", "CUBLAS_STATUS_", "CUDNN_STATUS_", "cuDNN error")


class ConfigError(ValueError):
    """Bad input: one line per problem, each naming the field, the value and the fix."""

    def __init__(self, *lines: str) -> None:
        if len(lines) > MAX_LINES:
            more = len(lines) - MAX_LINES + 1
            lines = (*lines[:MAX_LINES - 1], f"... and {more} more problems; fix these "
                     "and run again to see the rest")
        self.lines = list(lines)
        super().__init__("\n".join(lines))

    def prefixed(self, prefix: str) -> ConfigError:
        """The same problems, each line starting with `prefix` (the file's name)."""
        return ConfigError(*(prefix + line for line in self.lines))


class DataError(RuntimeError):
    """The data set cannot be had; the message says where to put it."""


class SetupError(RuntimeError):
    """The sweep cannot train at all here (the device, the model): exit 1, one line,
    nothing recorded."""


class MachineFault(RuntimeError):
    """The device can no longer compute: a sticky CUDA error (a device-side assert, an
    illegal address) leaves the CUDA context unusable, so every trial after would fail
    the same way. The trials that were running are recorded retryable (they run again
    on resume), then the sweep stops: exit 1, this one line."""

    def __init__(self, err: BaseException, results: Sequence[Any] = ()) -> None:
        super().__init__(f"the device failed ({describe(err)}); the trials that were "
                         "running are saved to run again: run the same command (a new "
                         "process gets a new CUDA context)")
        self.results = list(results)  # the running trials' retryable TrialResults


class DatabaseFull(OSError):
    """SQLite could not write: the disk that holds the study's database is full."""


def no_space(err: BaseException | None) -> OSError | None:
    """The full disk behind `err`, if that is what it is: an OSError saying so anywhere in
    its chain of causes, or SQLite's SQLITE_FULL, or its "disk I/O error" when it cannot
    grow the -shm file of WAL mode (which SQLAlchemy and then Optuna wrap, Optuna's last
    line blaming "invalid data ... exceeding max length")."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            return err
        code = getattr(err, "sqlite_errorcode", None)  # SQLite's extended result code
        if code is not None and (code & 0xFF == sqlite3.SQLITE_FULL
                                 or code == sqlite3.SQLITE_IOERR_SHMSIZE):
            return DatabaseFull(errno.ENOSPC, "No space left on device")
        err = err.__cause__ or err.__context__
    return None


def retryable(err: BaseException) -> str | None:
    """A trial's `error` when a fault of the machine, not of the trial, stopped it: out of
    memory (another process may hold the GPU), a sticky CUDA error, a full disk, a lost
    connection to the storage. Such a trial is not a result: its point runs again.
    None for a fault of the trial's own (divergence, a bad setting, any other error)."""
    fault = _machine_fault(err)
    return None if fault is None else f"{RETRYABLE}: {describe(fault)}"


def _machine_fault(err: BaseException | None) -> BaseException | None:
    """The exception in `err`'s chain of causes that names a machine fault."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        names = {cls.__name__ for cls in type(err).__mro__}
        if (names & {"OutOfMemoryError", "MemoryError", "AcceleratorError",
                     "OperationalError", "ConnectionError"}
                or (isinstance(err, RuntimeError) and any(s in str(err) for s in STICKY_CUDA))
                or (isinstance(err, OSError) and err.errno in NO_SPACE)):
            return err
        err = err.__cause__ or err.__context__
    return None


def sticky_cuda(err: BaseException | None) -> BaseException | None:
    """The sticky CUDA error in `err`'s chain of causes, if there is one: no trial can
    train on the device after it (out of memory is not one: memory can be freed)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        names = {cls.__name__ for cls in type(err).__mro__}
        if "OutOfMemoryError" not in names and (
                "AcceleratorError" in names
                or (isinstance(err, RuntimeError) and any(s in str(err) for s in STICKY_CUDA))):
            return err
        err = err.__cause__ or err.__context__
    return None


def warn(message: str) -> None:
    """One line on stderr for a problem that costs a side output, never a result."""
    print(f"harness: warning: {message}", file=sys.stderr, flush=True)


def describe(err: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def first_line(err: BaseException) -> str:
    """An exception's message's first line; its type's name when it has none."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
