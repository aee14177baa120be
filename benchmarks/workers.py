"""Trials per hour with --workers 1 and --workers 2 on the same 12-trial sweep.

    .venv/bin/python benchmarks/workers.py [--repeats 2] [--workers 1 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    times: dict[int, list[float]] = {n: [] for n in args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(yaml.safe_dump(CONFIG))
        for i in range(args.repeats):
            for n in args.workers:
                times[n].append(sweep(config, Path(tmp) / f"w{n}-{i}", n))
    base = statistics.median(times[args.workers[0]])
    for n, values in times.items():
        med = statistics.median(values)
        print(f"--workers {n}: median {med:.1f} s for 12 trials, {12 * 3600 / med:,.0f} "
              f"trials/hour, {base / med:.2f}x of --workers {args.workers[0]}  "
              f"({', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
