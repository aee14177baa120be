"""The study -> trials.csv, history.csv, tables/*.csv and summary.md.

The Optuna storage is the one source of truth. While a sweep runs, each finished trial's
rows are appended to trials.csv and history.csv (bookkeeping.ResultFiles), and the files
are rebuilt from the study at its start, at its end and every so often (`write_results`),
so they always agree with the study and can be rebuilt on any machine that reaches it.
Appended and rebuilt rows are written by one CSV writer (`csv_lines`): the same bytes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState

from harness.config import ConfigError
from harness.files import atomic_write_csv, atomic_write_text
from harness.hyperparams import NAMES
from harness.reporting import summary, tables
from harness.study.claims import latest_attempts
from harness.types import INTERRUPTED, RETRYABLE

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


def write_results(out: Path, trials: list[FrozenTrial], model: dict[str, int]) -> pd.DataFrame:
    """Write trials.csv and history.csv atomically, one row per point in trial order;
    return the trials table."""
    done = finished_trials(trials)
    rows = [trial_row(t, model) for t in done]
    atomic_write_text(out / "trials.csv", csv_lines(rows, TRIAL_COLUMNS, header=True))
    atomic_write_text(out / "history.csv", csv_lines(
        [row for t in done for row in history_rows(t)], HISTORY_COLUMNS, header=True))
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def csv_lines(rows: list[dict[str, Any]], columns: list[str], header: bool = False) -> str:
    """Rows as CSV text, written the same way whether a file is rebuilt or appended to
    (pandas would write 2 or 2.0 depending on the column's other rows)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    writer.writerows([_cell(row.get(column)) for column in columns] for row in rows)
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    """As pandas writes it: nothing for None and nan, the shortest repr of a float."""
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def rerun_row(state: str, error: str) -> bool:
    """A trials.csv row whose point runs again (search.needs_rerun, read from the row:
    a trial failed without an error has STALE there)."""
    return state == "FAIL" and error.startswith((INTERRUPTED, RETRYABLE))


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
    trials["error"] = trials["error"].astype(object).fillna("")
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


def history_rows(t: FrozenTrial) -> list[dict[str, Any]]:
    run = t.user_attrs.get("run", "")
    return [{"trial": t.number, "run": run} | epoch
            for epoch in t.user_attrs.get("result", {}).get("history", [])]


def trial_row(t: FrozenTrial, model: dict[str, int]) -> dict[str, Any]:
    attrs = t.user_attrs
    result = attrs.get("result", {})  # what the trial measured, see record.Recorder.store
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
