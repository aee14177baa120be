"""The study -> trials.csv and history.csv.

The Optuna storage is the one source of truth: these files are rebuilt from it after
every trial (by whichever worker finished one), so they always agree with each other
and with the study, and can be rebuilt on any machine that reaches the storage.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from harness.files import atomic_write_csv
from harness.search import latest_attempts

TRIAL_COLUMNS = [
    "trial", "run", "state", "optimizer", "lr", "batch_size", "momentum", "weight_decay",
    "seed", "epochs", "value", "best_test_acc", "best_epoch", "final_test_acc",
    "final_test_loss", "final_train_loss", "duration_s", "samples_per_s", "device",
    "dataset", "params", "mult_adds", "error",
]
HISTORY_COLUMNS = ["trial", "run", "epoch", "train_loss", "test_loss", "test_acc",
                   "epoch_s", "elapsed_s"]
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


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
        for epoch in t.user_attrs.get("history", []):
            rows.append({"trial": t.number, "run": t.user_attrs.get("run", "")} | epoch)
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def write_results(out: Path, trials: list[FrozenTrial], model: dict[str, int]) -> pd.DataFrame:
    """Write trials.csv and history.csv atomically; return the trials table."""
    table = trials_frame(trials, model)
    atomic_write_csv(out / "trials.csv", table)
    atomic_write_csv(out / "history.csv", history_frame(trials))
    return table


def _trial_row(t: FrozenTrial, model: dict[str, int]) -> dict[str, Any]:
    attrs = t.user_attrs
    history: list[dict[str, float]] = attrs.get("history", [])
    hparams = attrs.get("hparams", {})
    last = history[-1] if history else {}
    accs = [h["test_acc"] for h in history if math.isfinite(h["test_acc"])]
    return {
        "trial": t.number, "run": attrs.get("run", ""), "state": t.state.name,
        **{k: hparams.get(k) for k in ("optimizer", "lr", "batch_size", "momentum",
                                       "weight_decay")},
        "seed": attrs.get("seed"), "epochs": len(history),
        "value": t.value if t.state == TrialState.COMPLETE else attrs.get("value"),
        "best_test_acc": max(accs) if accs else None,
        "best_epoch": attrs.get("best_epoch"),
        "final_test_acc": last.get("test_acc"), "final_test_loss": last.get("test_loss"),
        "final_train_loss": last.get("train_loss"),
        "duration_s": attrs.get("duration_s"), "samples_per_s": attrs.get("samples_per_s"),
        "device": attrs.get("device", ""), "dataset": attrs.get("dataset", ""),
        "params": model.get("params"), "mult_adds": model.get("mult_adds"),
        "error": attrs.get("error", ""),
    }
