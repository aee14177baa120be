"""`harness tensorboard DIR [DIR ...]`: TensorBoard over several sweeps, side by side.

TensorBoard reads one folder. This builds one: each sweep's trial runs, linked under the
label `compare` gives its directory (`a/quick/0000-sgd-lr0.01-bs32-s0`), and one
experiment summary of its own whose domains list every sweep (a checkbox each) and every
value of the text hyperparameters, so the HParams filters can select any sweep's runs.
Each sweep's own summary (and graph) at the root of its tb/ is left out: TensorBoard
keeps the first summary it finds, and that must be this one. Runs that appear while a
sweep goes on are linked as they come; Ctrl-C stops it all.

    serve([Path("results/a"), Path("results/b")], port=6006)
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO

import pandas as pd
import yaml

from harness.config import Config
from harness.errors import ConfigError
from harness.hyperparams import BY_NAME
from harness.label import read_label
from harness.parse import parse_config
from harness.reporting.saved import sweep_labels
from harness.sinks.tensorboard import SWEEP, experiment, setup_tensorboard
from harness.space import Range

RELINK_S = 5.0  # how often runs that appeared since are linked
START_S = 60.0  # how long TensorBoard may take to answer


@dataclasses.dataclass(frozen=True)
class Sweep:
    tb: Path  # its tb/ directory
    label: str  # compare's label: where its runs appear
    own: str  # its own label (harness.label): the sweep column and its session groups
    config: Config


def serve(dirs: list[Path], port: int) -> None:
    """Link the sweeps' runs, write the summary, run TensorBoard on 127.0.0.1 until
    Ctrl-C; print its URL once it answers."""
    sweeps = read(dirs)
    setup_tensorboard()
    with tempfile.TemporaryDirectory(prefix="harness-tensorboard-") as folder:
        root = Path(folder)
        write_summary(root, sweeps)
        link(root, sweeps)
        port = port or _free_port()
        log = tempfile.TemporaryFile("w+")  # what TensorBoard says, read if it fails
        server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir",
                                   str(root), "--host", "127.0.0.1", "--port", str(port),
                                   "--reload_interval", str(int(RELINK_S))],
                                  stdout=subprocess.DEVNULL, stderr=log, text=True)
        try:
            url = _wait(server, port, log)
            print(f"TensorBoard on {url} over {', '.join(s.label for s in sweeps)} "
                  "(Ctrl-C stops it)", flush=True)
            while server.poll() is None:
                time.sleep(RELINK_S)
                link(root, sweeps)
        finally:
            server.terminate()
            server.wait()
            log.close()


def read(dirs: list[Path]) -> list[Sweep]:
    """The sweeps to show; a directory that holds none is bad input, one line."""
    labels = sweep_labels(dirs)
    sweeps = []
    for path, label in zip(dirs, labels, strict=True):
        tb = path / "tb"
        if not (path / "config.yaml").is_file() or not tb.is_dir():
            raise ConfigError(f"{path}: holds no sweep with TensorBoard runs (no config.yaml "
                              "and tb/); give a directory a sweep wrote with "
                              "logging.tensorboard on, such as results/quickstart")
        try:
            config = parse_config(yaml.safe_load((path / "config.yaml").read_text()))
        except (ConfigError, yaml.YAMLError):
            raise ConfigError(f"{path}/config.yaml: not a config this version reads; give "
                              "a directory a sweep wrote") from None
        sweeps.append(Sweep(tb, label, read_label(path, config.name), config))
    twins = {s.own for s in sweeps if [t.own for t in sweeps].count(s.own) > 1}
    if twins:
        print(f"harness: warning: {', '.join(sorted(twins))}: copies of one sweep (the same "
              "label); TensorBoard pools their session groups", file=sys.stderr)
    return sweeps


def link(root: Path, sweeps: list[Sweep]) -> None:
    """Each sweep's trial runs under its label; those linked already are left alone."""
    for sweep in sweeps:
        target = root / sweep.label
        target.mkdir(parents=True, exist_ok=True)
        for run in sweep.tb.iterdir():
            if run.is_dir() and not (target / run.name).exists():
                (target / run.name).symlink_to(run.resolve(), target_is_directory=True)


def write_summary(root: Path, sweeps: list[Sweep]) -> None:
    """One experiment summary for all: every sweep's searched hyperparameters; a
    checkbox per sweep and per value of every text hyperparameter, in order."""
    from torch.utils.tensorboard import SummaryWriter

    space: dict[str, tuple | Range] = {}
    for sweep in sweeps:
        space |= sweep.config.search.space
    first = sweeps[0].config
    config = dataclasses.replace(first, search=dataclasses.replace(first.search, space=space))
    domains = {SWEEP: tuple(dict.fromkeys(s.own for s in sweeps))}
    for name in space:
        values = _values(sweeps, name) if BY_NAME[name].kind is int else None
        if values is not None:
            domains[name] = values
    with SummaryWriter(str(root)) as writer:
        writer.file_writer.add_summary(experiment(config, domains))


def _values(sweeps: list[Sweep], name: str) -> tuple[str, ...] | None:
    """Every value an integer hyperparameter may take in these sweeps, smallest first,
    as the runs write it (text): each config's listed values, with those its trials hold.
    None when a sweep searches it over a range: a range's values are not all known
    ahead, and a checkbox list would hide the runs of those that come later."""
    values: set[int] = set()
    for sweep in sweeps:
        listed = sweep.config.search.space.get(name)
        if isinstance(listed, Range):
            return None
        values |= set(listed or ())
        try:
            trials = pd.read_csv(sweep.tb.parent / "trials.csv", usecols=[name])
        except (OSError, ValueError):
            continue
        values |= {int(v) for v in trials[name].dropna()}
    return tuple(str(v) for v in sorted(values))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(server: subprocess.Popen, port: int, log: IO[str]) -> str:
    """The URL once TensorBoard answers; a server that exits (a port taken) is one
    line of bad input."""
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_S
    while True:
        if server.poll() is not None:
            log.seek(0)
            said = log.read().strip().splitlines()
            reason = said[-1] if said else f"exit {server.returncode}"
            raise ConfigError(f"--port: TensorBoard could not start on {port} ({reason}); "
                              "pass another --port")
        try:
            urllib.request.urlopen(url + "/data/runs", timeout=2)
            return url
        except OSError:
            if time.monotonic() > deadline:
                raise ConfigError(f"TensorBoard did not answer on {url} in "
                                  f"{START_S:.0f} s") from None
            time.sleep(0.3)
