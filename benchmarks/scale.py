"""Sweeps of thousands of tiny trials: the bookkeeping per trial at the start and at the
end of the sweep, and the time from the last trial's end to the process's exit; then
what hyperparameter importance costs on big grids, ours against Optuna's evaluators.

    PYTHONPATH=. .venv/bin/python benchmarks/scale.py [--trials 2000] [--part all|sweep|importance]

The sweep is the CLI's (`python -m harness sweep ... --quiet`, TensorBoard on unless
--tensorboard off, Visdom off), run in a child process that only notes when each trial
(run_trial) and each claim of the next point (Search.claim) starts and ends, and how long
each step of the ending takes. A trial's bookkeeping is everything from its end to the
next trial's start: recording it (the study, trials.csv, history.csv), the rebuilds and
tables when due, and claiming the next point; it is shown whole and without the claim,
in wall time and in the process's CPU time (which a machine busy with other work
disturbs less). The first and the last WINDOW trials are compared within one run, so
both sides of the ratio see the same machine. The grid is 20 learning rates x 2
optimizers x 2 batch sizes x as many seeds as reach --trials, on 256 synthetic digits
for 1 epoch, so its ending is that of a 20-value learning-rate grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATIONS = 80  # 20 learning rates x 2 optimizers x 2 batch sizes
WINDOW = 100  # trials at the start and at the end that are compared
ENDING = {  # the steps of a sweep's ending that the child times: module, function
    "trials.csv and history.csv rebuilt": ("harness.sweep", "rebuild"),
    "importance": ("harness.reporting.bookkeeping", "rank_hparams"),
    "summary.md and tables/ (importance included)": ("harness.sweep", "final_tables"),
}


def sweep_config(trials: int, tensorboard: bool) -> dict[str, Any]:
    seeds = math.ceil(trials / CONFIGURATIONS)
    lrs = [float(f"{lr:.3g}") for lr in np.geomspace(1e-3, 0.3, 20)]
    return {
        "name": "scale",
        "data": {"dataset": "synthetic", "train_size": 256, "test_size": 128},
        "train": {"epochs": 1, "seed": 0, "device": "cpu"},
        "search": {"method": "grid", "seeds": list(range(seeds)),
                   "space": {"lr": lrs, "optimizer": ["sgd", "adam"], "batch_size": [32, 64]}},
        "logging": {"tensorboard": tensorboard, "visdom": False},
    }


def child(config: str, out: str, notes_path: str) -> None:
    """The CLI as a user runs it, with each trial's and claim's span noted (written at
    exit) and the ending's steps timed."""
    import atexit
    import importlib
    import runpy

    import harness.study.claims

    notes: dict[str, list[Any]] = {"trials": [], "claims": [], "ending": []}

    def timing(real: Any, kind: str, label: str = "") -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.time(), time.process_time()
            try:
                return real(*args, **kwargs)
            finally:
                span = [start, time.time(), cpu, time.process_time()]
                notes[kind].append([label, *span] if label else span)
        return timed

    harness.study.claims.Search.claim = timing(harness.study.claims.Search.claim, "claims")
    import harness.groups

    harness.groups.run_trial = timing(harness.groups.run_trial, "trials")
    for label, (module, name) in ENDING.items():
        owner = importlib.import_module(module)
        setattr(owner, name, timing(getattr(owner, name), "ending", label))
    atexit.register(lambda: Path(notes_path).write_text(json.dumps(notes)))
    sys.argv = ["harness", "sweep", config, "--out", out, "--quiet", "--visdom", "off"]
    runpy.run_module("harness", run_name="__main__")


Table = list[tuple[str, ...]]


def run_sweep(trials: int, tensorboard: bool, timeout: float) -> tuple[Table, Table]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "scale.yaml"
        config.write_text(yaml.safe_dump(sweep_config(trials, tensorboard)))
        notes_path = Path(tmp) / "notes.json"
        started = time.time()
        process = subprocess.run(
            [sys.executable, __file__, "--child", str(config), str(Path(tmp) / "out"),
             str(notes_path)], env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=timeout)
        exited = time.time()
        if process.returncode != 0:
            raise SystemExit(f"the sweep failed ({process.returncode}):\n{process.stderr}")
        notes = json.loads(notes_path.read_text())
    spans, claims = notes["trials"], notes["claims"]
    # claims[i + 1] is made between trial i and trial i + 1 (claims[0] before trial 0)
    gaps = [after[0] - before[1] for before, after in itertools.pairwise(spans)]
    cpu = [after[2] - before[3] for before, after in itertools.pairwise(spans)]
    claim = [c[1] - c[0] for c in claims[1:len(spans)]]
    claim_cpu = [c[3] - c[2] for c in claims[1:len(spans)]]
    rows = [
        ("trials", f"{len(spans):,} (TensorBoard {'on' if tensorboard else 'off'})"),
        ("sweep wall time (process start to exit)", f"{exited - started:.0f} s"),
        ("mean trial (run_trial)", f"{1000 * statistics.mean(e - s for s, e, *_ in spans):.0f} ms"),
        *compared("bookkeeping per trial (trial end to next trial start)", gaps),
        *compared("... of which claiming the next point", claim),
        *compared("... the rest: recording, files, rebuilds and tables when due",
                  [g - c for g, c in zip(gaps, claim, strict=True)]),
        *compared("bookkeeping CPU time per trial", cpu),
        *compared("... without the claim", [g - c for g, c in zip(cpu, claim_cpu, strict=True)]),
        ("last trial's end to exit", f"{exited - spans[-1][1]:.1f} s"),
    ]
    ending = [(label, f"{end - start:.2f} s") for label, start, end, *_ in notes["ending"]
              if start >= spans[-1][1]]
    return rows, ending


def compared(what: str, seconds: list[float]) -> Table:
    first, last = seconds[:WINDOW], seconds[-WINDOW:]
    return [(f"{what}, first {WINDOW}", ms(first)), (f"{what}, last {WINDOW}", ms(last)),
            (f"{what}: last / first (means)",
             f"**{statistics.mean(last) / statistics.mean(first):.2f}**")]


def ms(seconds: list[float]) -> str:
    return (f"{1000 * statistics.mean(seconds):.1f} ms (median "
            f"{1000 * statistics.median(seconds):.1f})")


def made_up_study(trials: int, values: int, seed: int = 0) -> Any:
    """A grid study as harness makes one: every hyperparameter a categorical of its
    grid values, the objective peaking at lr 0.01, a little better with adam, noisy."""
    import optuna
    from optuna.trial import create_trial

    from harness.study.claims import distribution

    rng = np.random.default_rng(seed)
    space = {"lr": [float(v) for v in np.geomspace(1e-4, 1, values)],
             "batch_size": [int(v) for v in np.linspace(16, 16 + 8 * values, values)],
             "momentum": [float(v) for v in np.linspace(0, 0.99, values)],
             "weight_decay": [float(v) for v in np.geomspace(1e-6, 1e-2, values)],
             "optimizer": ["sgd", "adam"]}
    dists = {name: distribution(name, tuple(choices)) for name, choices in space.items()}
    made = []
    for _ in range(trials):
        params = {name: choices[rng.integers(len(choices))] for name, choices in space.items()}
        value = (0.9 - 0.1 * abs(math.log10(params["lr"]) + 2)
                 + 0.02 * (params["optimizer"] == "adam") + rng.normal(0, 0.01))
        made.append(create_trial(params=params, distributions=dists, value=value))
    study = optuna.create_study(direction="maximize")
    study.add_trials(made)
    return study


def timed(action: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def run_importance() -> Table:
    import optuna

    from harness.reporting.importance import METHOD, importance

    seconds, _ = timed(lambda: __import__("sklearn.ensemble"))
    rows = [("(import scikit-learn, once)", "", f"{seconds:.2f}", "")]
    for trials, values in ((400, 20), (5000, 50)):
        study = made_up_study(trials, values)
        seconds, frame = timed(lambda s=study: importance(s))
        top = f"lr {frame.set_index('hparam').loc['lr', 'importance']:.2f}"
        rows.append((f"{trials:,} trials, {values} values each", METHOD, f"{seconds:.2f}", top))
    evaluators = {
        "Optuna MeanDecreaseImpurity (grid as categories)":
            optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0),
        "Optuna PED-ANOVA (grid as categories)":
            optuna.importance.PedAnovaImportanceEvaluator(),
    }
    for name, evaluator in evaluators.items():
        seconds, values = timed(lambda e=evaluator: optuna.importance.get_param_importances(
            study, evaluator=e))
        rows.append(("5,000 trials, 50 values each", name, f"{seconds:.2f}",
                     f"lr {values['lr']:.2f}"))
    return rows


def markdown(header: tuple[str, ...], rows: Table) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
        return
    from harness.quiet import quiet_dependencies

    quiet_dependencies()  # as the CLI does: no Optuna line per made-up study
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--part", choices=["all", "sweep", "importance"], default="all")
    parser.add_argument("--tensorboard", choices=["on", "off"], default="on",
                        help="off: trials several times quicker on a busy machine")
    parser.add_argument("--timeout", type=float, default=3600, help="for the sweep, in s")
    args = parser.parse_args()
    if args.trials < 2 * WINDOW:
        parser.error(f"--trials: at least {2 * WINDOW}, so the first and last {WINDOW} "
                     "do not overlap")
    if args.part in ("all", "sweep"):
        rows, ending = run_sweep(args.trials, args.tensorboard == "on", args.timeout)
        print(markdown(("sweep of tiny trials", "measured"), rows))
        print()
        print(markdown(("after the last trial (20-value learning-rate grid)", "took"),
                       ending))
        print()
    if args.part in ("all", "importance"):
        print(markdown(("made-up grid study", "method", "seconds", "importance of lr"),
                       run_importance()))


if __name__ == "__main__":
    main()
