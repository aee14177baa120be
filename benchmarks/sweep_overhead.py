"""Everything but training: the quick-start sweep's wall time against the sum of its
trials' own time (training and evaluation), as a user runs it (a fresh process, so
start-up and imports count); and, beside it, the start-up that any PyTorch script pays.

    .venv/bin/python benchmarks/sweep_overhead.py [--repeats 3] [--config PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def cli_sweep(config: Path, out: Path, *flags: str) -> tuple[float, float]:
    """(wall time of `python -m harness sweep`, sum of the trials' duration_s)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "sweep", str(config), "--out", str(out),
                    "--quiet", *flags], check=True, capture_output=True)
    wall = time.perf_counter() - start
    return wall, float(pd.read_csv(out / "trials.csv")["duration_s"].sum())


def bare_start() -> float:
    """What every PyTorch script pays before its first step: Python, `import torch`, exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", type=Path, default=ROOT / "experiments/quickstart.yaml")
    args = parser.parse_args()
    shares, walls, trials, resumes, floors = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            out = Path(tmp) / f"run{i}"
            wall, trial_time = cli_sweep(args.config, out)
            walls.append(wall)
            trials.append(trial_time)
            shares.append(1 - trial_time / wall)
            resumes.append(cli_sweep(args.config, out)[0])  # nothing left to run
            floors.append(bare_start())
    print(f"sweep wall time: median {statistics.median(walls):.2f} s "
          f"({', '.join(f'{w:.2f}' for w in walls)})")
    print(f"sum of trial times: median {statistics.median(trials):.2f} s")
    print(f"everything but training: median {100 * statistics.median(shares):.1f}% of the "
          f"wall time ({', '.join(f'{100 * s:.1f}' for s in shares)})")
    print(f"second run (resume, nothing to do): median {statistics.median(resumes):.2f} s")
    floor = statistics.median(floors)
    print(f"`python -c 'import torch'` alone: median {floor:.2f} s, "
          f"{100 * floor / statistics.median(walls):.1f}% of the sweep's wall time")
    rest = [w - t - f for w, t, f in zip(walls, trials, floors, strict=True)]
    print(f"everything but training and importing torch: median "
          f"{statistics.median(rest):.2f} s, "
          f"{100 * statistics.median(r / w for r, w in zip(rest, walls, strict=True)):.1f}%")


if __name__ == "__main__":
    main()
