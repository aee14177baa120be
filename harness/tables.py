"""Comparison tables from trials.csv: pure pandas, no I/O."""

from __future__ import annotations

import pandas as pd

TOP_COLUMNS = ["run", "state", "optimizer", "lr", "batch_size", "seed", "best_test_acc",
               "best_epoch", "final_test_loss", "duration_s"]


def top_trials(trials: pd.DataFrame, k: int = 5, maximize: bool = True) -> pd.DataFrame:
    """The k best trials by the objective (`value`), failed and pruned ones last."""
    ranked = trials.assign(_complete=trials["state"] == "COMPLETE").sort_values(
        ["_complete", "value"], ascending=[False, not maximize], na_position="last")
    return ranked[TOP_COLUMNS].head(k).reset_index(drop=True)


def state_counts(trials: pd.DataFrame) -> str:
    """'12 trials: 11 COMPLETE, 1 FAIL'."""
    counts = trials["state"].value_counts()
    parts = [f"{n} {state}" for state, n in counts.items()]
    return f"{len(trials)} trials: " + ", ".join(parts) if parts else "0 trials"
