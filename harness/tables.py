"""Comparison tables from trials.csv: pure pandas, no I/O.

A configuration is one set of hyperparameters; its trials are its seeds. Only COMPLETE
trials count towards an objective; FAIL and PRUNED ones are in `failures`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import stdtr, stdtrit  # Student's t; scipy.stats costs 1 s to import

HPARAMS = ["optimizer", "lr", "batch_size", "momentum", "weight_decay"]
TOP_COLUMNS = ["run", "state", "optimizer", "lr", "batch_size", "seed", "val_acc", "test_acc",
               "best_epoch", "final_test_loss", "duration_s"]
ALPHA = 0.05  # significance level of the seed comparison


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


def config_columns(trials: pd.DataFrame) -> list[str]:
    """The columns that identify a configuration: optimizer, lr and batch size, any other
    hyperparameter that varies, and `sweep` when several sweeps are merged."""
    core = ["optimizer", "lr", "batch_size"]
    varying = [c for c in HPARAMS if c not in core and trials[c].nunique() > 1]
    return [c for c in ("sweep", *core, *varying) if c in trials.columns]


def leaderboard(trials: pd.DataFrame, maximize: bool = True) -> pd.DataFrame:
    """Every configuration with a COMPLETE trial, ranked by the objective's mean over
    seeds: n, mean, std, the 95% confidence interval (Student's t), mean best epoch and
    mean trial time. With one seed, std and the interval are NaN: there is no spread."""
    done = trials[trials["state"] == "COMPLETE"]
    keys = config_columns(trials)
    if done.empty:
        return pd.DataFrame(columns=["rank", *keys, "n", "mean", "std", "ci95_low",
                                     "ci95_high", "best_epoch", "duration_s"])
    grouped = done.groupby(keys, dropna=False)
    table = grouped["value"].agg(n="count", mean="mean", std="std").reset_index()
    half = [_ci_half_width(s, n) for s, n in zip(table["std"], table["n"], strict=True)]
    table["ci95_low"] = table["mean"] - half
    table["ci95_high"] = table["mean"] + half
    table["best_epoch"] = grouped["best_epoch"].mean().to_numpy()
    table["duration_s"] = grouped["duration_s"].mean().to_numpy()
    table = table.sort_values("mean", ascending=not maximize, kind="stable")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def by_optimizer(board: pd.DataFrame) -> pd.DataFrame:
    """The best configuration of each optimizer, best first."""
    return board.drop_duplicates("optimizer", keep="first").reset_index(drop=True)


def pivots(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per optimizer: mean objective over seeds, lr down the rows, batch size across."""
    done = trials[trials["state"] == "COMPLETE"]
    return {
        name: group.pivot_table(index="lr", columns="batch_size", values="value",
                                aggfunc="mean").sort_index()
        for name, group in done.groupby("optimizer")
    }


def marginals(trials: pd.DataFrame, maximize: bool = True) -> pd.DataFrame:
    """The objective by each hyperparameter value, over all other settings and seeds;
    `best` is the highest value, or the lowest when the objective is minimized."""
    done = trials[trials["state"] == "COMPLETE"]
    rows = []
    for column in HPARAMS:
        if done[column].nunique() < 2:
            continue  # not searched: nothing to compare
        for value, group in done.groupby(column):
            rows.append({"hparam": column, "value": value, "n": len(group),
                         "mean": group["value"].mean(), "std": group["value"].std(),
                         "best": group["value"].max() if maximize
                         else group["value"].min()})
    return pd.DataFrame(rows, columns=["hparam", "value", "n", "mean", "std", "best"])


def seed_tests(trials: pd.DataFrame, maximize: bool = True) -> pd.DataFrame:
    """Each configuration with two or more seeds against the leader: Welch's t-test on
    the objective, `worse` when it is significantly worse at p < 0.05 (two-sided)."""
    keys = config_columns(trials)
    done = trials[trials["state"] == "COMPLETE"]
    groups = [(dict(zip(keys, key, strict=True)), g["value"].to_numpy())
              for key, g in done.groupby(keys, dropna=False) if len(g) >= 2]
    columns = [*keys, "n", "mean", "std", "diff", "t", "p", "worse"]
    if not groups:
        return pd.DataFrame(columns=columns)
    groups.sort(key=lambda group: float(np.mean(group[1])), reverse=maximize)
    leader = groups[0][1]
    rows = []
    for setting, values in groups:
        t, p = welch(values, leader)
        diff = float(np.mean(values) - np.mean(leader))
        worse = bool(p < ALPHA and (diff < 0 if maximize else diff > 0))
        rows.append({**setting, "n": len(values), "mean": float(np.mean(values)),
                     "std": float(np.std(values, ddof=1)), "diff": diff, "t": t, "p": p,
                     "worse": worse})
    return pd.DataFrame(rows, columns=columns)


def failures(trials: pd.DataFrame) -> pd.DataFrame:
    """FAIL and PRUNED trials counted by state and reason ('diverged', an exception)."""
    bad = trials[trials["state"] != "COMPLETE"]
    reasons = bad["error"].fillna("").astype(str).map(_reason)
    table = bad.assign(reason=reasons).groupby(["state", "reason"]).agg(
        count=("run", "size"), runs=("run", lambda r: ", ".join(r)))
    return table.reset_index().sort_values("count", ascending=False, kind="stable")


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Welch's unequal-variance t statistic of mean(a) - mean(b) and its two-sided
    p-value; identical samples give (0, 1)."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    diff = float(np.mean(a) - np.mean(b))
    if se == 0:
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = diff / se
    return t, float(2 * stdtr(df, -abs(t)))


def _ci_half_width(std: float, n: int) -> float:
    return float(stdtrit(n - 1, 0.975) * std / math.sqrt(n)) if n > 1 else math.nan


def _reason(error: str) -> str:
    """'diverged: train loss is nan at epoch 2' -> 'diverged: train loss is nan'."""
    if error.startswith("diverged"):
        return error.split(" at epoch")[0]
    return error or "pruned"


def summary_markdown(trials: pd.DataFrame, maximize: bool, title: str,
                     importance: pd.DataFrame | None = None) -> str:
    """summary.md: every table above as Markdown, with a one-line answer first."""
    board = leaderboard(trials, maximize)
    parts = [f"# {title}", "", state_counts(trials), ""]
    if not board.empty:
        best = board.iloc[0]
        setting = ", ".join(f"{k}={best[k]}" for k in config_columns(trials))
        spread = (f"95% CI {best['ci95_low']:.4f} to {best['ci95_high']:.4f}"
                  if best["n"] > 1 else "one seed, so no confidence interval: add seeds "
                  "to search.seeds to see whether the lead is bigger than seed noise")
        parts += [f"Best configuration: {setting}: {best['mean']:.4f} "
                  f"(n={best['n']}, {spread}).", ""]
    sections = [("Leaderboard", board), ("Best per optimizer", by_optimizer(board)),
                ("By hyperparameter value", marginals(trials, maximize)),
                ("Seeds: Welch's t-test against the leader", seed_tests(trials, maximize)),
                ("Failed and pruned trials", failures(trials))]
    if importance is not None:
        sections.append(("Hyperparameter importance (Optuna, fANOVA)", importance))
    for heading, table in sections:
        if not table.empty:
            parts += [f"## {heading}", "", table.to_markdown(index=False, floatfmt=".4g"), ""]
    for name, pivot in pivots(trials).items():
        parts += [f"## {name}: objective by lr (rows) and batch size (columns)", "",
                  pivot.to_markdown(floatfmt=".4f"), ""]
    return "\n".join(parts)
