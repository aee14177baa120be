"""The study -> trials.csv, history.csv, tables/*.csv and summary.md.

The Optuna storage is the one source of truth: these files are rebuilt from it after
every trial (by whichever worker finished one), so they always agree with each other
and with the study, and can be rebuilt on any machine that reaches the storage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState

from harness import summary, tables
from harness.config import ConfigError
from harness.files import atomic_write_csv, atomic_write_text
from harness.hyperparams import NAMES
from harness.search import latest_attempts

TRIAL_COLUMNS = [
    "trial", "run", "state", *NAMES, "seed", "epochs", "value", "best_epoch", "val_acc",
    "val_loss", "test_acc", "test_loss",
    "final_test_acc", "final_test_loss", "final_train_loss", "duration_s", "samples_per_s",
    "device", "dataset", "params", "mult_adds", "error",
]
# Read at the best epoch (chosen on the objective, the checkpoint's epoch), not maximized.
AT_BEST = ("val_acc", "val_loss", "test_acc", "test_loss")
HISTORY_COLUMNS = ["trial", "run", "epoch", "train_loss", "val_loss", "val_acc", "test_loss",
                   "test_acc", "epoch_s", "elapsed_s"]
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
STALE = "interrupted: its worker stopped sending heartbeats"


def finished_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """One finished trial per point (its newest attempt), in trial order."""
    done = [t for t in trials if t.state in FINISHED]
    return sorted(latest_attempts(done).values(), key=lambda t: t.number)


def trials_frame(trials: list[FrozenTrial], model: dict[str, int]) -> pd.DataFrame:
    """One row per finished point, with the contract's trials.csv columns."""
    rows = [_trial_row(t, model) for t in finished_trials(trials)]
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def history_frame(trials: list[FrozenTrial]) -> pd.DataFrame:
    rows = []
    for t in finished_trials(trials):
        for epoch in t.user_attrs.get("result", {}).get("history", []):
            rows.append({"trial": t.number, "run": t.user_attrs.get("run", "")} | epoch)
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def write_results(out: Path, trials: list[FrozenTrial], model: dict[str, int]) -> pd.DataFrame:
    """Write trials.csv and history.csv atomically; return the trials table."""
    table = trials_frame(trials, model)
    atomic_write_csv(out / "trials.csv", table)
    atomic_write_csv(out / "history.csv", history_frame(trials))
    return table


def write_tables(out: Path, trials: pd.DataFrame, maximize: bool, title: str,
                 importance: pd.DataFrame | None = None) -> None:
    """tables/*.csv and summary.md, rebuilt from trials.csv and the sweep's config.yaml
    (the objective's metric and which hyperparameters were searched, and how)."""
    spec = dataclasses.replace(_spec(out), maximize=maximize)
    c = summary.build(trials, spec, importance)
    frames = {"leaderboard": c.board, "by_optimizer": c.by_optimizer,
              "marginals": c.marginals, "failures": c.failures}
    for pivot in c.pivots:
        frames[f"pivot_{pivot.name}"] = pivot.cells.reset_index().assign(
            averaged_over=pivot.over)
    if importance is not None:
        frames["importance"] = importance
    for name, frame in frames.items():
        atomic_write_csv(out / "tables" / f"{name}.csv", frame)
    for stale in [*(out / "tables").glob("pivot_*.csv"), out / "tables" / "seeds.csv"]:
        if stale.stem not in frames:  # a pivot no longer split that way, an old table
            stale.unlink(missing_ok=True)
    atomic_write_text(out / "summary.md", summary.markdown(c, title))


def _spec(out: Path) -> tables.Spec:
    try:
        return tables.Spec.from_config(yaml.safe_load((out / "config.yaml").read_text()))
    except (OSError, yaml.YAMLError, AttributeError):
        return tables.Spec()


@dataclass(frozen=True)
class SavedSweep:
    name: str  # the title: the config's name, or the sweeps' labels
    trials: pd.DataFrame  # with a `sweep` column (each directory's label) when several
    history: pd.DataFrame  # likewise
    spec: tables.Spec


def read_sweep(out: Path) -> SavedSweep:
    """A finished or running sweep's files, for compare and report; results written by
    earlier versions too (a best_test_acc column and no validation)."""
    try:
        trials = pd.read_csv(out / "trials.csv", dtype={"error": str})
        history = pd.read_csv(out / "history.csv")
        config = yaml.safe_load((out / "config.yaml").read_text())
    except (OSError, pd.errors.ParserError, yaml.YAMLError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise ConfigError(f"{out}: not a readable results directory ({reason}); give the "
                          "directory a sweep wrote, such as results/quickstart") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{out}/config.yaml: not a harness config; give the directory a "
                          "sweep wrote, such as results/quickstart")
    trials["error"] = trials["error"].fillna("")
    return SavedSweep(config.get("name", out.name), trials, history,
                      tables.Spec.from_config(config))


def read_sweeps(dirs: list[Path]) -> SavedSweep:
    """Several sweeps as one comparison: every directory stays its own sweep, labelled
    by its path's last parts (as many as make the labels unique), never pooled."""
    sweeps = [read_sweep(d) for d in dirs]
    if len(sweeps) == 1:
        return sweeps[0]
    labels = sweep_labels(dirs)
    for field, what in (("maximize", "optimize in opposite directions"),
                        ("metric", "select on different objectives")):
        values = {getattr(s.spec, field) for s in sweeps}
        if len(values) > 1:
            shown = ", ".join(f"{label}: {getattr(s.spec, field)}"
                              for label, s in zip(labels, sweeps, strict=True))
            raise ConfigError(f"compare: the sweeps {what} ({shown}); compare sweeps "
                              "with the same objective")
    return SavedSweep(" vs ".join(labels),
                      pd.concat([s.trials.assign(sweep=lab) for lab, s in
                                 zip(labels, sweeps, strict=True)], ignore_index=True),
                      pd.concat([s.history.assign(sweep=lab) for lab, s in
                                 zip(labels, sweeps, strict=True)], ignore_index=True),
                      tables.merge_specs([s.spec for s in sweeps]))


def sweep_labels(dirs: list[Path]) -> list[str]:
    """'quick' and 'other', or 'a/quick' and 'b/quick' when two end alike."""
    paths = [d.resolve() for d in dirs]
    for path in paths:
        if paths.count(path) > 1:
            raise ConfigError(f"compare: {path} is given twice; name each results "
                              "directory once")
    depth = [1] * len(paths)
    while True:
        labels = [str(p) if k >= len(p.parts) else "/".join(p.parts[-k:])
                  for p, k in zip(paths, depth, strict=True)]
        clashes = [i for i, label in enumerate(labels) if labels.count(label) > 1]
        if not clashes:
            return labels
        for i in clashes:
            depth[i] += 1


def _trial_row(t: FrozenTrial, model: dict[str, int]) -> dict[str, Any]:
    attrs = t.user_attrs
    result = attrs.get("result", {})  # what the trial measured, see sweep._record
    history: list[dict[str, float]] = result.get("history", [])
    hparams = result.get("hparams", {})
    last = history[-1] if history else {}
    best_epoch = result.get("best_epoch")
    best = history[best_epoch - 1] if best_epoch else {}
    return {
        "trial": t.number, "run": attrs.get("run", ""), "state": t.state.name,
        **{k: hparams.get(k) for k in NAMES},
        "seed": attrs.get("seed"), "epochs": len(history),
        "value": t.value if t.state == TrialState.COMPLETE else result.get("value"),
        "best_epoch": best_epoch, **{k: best.get(k) for k in AT_BEST},
        "final_test_acc": last.get("test_acc"), "final_test_loss": last.get("test_loss"),
        "final_train_loss": last.get("train_loss"),
        "duration_s": result.get("duration_s"), "samples_per_s": result.get("samples_per_s"),
        "device": result.get("device", ""), "dataset": result.get("dataset", ""),
        "params": model.get("params"), "mult_adds": model.get("mult_adds"),
        "error": attrs.get("error", STALE if t.state == TrialState.FAIL else ""),
    }
