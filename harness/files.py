"""Atomic file writes: a crash leaves the old file or the new one, never half of one;
appends of whole lines, and a check that a file still ends on a whole line. Every file
gets the mode the process's umask gives a new file."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

# A new file's mode before the umask, as open() and other tools create files: with the
# usual umask 022 others can read the results (0644), with 077 they cannot (0600).
NEW_FILE = 0o666


def _atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temporary file. An OSError from writing names `path`: a failed
    write() names no file at all, and a full disk must say which file it stopped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, NEW_FILE & ~umask())  # mkstemp's 0600 would stay after the rename
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it: reading
    it that way would race with other threads creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)  # no /proc: set and restore
    os.umask(old)
    return old


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


def atomic_write_csv(path: Path, frame: pd.DataFrame) -> None:
    _atomic(path, lambda f: f.write(frame.to_csv(index=False).encode()))


def append_lines(path: Path, text: str) -> int:
    """Append `text` (whole lines) in one write and fsync; return the file's new size.
    O_APPEND puts each write at the end whole, beside other processes' appends. A
    process killed inside the write can still leave part of it (the kernel may stop a
    write at a page boundary): writers check `ends_whole` before they add to a file."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, NEW_FILE)
    try:
        written = 0
        while written < len(data):  # a short write is finished, not left half
            written += os.write(fd, data[written:])
        os.fsync(fd)
        return os.fstat(fd).st_size
    except OSError as err:  # a full disk must say which file it stopped
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    finally:
        os.close(fd)


def ends_whole(path: Path) -> bool:
    """Whether the file exists and ends with a newline (its last line was not cut)."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:  # missing, or empty (seek before the start)
        return False


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save into memory first: writing straight to a file, a full disk surfaces as
    `RuntimeError: ... unexpected pos` rather than as the OSError it is."""
    import torch  # here: reading results (compare, report, export) needs no torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _atomic(path, lambda f: f.write(buffer.getbuffer()))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes on this machine, held for the `with` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
