"""The study -> trials.csv, history.csv, tables/*.csv and summary.md.

The Optuna storage is the one source of truth: these files are rebuilt from it after
every trial (by whichever worker finished one), so they always agree with each other
and with the study, and can be rebuilt on any machine that reaches the storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState

from harness import tables
from harness.config import ConfigError
from harness.files import atomic_write_csv, atomic_write_text
from harness.search import latest_attempts

TRIAL_COLUMNS = [
    "trial", "run", "state", "optimizer", "lr", "batch_size", "momentum", "weight_decay",
    "seed", "epochs", "value", "best_epoch", "val_acc", "val_loss", "test_acc", "test_loss",
    "final_test_acc", "final_test_loss", "final_train_loss", "duration_s", "samples_per_s",
    "device", "dataset", "params", "mult_adds", "error",
]
# Read at the best epoch (chosen on the objective, the checkpoint's epoch), not maximized.
AT_BEST = ("val_acc", "val_loss", "test_acc", "test_loss")
HISTORY_COLUMNS = ["trial", "run", "epoch", "train_loss", "val_loss", "val_acc", "test_loss",
                   "test_acc", "epoch_s", "elapsed_s"]
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
STALE = "interrupted: its worker stopped sending heartbeats"
MIN_TRIALS_FOR_IMPORTANCE = 8  # fANOVA on fewer trials is mostly noise


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
    """tables/*.csv and summary.md, rebuilt from trials.csv."""
    board = tables.leaderboard(trials, maximize)
    frames = {"leaderboard": board, "by_optimizer": tables.by_optimizer(board),
              "marginals": tables.marginals(trials, maximize),
              "seeds": tables.seed_tests(trials, maximize),
              "failures": tables.failures(trials)}
    for name, pivot in tables.pivots(trials).items():
        frames[f"pivot_{name}"] = pivot.reset_index()
    if importance is not None:
        frames["importance"] = importance
    for name, frame in frames.items():
        atomic_write_csv(out / "tables" / f"{name}.csv", frame)
    atomic_write_text(out / "summary.md",
                      tables.summary_markdown(trials, maximize, title, importance))


def importance(study: optuna.Study) -> pd.DataFrame | None:
    """Optuna's hyperparameter importance (fANOVA), once enough trials differ."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    varied = {k for t in done for k in t.params if len({u.params.get(k) for u in done}) > 1}
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE or not varied:
        return None
    values = optuna.importance.get_param_importances(
        study, params=sorted(varied),
        evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    return pd.DataFrame({"hparam": list(values), "importance": list(values.values())})


@dataclass(frozen=True)
class SavedSweep:
    name: str
    trials: pd.DataFrame
    history: pd.DataFrame
    maximize: bool


def read_sweep(out: Path) -> SavedSweep:
    """A finished or running sweep's files, for compare and report."""
    try:
        trials = pd.read_csv(out / "trials.csv", keep_default_na=True)
        history = pd.read_csv(out / "history.csv")
        config = yaml.safe_load((out / "config.yaml").read_text())
    except (OSError, pd.errors.ParserError, yaml.YAMLError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise ConfigError(f"{out}: not a readable results directory ({reason}); give the "
                          "directory a sweep wrote, such as results/quickstart") from None
    direction = config.get("objective", {}).get("direction", "maximize")
    trials["error"] = trials["error"].fillna("")
    return SavedSweep(config.get("name", out.name), trials, history, direction == "maximize")


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
        **{k: hparams.get(k) for k in ("optimizer", "lr", "batch_size", "momentum",
                                       "weight_decay")},
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
