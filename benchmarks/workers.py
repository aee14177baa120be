"""Trials per hour with --workers 1 and --workers 2 on the same 12-trial sweep, and the
most two processes could give: a bare training loop in one process with two threads
against two one-thread processes at once (what --workers 2 does on two cores).

    .venv/bin/python benchmarks/workers.py [--repeats 2] [--workers 1 2] [--epochs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CONFIG = {
    "name": "workers-bench",
    "data": {"dataset": "mnist-5k"},
    "train": {"epochs": 5, "seed": 0, "device": "cpu"},
    "search": {"method": "grid", "space": {"lr": [0.001, 0.01], "batch_size": [32, 128],
                                           "optimizer": ["sgd", "adam", "rmsprop"]}},
    "logging": {"tensorboard": True, "visdom": False},
}


def sweep(config: Path, out: Path, workers: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "sweep", str(config), "--out", str(out),
                    "--quiet", "--workers", str(workers)], check=True, capture_output=True)
    return time.perf_counter() - start


LOOP = """
import sys, time, torch
from common import digits_60k
from trial_throughput import bare_epoch
threads, batch, start_at = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
torch.set_num_threads(threads)
x, y = digits_60k()
bare_epoch(x[:2000], y[:2000], batch)  # first-use costs
time.sleep(max(start_at - time.time(), 0))  # so that loops run side by side
print(bare_epoch(x, y, batch))
"""
START_AFTER_S = 10  # time for the loops to import torch and load the digits


def loop_speeds(*runs: tuple[int, int]) -> list[float]:
    """Bare loops (threads, batch) over 60,000 digits, started together; samples/s."""
    start_at = str(time.time() + START_AFTER_S)
    processes = [subprocess.Popen([sys.executable, "-c", LOOP, str(threads), str(batch),
                                   start_at], stdout=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).parent) for threads, batch in runs]
    return [float(p.communicate()[0]) for p in processes]


def ceiling(batch: int, repeats: int) -> float:
    """Throughput of two one-thread processes at once over one two-thread process."""
    ratios = []
    for _ in range(repeats):
        (alone,) = loop_speeds((2, batch))
        ratios.append(sum(loop_speeds((1, batch), (1, batch))) / alone)
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=5, help="per trial; more epochs "
                        "make the fixed start-up and end-of-sweep costs a smaller share")
    args = parser.parse_args()
    times: dict[int, list[float]] = {n: [] for n in args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(yaml.safe_dump(
            CONFIG | {"train": CONFIG["train"] | {"epochs": args.epochs}}))
        for i in range(args.repeats):
            for n in args.workers:
                times[n].append(sweep(config, Path(tmp) / f"w{n}-{i}", n))
    base = statistics.median(times[args.workers[0]])
    for n, values in times.items():
        med = statistics.median(values)
        print(f"--workers {n}: median {med:.1f} s for 12 trials, {12 * 3600 / med:,.0f} "
              f"trials/hour, {base / med:.2f}x of --workers {args.workers[0]}  "
              f"({', '.join(f'{v:.1f}' for v in values)})")
    for batch in (32, 128):
        print(f"ceiling at batch {batch}: two one-thread loops at once train "
              f"{ceiling(batch, args.repeats):.2f}x as fast as one two-thread loop")


if __name__ == "__main__":
    main()
