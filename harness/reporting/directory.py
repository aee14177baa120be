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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState

from harness.files import atomic_write_csv, atomic_write_text
from harness.hyperparams import NAMES
from harness.reporting import summary, tables
from harness.study.claims import latest_attempts

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
