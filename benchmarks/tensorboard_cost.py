"""What TensorBoard logging costs: the quick-start sweep with it on and off, alternated
in one process so both see the same machine. Also times the TensorBoard code itself
(the sink's calls and the once-per-sweep experiment summary and graph), which is far
less noisy than a difference of two wall times on a shared machine.

    .venv/bin/python benchmarks/tensorboard_cost.py [--repeats 5] [--config PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness.sweep
from harness.parse import load_config
from harness.sinks.tensorboard import TensorBoardSink
from harness.sweep import SweepOptions, run_sweep

ROOT = Path(__file__).resolve().parents[1]
inside = {"s": 0.0}  # seconds spent in TensorBoard code


def timed(function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            inside["s"] += time.perf_counter() - start
    return wrapper


def timed_sweep(config, out: Path) -> float:
    start = time.perf_counter()
    run_sweep(config, SweepOptions(out=out, progress=False, device="cpu"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", type=Path, default=ROOT / "experiments/quickstart.yaml")
    args = parser.parse_args()
    for name in ("start", "log", "finish"):
        setattr(TensorBoardSink, name, timed(getattr(TensorBoardSink, name)))
    harness.sweep.write_experiment = timed(harness.sweep.write_experiment)
    on = load_config(args.config)
    off = dataclasses.replace(on, logging=dataclasses.replace(on.logging, tensorboard=None))
    times: dict[str, list[float]] = {"on": [], "off": []}
    spent = []
    with tempfile.TemporaryDirectory() as tmp:
        timed_sweep(off, Path(tmp) / "warm-up")  # first-use costs: imports, data caches
        for i in range(args.repeats):
            times["off"].append(timed_sweep(off, Path(tmp) / f"off{i}"))
            inside["s"] = 0.0
            times["on"].append(timed_sweep(on, Path(tmp) / f"on{i}"))
            spent.append(inside["s"] / times["on"][-1])
    for label in ("off", "on"):
        values = times[label]
        print(f"tensorboard {label:>3}: median {statistics.median(values):.2f} s, "
              f"min {min(values):.2f} s  ({', '.join(f'{t:.2f}' for t in values)})")
    ratio = statistics.median(times["on"]) / statistics.median(times["off"])
    print(f"wall time on/off: {ratio:.3f} (medians), "
          f"{min(times['on']) / min(times['off']):.3f} (minima)")
    print(f"time inside TensorBoard code: median {100 * statistics.median(spent):.1f}% "
          f"of the sweep ({', '.join(f'{100 * s:.1f}' for s in spent)})")


if __name__ == "__main__":
    main()
