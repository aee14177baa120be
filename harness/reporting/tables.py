"""Comparison tables from trials.csv: pure pandas, no I/O.

A configuration is one set of hyperparameters; its trials are its seeds. Only COMPLETE
trials count towards an objective; FAIL and PRUNED ones are counted next to every mean
and listed in `failures`. Rows of different sweeps (the `sweep` column that `compare`
adds) are never pooled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness import stats
from harness.config import ACCURACY_MARGIN, METRICS, default_margin
from harness.hyperparams import CORE, NAMES, OPTIMIZER
from harness.reporting import bins
from harness.types import INTERRUPTED, RETRYABLE

MAX_LEVELS = 12  # more distinct values than this, and a number is binned as continuous
EXTRAS = ("best_epoch", "duration_s")  # means over COMPLETE seeds, after the tests
TEST_COLUMNS = ("test_acc", "best_test_acc")  # the reported test metric; the 2nd: old results
TOP_COLUMNS = ["sweep", "run", "state", *CORE, "seed", "value",
               "test_acc", "best_epoch", "final_test_loss", "duration_s"]
ALPHA = stats.ALPHA
VERDICT_COLUMNS = ["p_vs_leader", "p_holm", "p_tost", "verdict", "seeds_to_decide"]
CURVES_EACH = 20  # up to this many trials, a view of learning curves draws each one
CURVES_TOP = 10  # beyond that, the top ones by the objective, and the others as a band


@dataclass(frozen=True)
class Spec:
    """What the tables need beyond trials.csv; from the sweep's config.yaml."""
    maximize: bool = True  # the objective's direction
    metric: str = "val_acc"  # objective.metric: what `value` holds
    searched: tuple[str, ...] = ()  # search.space's keys; those that vary are added
    continuous: Mapping[str, bool] = field(default_factory=dict)  # ranges: name -> log
    margin: float | None = None  # objective.margin: within it, a row may be `equivalent`
    alpha: float = ALPHA  # of the verdicts' tests (a race's own alpha when raced)
    race_seeds: tuple[int, ...] = ()  # the seeds a race runs, in order; () no race
    race_first: int = 2  # the seeds every configuration of a race runs
    confirm: tuple[int, ...] = ()  # search.confirm.seeds: ranked on these alone

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Spec:
        """From a config.yaml as written by this or an earlier version (whose objective
        was always a test metric, with no margin)."""
        objective = config.get("objective") or {}
        search = config.get("search") or {}
        space = search.get("space") or {}
        metric = objective.get("metric", "test_acc")
        direction = objective.get("direction") or METRICS.get(metric, "maximize")
        margin = objective.get("margin", default_margin(metric))
        race = search.get("race") or {}
        confirm = search.get("confirm") or {}
        raced = (confirm.get("seeds") if confirm else search.get("seeds")) if race else ()
        return cls(maximize=direction == "maximize", metric=metric, searched=tuple(space),
                   continuous={k: bool(v.get("log")) for k, v in space.items()
                               if isinstance(v, Mapping)},
                   margin=margin, alpha=race.get("alpha", ALPHA),
                   race_seeds=tuple(raced or ()), race_first=race.get("first", 2),
                   confirm=tuple(confirm.get("seeds") or ()))

    @property
    def test_selected(self) -> bool:
        return self.metric.startswith("test_")


# No config.yaml: maximize val_acc, the varying hyperparameters.
DEFAULT = Spec(margin=ACCURACY_MARGIN)


def merge_specs(specs: list[Spec]) -> Spec:
    """One spec for several sweeps that share an objective (and the first's margin)."""
    continuous: dict[str, bool] = {}
    for spec in specs:
        continuous.update(spec.continuous)
    searched = tuple(dict.fromkeys(k for spec in specs for k in spec.searched))
    first = specs[0]
    return Spec(first.maximize, first.metric, searched, continuous, first.margin,
                first.alpha, confirm=tuple(sorted({seed for s in specs
                                                   for seed in s.confirm})))


def rerun_row(state: str, error: str) -> bool:
    """A trials.csv row whose point runs again (search.needs_rerun, read from the row:
    a trial failed without an error has STALE there)."""
    return state == "FAIL" and error.startswith((INTERRUPTED, RETRYABLE))


def state_counts(trials: pd.DataFrame) -> str:
    """'12 trials: 11 COMPLETE, 1 FAIL'."""
    counts = trials["state"].value_counts()
    parts = [f"{n} {state}" for state, n in counts.items()]
    return f"{len(trials)} trials: " + ", ".join(parts) if parts else "0 trials"


def ranked_trials(trials: pd.DataFrame, maximize: bool = True) -> pd.DataFrame:
    """Every trial, best first by the objective (`value`), failed and pruned ones last."""
    ranked = trials.assign(_complete=trials["state"] == "COMPLETE").sort_values(
        ["_complete", "value"], ascending=[False, not maximize], na_position="last")
    return ranked.drop(columns="_complete")


def once_per_seed(trials: pd.DataFrame, spec: Spec = DEFAULT) -> tuple[pd.DataFrame, int]:
    """Each (configuration, seed) once, by its first row in trial order, and how many
    rows were set aside: an Optuna search of earlier versions could train a point again
    when its sampler proposed it twice, and a repeat is not another seed."""
    keys = [*config_columns(trials, spec), "seed"]
    if trials.empty or not set(keys) <= set(trials.columns):
        return trials, 0
    ordered = trials.sort_values("trial", kind="stable") if "trial" in trials else trials
    repeated = ordered.duplicated(keys, keep="first").reindex(trials.index)
    return trials[~repeated], int(repeated.sum())


def top_trials(trials: pd.DataFrame, k: int = 5, maximize: bool = True,
               metric: str | None = None) -> pd.DataFrame:
    """The k best trials by the objective (`value`), failed and pruned ones last, each
    (configuration, seed) once. For a reader, `metric` names the objective: `value` is
    shown as that column."""
    test = test_column(trials)
    columns = [test if c == "test_acc" else c for c in TOP_COLUMNS]
    ranked = ranked_trials(once_per_seed(trials)[0], maximize)
    top = ranked[[c for c in columns if c in trials.columns]].head(k).reset_index(drop=True)
    if "best_epoch" in top:  # a whole number, also beside the failed rows' blanks
        top["best_epoch"] = top["best_epoch"].astype("Int64")
    if metric is not None and metric not in top.columns:
        top = top.rename(columns={"value": metric})
    return top


@dataclass(frozen=True)
class CurveSplit:
    """The trials a view of learning curves draws one by one (`top`, best first) and
    those it shows only as a band per epoch: their median and quartiles (`others`),
    one band per sweep when several are compared."""
    top: pd.DataFrame
    others: pd.DataFrame
    metric: str  # the objective that ranked them

    @property
    def sweeps(self) -> list[str]:
        """The compared sweeps with a band (each its own); [""] for one sweep alone."""
        return self.others["sweep"].unique().tolist() if "sweep" in self.others else [""]

    def note(self) -> str:
        """'top 10 of 30 trials by val_acc; the band is the other 20: median and
        quartiles per epoch' (with each sweep's count when several have a band)."""
        total = len(self.top) + len(self.others)
        head = f"top {len(self.top)} of {total} trials by {self.metric}"
        if self.sweeps == [""]:
            return f"{head}; the band is the other {len(self.others)}: median and " \
                "quartiles per epoch"
        counts = ", ".join(f"{name}: {n}" for name, n in
                           self.others.groupby("sweep", sort=False).size().items())
        return f"{head}; each sweep's band is its other trials ({counts}): median and " \
            "quartiles per epoch"


def curve_split(trials: pd.DataFrame, maximize: bool, metric: str) -> CurveSplit | None:
    """The top CURVES_TOP trials and the others, or None for CURVES_EACH trials or
    fewer: a view that small draws every trial as it is."""
    if len(trials) <= CURVES_EACH:
        return None
    ranked = ranked_trials(trials, maximize)
    return CurveSplit(ranked.head(CURVES_TOP), ranked.iloc[CURVES_TOP:], metric)


def band(history: pd.DataFrame, trials: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per epoch (and sweep, when `trials` has several), the quartiles of `column` over
    these trials' histories: [sweep,] epoch, n, q1, median, q3. Values that are not
    finite (a diverged loss) are left out: n says how many are left."""
    keys = [c for c in ("sweep", "run") if c in trials.columns and c in history.columns]
    rows = history.merge(trials[keys], on=keys)
    rows = rows[np.isfinite(rows[column].to_numpy(dtype=float))]
    return rows.groupby([*keys[:-1], "epoch"])[column].agg(
        n="count", q1=lambda v: v.quantile(0.25), median="median",
        q3=lambda v: v.quantile(0.75)).reset_index()


def test_column(trials: pd.DataFrame) -> str | None:
    """trials.csv's test accuracy at the selected epoch; old results have only the
    maximum over epochs (best_test_acc), shown under its own name."""
    return next((c for c in TEST_COLUMNS if c in trials.columns), None)


def config_columns(trials: pd.DataFrame, spec: Spec = DEFAULT) -> list[str]:
    """The columns that identify a configuration: `sweep` when several are compared,
    optimizer, lr and batch size, and every other hyperparameter searched or varying."""
    extra = [c for c in NAMES if c not in CORE and c in trials.columns
             and (c in spec.searched or trials[c].nunique(dropna=False) > 1)]
    return [c for c in ("sweep", *CORE, *extra) if c in trials.columns]


def configurations(trials: pd.DataFrame, spec: Spec = DEFAULT) -> pd.DataFrame:
    """One row per configuration, ranked or not: counts of COMPLETE (n), FAIL and
    PRUNED seeds, the objective's mean, std and 95% interval over the COMPLETE ones
    (clipped to the metric's range), the test accuracy's mean and std, and `values`."""
    keys = config_columns(trials, spec)
    test = test_column(trials)
    bounds = stats.metric_range(spec.metric)
    rows = []
    for key, group in trials.groupby(keys, dropna=False, sort=True):
        done = group[group["state"] == "COMPLETE"]
        values = done["value"].to_numpy(dtype=float)
        low, high = stats.t_interval(values, bounds)
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row |= counts(group) | {"mean": stats.mean(values), "std": stats.std(values),
                                "ci95_low": low, "ci95_high": high}
        if test:
            row |= {f"{test}_mean": done[test].mean(), f"{test}_std": done[test].std()}
        row |= {c: done[c].mean() for c in EXTRAS if c in done}
        rows.append(row | {"values": values})
    return pd.DataFrame(rows, columns=[*_columns(trials, spec), "values"])


def _columns(trials: pd.DataFrame, spec: Spec) -> list[str]:
    test = test_column(trials)
    return [*config_columns(trials, spec), "n", "n_failed", "n_pruned", "mean", "std",
            "ci95_low", "ci95_high", *([f"{test}_mean", f"{test}_std"] if test else []),
            *[c for c in EXTRAS if c in trials.columns]]


def leaderboard(trials: pd.DataFrame, spec: Spec = DEFAULT,
                configs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every configuration with a COMPLETE seed, ranked by the objective's mean over
    them; rank 1 is the leader, and every row its verdict against it (stats.verdicts):
    leader, worse (Welch's t, Holm-adjusted over the rows tested: p_vs_leader, p_holm),
    equivalent (Welch's TOST within spec.margin: p_tost) or undetermined, with the seeds
    per configuration that would decide it. Tests need 2+ seeds on both sides.
    `configs`: configurations(trials, spec), when already at hand."""
    configs = configurations(trials, spec) if configs is None else configs
    board = configs[configs["n"] > 0].sort_values("mean", ascending=not spec.maximize,
                                                  kind="stable").reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    verdicts = stats.verdicts(list(board["values"]), spec.maximize, spec.alpha, spec.margin)
    for column in ("p_vs_leader", "p_holm", "p_tost", "verdict"):
        board[column] = [getattr(v, column) for v in verdicts]
    board["seeds_to_decide"] = pd.array([v.seeds_to_decide for v in verdicts], dtype="Int64")
    columns = _columns(trials, spec)
    extras = [c for c in EXTRAS if c in columns]
    return board[["rank", *[c for c in columns if c not in extras], *VERDICT_COLUMNS,
                  *extras]]


def by_optimizer(trials: pd.DataFrame, spec: Spec = DEFAULT,
                 board: pd.DataFrame | None = None) -> pd.DataFrame:
    """The best configuration of each optimizer (of each sweep), best first, with how
    many of the optimizer's trials failed or were pruned; an optimizer with no COMPLETE
    trial is listed last with its counts. `board`: the leaderboard, when at hand."""
    board = leaderboard(trials, spec) if board is None else board
    keys = [c for c in ("sweep", OPTIMIZER) if c in trials.columns]
    best = board.drop_duplicates(keys, keep="first")
    totals = trials.groupby(keys, dropna=False)["state"].agg(
        optimizer_trials="size", optimizer_failed=lambda s: int((s == "FAIL").sum()),
        optimizer_pruned=lambda s: int((s == "PRUNED").sum())).reset_index()
    table = totals.merge(best, on=keys, how="left")
    table = table.astype({c: "Int64" for c in ("rank", "n", "n_failed", "n_pruned")})
    table = table.sort_values(["rank"], na_position="last", kind="stable")
    front = [c for c in board.columns if c not in ("p_vs_leader", "p_tost", *EXTRAS)]
    return table[front + list(totals.columns.drop(keys))].reset_index(drop=True)


def failures(trials: pd.DataFrame, spec: Spec = DEFAULT) -> pd.DataFrame:
    """FAIL and PRUNED trials by configuration, state and reason ('diverged: ...', an
    exception); `ranked` is false where no seed of the configuration completed, so it is
    not on the leaderboard. Unranked configurations first, then the most frequent."""
    keys = config_columns(trials, spec)
    complete = trials.assign(_done=trials["state"] == "COMPLETE").groupby(
        keys, dropna=False)["_done"].transform("any")
    bad = trials[trials["state"] != "COMPLETE"].assign(
        reason=lambda t: t["error"].astype(object).fillna("").astype(str).map(_reason),
        ranked=complete[trials["state"] != "COMPLETE"])
    table = bad.groupby([*keys, "state", "reason", "ranked"], dropna=False).agg(
        count=("run", "size"), runs=("run", ", ".join)).reset_index()
    columns = [*keys, "state", "reason", "count", "ranked", "runs"]
    return table.sort_values(["ranked", "count"], ascending=[True, False],
                             kind="stable")[columns].reset_index(drop=True)


def _reason(error: str) -> str:
    """'diverged: train loss is nan at epoch 2' -> 'diverged: train loss is nan'."""
    if error.startswith("diverged"):
        return error.split(" at epoch")[0]
    return error or "pruned"


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Hyperparameter columns as unique labels, so no two values print alike."""
    out = frame.copy()
    for column in NAMES:
        if column in out.columns and pd.api.types.is_float_dtype(out[column]):
            names = bins.labels(out[column].dropna().tolist())
            out[column] = out[column].map(names).astype(object)
    return out


def counts(group: pd.DataFrame) -> dict[str, Any]:
    """n, n_failed, n_pruned of a group of trials."""
    state = group["state"]
    return {"n": int((state == "COMPLETE").sum()), "n_failed": int((state == "FAIL").sum()),
            "n_pruned": int((state == "PRUNED").sum())}


def with_verdicts(top: pd.DataFrame, trials: pd.DataFrame, board: pd.DataFrame,
                  spec: Spec) -> pd.DataFrame:
    """The top trials with their configuration's verdict (the leaderboard's), blank for
    a trial whose configuration is not ranked (every seed of it failed)."""
    keys = config_columns(trials, spec)
    if board.empty or "verdict" not in board or not keys:
        return top
    runs = trials[["run", *keys]].drop_duplicates("run")
    verdicts = runs.merge(board[[*keys, "verdict"]], on=keys, how="left").set_index("run")
    top = top.copy()
    top.insert(list(top.columns).index("seed") + 1 if "seed" in top else len(top.columns),
               "verdict", top["run"].map(verdicts["verdict"]))
    return top
