"""The whole CLI sweep at population speed, end to end, as a user runs it:

    PYTHONPATH=. python benchmarks/sweep_gpu.py --device cuda --out DIR
    PYTHONPATH=. python benchmarks/sweep_gpu.py --device cpu --small --out DIR   # CI-sized

In one run, each as `python -m harness sweep CONFIG --quiet --visdom off` in a child
process with TensorBoard on (as by default) and HARNESS_PROFILE set (harness.timings):

  grid-1         a 64-point grid (4 optimizers x 16 learning rates, batch 64), 1 epoch
  grid-5         the same grid, 5 epochs
  optuna         100 trials of TPE with median pruning, 5 epochs; lr (log range), batch
                 size (64, 128, 256) and optimizer (4) searched
  one-at-a-time  grid-1 with --population off (its first --sequential-points points)
  ceiling        benchmarks/population.py's fused trainer alone, the same K, 1 epoch

Data: 60,000 training and 10,000 test digits written as MNIST's IDX files
(benchmarks/common.py: mnist-5k's real digits repeated), unless --small (2,400 and 500,
and fewer points). For each sweep it prints and writes (DIR/sweep_gpu.csv,
DIR/summary.txt):

  - trials per hour over the process's wall time, and while its trials run (the first
    claim to the last result recorded): the one to hold against the fused ceiling, a
    trainer with no start-up;
  - population occupancy: mean live members / K over the fused steps, the members of
    all the sweep's populations (one per fusable key) counted at each step; and step
    fill: the members of the population that steps / K, what one fused step holds (a
    grid of four optimizers fills its K places with four populations of K/4);
  - where the time goes, from HARNESS_PROFILE (harness/timings.py): fused compute, each
    kind of per-member bookkeeping on the training path and off it (a population's
    bookkeeping thread), claims and Optuna, start-up (launch to the first claim) and
    the ending (the last result recorded to exit);
  - bookkeeping per trial: the time on the training path (the main thread) while the
    trials run that is neither fused compute, nor claims, nor a population's
    regrouping, divided by the trials.

Targets, on a GPU: grid-1 at >= 0.7x the ceiling's trials per hour, the Optuna search
in < 60 s; on the CPU (--small --population 32): bookkeeping per trial of grid-5 at
most 25 ms. On a small shared machine pass --threads 1: torch's two threads stall at
every step while another process runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from common import digits_60k, write_idx

from harness.timings import ENV, occupancy

ROOT = Path(__file__).resolve().parents[1]

OPTIMIZERS = ["sgd", "adam", "adamw", "rmsprop"]
# Regions of harness.timings that are not bookkeeping: the rest of the trial phase is.
NOT_BOOKKEEPING = ("fused compute", "claims and optuna", "population regroup")
FULL = {"train": 60_000, "test": 10_000, "lrs": 16, "trials": 100}
SMALL = {"train": 2_400, "test": 500, "lrs": 8, "trials": 32}


def write_data(root: Path, train: int, test: int) -> None:
    """`train` digits as MNIST's training files and `test` others as its test files."""
    x, y = digits_60k()
    write_idx(root, x[:train], y[:train])
    pixels = ((x[-test:, 0] * 0.3081 + 0.1307) * 255).round().clamp(0, 255).byte().numpy()
    raw = root / "MNIST" / "raw"
    (raw / "t10k-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x803, test, 28, 28) + pixels.tobytes())
    (raw / "t10k-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x801, test) + y[-test:].numpy().astype(np.uint8).tobytes())


def grid_config(name: str, epochs: int, lrs: int, root: Path, device: str) -> dict[str, Any]:
    rates = [float(f"{v:.3g}") for v in np.geomspace(1e-3, 0.3, lrs)]
    return {"name": name, "data": {"dataset": "mnist", "root": str(root)},
            "train": {"epochs": epochs, "seed": 0, "device": device},
            "search": {"method": "grid", "space": {"lr": rates, "batch_size": [64],
                                                   "optimizer": OPTIMIZERS}},
            "logging": {"tensorboard": True, "visdom": False}}


def optuna_config(trials: int, root: Path, device: str) -> dict[str, Any]:
    return {"name": "optuna", "data": {"dataset": "mnist", "root": str(root)},
            "train": {"epochs": 5, "seed": 0, "device": device},
            "search": {"method": "optuna", "n_trials": trials, "sampler": "tpe",
                       "pruner": "median",
                       "space": {"lr": {"low": 1e-4, "high": 0.3, "log": True},
                                 "batch_size": [64, 128, 256], "optimizer": OPTIMIZERS}},
            "logging": {"tensorboard": True, "visdom": False}}


def run_sweep(config: dict[str, Any], out: Path, device: str, population: str,
              timeout: float) -> dict[str, Any]:
    """One CLI sweep in a child process; its row: wall time, trials, occupancy, regions."""
    path = out / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    profile = out / f"{config['name']}.profile.json"
    results = out / config["name"]
    command = [sys.executable, "-m", "harness", "sweep", str(path), "--out", str(results),
               "--quiet", "--visdom", "off", "--device", device, "--population", population]
    launched = time.time()
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT),
                                        ENV: str(profile)},
                          capture_output=True, text=True, timeout=timeout)
    exited = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{config['name']}: the sweep failed ({done.returncode}):\n"
                         f"{done.stderr}")
    report = json.loads(profile.read_text())
    trials = len(pd.read_csv(results / "trials.csv"))
    epochs = len(pd.read_csv(results / "history.csv"))  # trained: pruned trials stop early
    return row(config["name"], report, trials, exited - launched, launched, exited,
               epochs / max(trials, 1))


def row(name: str, report: dict[str, Any], trials: int, wall: float, launched: float,
        exited: float, epochs: float) -> dict[str, Any]:
    seconds, moments = report["seconds"], report["moments"]
    first, last = moments.get("trials_start", launched), moments.get("trials_end", exited)
    busy = sum(seconds.get(region, 0.0) for region in NOT_BOOKKEEPING)
    counters = report["counters"]
    fill = counters.get("trained_member_steps", math.nan) / max(
        counters.get("fused_steps", 0) * counters.get("population", 0), 1)
    return {"sweep": name, "trials": trials, "epochs": epochs,  # per trial, trained
            "wall_s": wall,
            "trials_per_hour": 3600 * trials / wall,
            "running_trials_per_hour": 3600 * trials / (last - first),
            "occupancy": occupancy(counters),
            "step_fill": fill,
            "startup_s": first - launched, "ending_s": exited - last,
            "bookkeeping_ms_per_trial": 1000 * (last - first - busy) / max(trials, 1),
            **{f"{region} (s)": value for region, value in sorted(seconds.items())}}


def ceiling(args: argparse.Namespace, train: int, evaluated: int) -> dict[str, Any]:
    """benchmarks/population.py's best fused trainer at K members, 1 epoch."""
    out = args.out / "ceiling"
    conv = "grouped" if args.device.startswith("cuda") else "loop"
    command = [sys.executable, str(ROOT / "benchmarks" / "population.py"), "--device",
               args.device, "--members", str(args.population), "--epochs", "1",
               "--train-size", str(train), "--eval-size", str(evaluated), "--conv", conv,
               "--sequential-trials", "1", "--out", str(out)]
    started = time.time()
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise SystemExit(f"ceiling: population.py failed:\n{done.stderr}")
    table = pd.read_csv(out / "population.csv")
    fused = table[(table["mode"] == "fused") & (table["members"] == args.population)]
    best = fused["trials_per_hour"].max()
    return {"sweep": "ceiling", "trials": args.population, "epochs": 1,
            "wall_s": time.time() - started, "trials_per_hour": best,
            "running_trials_per_hour": best, "occupancy": 1.0, "step_fill": 1.0}


def summary(table: pd.DataFrame, header: str, device: str) -> str:
    """The table and the targets in words."""
    rows = table.set_index("sweep")
    lines = [header, ""]
    with pd.option_context("display.width", 250, "display.max_columns", 40,
                           "display.float_format", "{:,.3g}".format):
        lines.append(rows.T.to_string())
    per_epoch = {name: r["trials_per_hour"] * r["epochs"] for name, r in rows.iterrows()}
    running = {name: r["running_trials_per_hour"] * r["epochs"]
               for name, r in rows.iterrows()}
    top = per_epoch["ceiling"]
    lines.append("")
    for name in ("grid-1", "grid-5"):
        lines.append(f"{name}: {running[name] / top:.2f}x the fused ceiling's trial-epochs "
                     f"per hour while its trials run, {per_epoch[name] / top:.2f}x over the "
                     "process's wall time (target on a GPU: >= 0.7x)")
    lines.append(f"optuna: {rows.loc['optuna', 'wall_s']:.1f} s for "
                 f"{rows.loc['optuna', 'trials']:.0f} trials (target on a GPU: < 60 s)")
    lines.append(f"grid-5 bookkeeping per trial: "
                 f"{rows.loc['grid-5', 'bookkeeping_ms_per_trial']:.1f} ms (target on the "
                 "CPU, --small --population 32: <= 25 ms)")
    lines.append(f"grid-1 against one at a time: "
                 f"{per_epoch['grid-1'] / per_epoch['one-at-a-time']:.1f}x trials per hour"
                 f" ({device})")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    sizes = SMALL if args.small else FULL
    lrs, trials = args.lrs or sizes["lrs"], args.trials or sizes["trials"]
    train = args.train_size or sizes["train"]
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.out / "data"
    write_data(root, train, sizes["test"])
    population = str(args.population)
    rows = []
    for config, pop in ((grid_config("grid-1", 1, lrs, root, args.device), population),
                        (grid_config("grid-5", 5, lrs, root, args.device), population),
                        (optuna_config(trials, root, args.device), population)):
        rows.append(run_sweep(config, args.out, args.device, pop, args.timeout))
        print(f"{config['name']}: {rows[-1]['wall_s']:.1f} s, occupancy "
              f"{rows[-1]['occupancy']:.2f}", flush=True)
    sequential = grid_config("one-at-a-time", 1, lrs, root, args.device)
    sequential["search"]["space"]["lr"] = sequential["search"]["space"]["lr"][
        :max(1, args.sequential_points // len(OPTIMIZERS))]
    rows.append(run_sweep(sequential, args.out, args.device, "off", args.timeout))
    val = round(train * 0.1)
    rows.append(ceiling(args, train - val, (val + sizes["test"]) // 2))
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "sweep_gpu.csv", index=False)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    header = (f"{name}, torch {torch.__version__}; population {args.population}; "
              f"{train:,} training digits ({'--small' if args.small else 'full'})")
    text = summary(table, header, args.device)
    print(text)
    (args.out / "summary.txt").write_text(text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default cuda)")
    parser.add_argument("--small", action="store_true", help="CI-sized: 2,400 training "
                        "digits, 8 learning rates, 32 Optuna trials")
    parser.add_argument("--population", type=int, default=32, help="K (default 32)")
    parser.add_argument("--lrs", type=int, help="learning rates in the grids")
    parser.add_argument("--trials", type=int, help="Optuna trials")
    parser.add_argument("--train-size", type=int, help="training digits (default 60,000, "
                        "or 2,400 with --small)")
    parser.add_argument("--sequential-points", type=int, default=64,
                        help="points of grid-1 run one at a time (default 64: all)")
    parser.add_argument("--threads", type=int, help="torch's threads in the child processes "
                        "(OMP_NUM_THREADS; default: torch's own choice). On a small shared "
                        "machine 1 keeps other work from stalling every step")
    parser.add_argument("--timeout", type=float, default=3600, help="per sweep, in s")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the children's
    if args.population < 2:
        parser.error("--population: at least 2")
    if args.train_size is not None and args.train_size < 100:
        parser.error("--train-size: at least 100")
    return args


if __name__ == "__main__":
    main()
