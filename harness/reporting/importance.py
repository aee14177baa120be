"""Hyperparameter importance for summary.md: which searched values matter.

    frame = importance(study)   # hparam, importance (sums to 1), method; or None

Measured in benchmarks/scale.py: Optuna's fANOVA on a grid costs minutes (a grid makes
every hyperparameter a categorical choice, and fANOVA's cost explodes with the number of
choices: 20 learning rates took over a minute on 400 trials); this forest, reading the
grid's numbers as numbers, takes under a second for 5,000 trials of 50 values each.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

MIN_TRIALS = 8  # importance over fewer trials is mostly noise
METHOD = "random forest, mean decrease in impurity"
TREES = 64  # as Optuna's MeanDecreaseImpurityImportanceEvaluator
MAX_ROWS = 5_000  # trials each tree is fit on: bounded time at any number of trials


def importance(study: optuna.Study) -> pd.DataFrame | None:
    """How much of the objective each varied hyperparameter explains, once enough trials
    differ: the mean decrease in impurity of a random forest fit on the COMPLETE trials'
    values, numbers read as numbers whether a grid or a range gave them."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    params = pd.DataFrame([t.params for t in done])
    varied = sorted(c for c in params.columns if params[c].nunique() > 1)
    if len(done) < MIN_TRIALS or not varied:
        return None
    from sklearn.ensemble import RandomForestRegressor  # 1 s to import: only when needed

    forest = RandomForestRegressor(n_estimators=TREES, max_depth=64, random_state=0,
                                   max_samples=min(len(done), MAX_ROWS), n_jobs=1)
    forest.fit(np.column_stack([_as_numbers(params[c]) for c in varied]),
               np.array([t.value for t in done]))
    weights = forest.feature_importances_
    if not weights.sum() > 0:  # the objective is the same everywhere: nothing to explain
        return None
    frame = pd.DataFrame({"hparam": varied, "importance": weights / weights.sum(),
                          "method": METHOD})
    return frame.sort_values("importance", ascending=False, kind="stable",
                             ignore_index=True)


def _as_numbers(values: pd.Series) -> np.ndarray:
    """Numbers as they are (a tree splits on their order); names as codes."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all() and values.map(type).ne(bool).all():
        return numbers.to_numpy(dtype=float)
    return pd.factorize(values, sort=True)[0].astype(float)
