"""A sweep's label: its identity in every view that can hold several sweeps.

A results directory is one sweep. Its label, `<config name>-<MMDD>-<HHMMSS>-<4 hex>` (the
moment the directory became a sweep, and 16 random bits for sweeps started in the same
second), is chosen once and kept on resume (in `sweep.txt`), so
that two sweeps of one config (yesterday's and today's, or two `--out` directories) are
never pooled: TensorBoard's session groups are `<label>/<configuration>` with a `sweep`
column, and each sweep has a Visdom environment of its own.

    label = make_label(out, config.name)   # at the sweep's start
    label = read_label(out)                 # anywhere else; the name alone in old results
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

from harness.files import atomic_write_text, file_lock

FILE = "sweep.txt"


def make_label(out: Path, name: str) -> str:
    """The directory's label, made now when it has none (under its lock: two commands
    on one directory agree)."""
    with file_lock(out / ".lock"):
        label = read_label(out, "")
        if not label:
            label = f"{name}-{datetime.now():%m%d-%H%M%S}-{secrets.token_hex(2)}"
            atomic_write_text(out / FILE, label + "\n")
    return label


def read_label(out: Path, default: str) -> str:
    """The directory's label, or `default` (results of earlier versions have none)."""
    try:
        return (out / FILE).read_text().strip() or default
    except OSError:
        return default
