"""Shared fixtures: small configs, IDX files for MNIST, and a CLI runner; and how the
suite shares the machine.

`make test` runs the test files in parallel, one worker per CPU (pytest-xdist,
`-n auto --dist loadfile`: a file's tests, and its module fixtures, stay on one worker).
Every process torch starts here, the workers and the sweeps they run, uses one thread:
the models are tiny, and two threads per process on a 2-core machine stall at every step
while another process runs. The slowest files start first, so the workers end together.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")  # read as torch loads, after this line


def small_config(name: str = "tiny", **sections: Any) -> dict[str, Any]:
    """A config that trains in a second: synthetic data, 2 epochs, a 2x2 grid."""
    config: dict[str, Any] = {
        "name": name,
        "data": {"dataset": "synthetic", "train_size": 256, "test_size": 128},
        "train": {"epochs": 2, "seed": 0, "device": "cpu"},
        "search": {"method": "grid", "space": {"lr": [0.01, 0.05], "batch_size": [32],
                                               "optimizer": ["sgd", "adam"]}},
        "logging": {"tensorboard": False, "visdom": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


@pytest.fixture
def write_config(tmp_path: Path):
    def write(config: dict[str, Any] | str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
        return path
    return write


# A bare environment, as a login shell gives a command: the project, the system's PATH,
# and the one torch thread every process of the suite uses.
SHELL_ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
             "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` in a subprocess, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def count_trials(db: Path, state: str) -> int:
    """Trials in `state` (RUNNING, COMPLETE...), read with SQLite alone, as any client may
    while a sweep writes: Optuna's own client would create the tables it finds missing,
    racing the sweep that creates them."""
    if not db.exists():
        return 0
    connection = sqlite3.connect(db, timeout=10)
    try:
        return connection.execute("SELECT COUNT(*) FROM trials WHERE state = ?",
                                  (state,)).fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not created yet
        return 0
    finally:
        connection.close()


def write_idx(root: Path, n_train: int = 300, n_test: int = 100, gz: bool = False) -> Path:
    """MNIST's four IDX files with learnable fake digits, where torchvision reads them."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    prototypes = rng.integers(0, 256, size=(10, 28, 28))
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = np.clip(prototypes[labels] + rng.normal(0, 40, (n, 28, 28)), 0, 255)
        _write(raw / f"{prefix}-images-idx3-ubyte",
               struct.pack(">IIII", 0x803, n, 28, 28) + images.astype(np.uint8).tobytes(), gz)
        _write(raw / f"{prefix}-labels-idx1-ubyte",
               struct.pack(">II", 0x801, n) + labels.tobytes(), gz)
    return raw


def _write(path: Path, payload: bytes, gz: bool) -> None:
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server programs (initdb, pg_ctl), if installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server on a free loopback port, in a temporary data directory.
    `make test` installs PostgreSQL where it is missing, so this never skips."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL server programs not found: apt-get install postgresql "
                    "(make test does this)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="harness-pg-", dir="/tmp"))
    if as_postgres:  # initdb refuses root
        shutil.chown(home, "postgres", "postgres")
    data = home / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True)
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c max_connections=100"
    subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                    "-l", str(home / "log"), "-w", "start"], check=True, capture_output=True)
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                    "stop"], capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


def interrupt_epoch(monkeypatch, at: int) -> None:
    """Make the `at`-th training epoch of this process raise KeyboardInterrupt, as a
    Ctrl-C in the middle of a trial would."""
    import harness.trainers.single

    real, calls = harness.trainers.single.train_epoch, []

    def train_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(harness.trainers.single, "train_epoch", train_epoch)


@pytest.fixture
def full_disk():
    """`mount(path, free)`: a small tmpfs at `path`, filled to leave about `free` bytes,
    as a full disk is met; unmounted afterwards. Skips where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(path: Path, free: int = 0, size: str = "4m") -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill ({done.stderr.strip()})")
        mounted.append(path)
        fill(path, free)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path, free: int) -> None:
    """Write a ballast file into `path` until about `free` bytes are left."""
    stats = os.statvfs(path)
    room = stats.f_bavail * stats.f_frsize - free
    with open(path / "ballast", "ab") as f:
        try:
            while room > 0:
                room -= f.write(b"\0" * min(room, 1 << 16))
                f.flush()
        except OSError:
            pass


# The files that take longest (pytest --durations=0), first: `make test` gives the files
# to its workers in this order (--no-loadscope-reorder), and one started last would
# leave the other worker idle while it runs.
SLOWEST_FIRST = ("test_cli.py", "test_distributed.py", "test_readme.py", "test_benchmarks.py",
                 "test_report.py", "test_parallel.py")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: the CPUs this process may run on (xdist counts physical cores where
    psutil is installed, half of them on a machine with two threads per core)."""
    return len(os.sched_getaffinity(0))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a file keeps its order


# `browser`: one headless Chromium per session for the page tests (tests/browser.py).
from browser import browser  # noqa: E402, F401
