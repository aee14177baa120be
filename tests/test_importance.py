"""Hyperparameter importance on grids as big as users run: numbers read as numbers."""

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from harness.reporting.importance import METHOD, MIN_TRIALS, importance
from harness.study.claims import distribution

LRS = tuple(float(v) for v in np.geomspace(1e-4, 1, 50))
MOMENTA = tuple(float(v) for v in np.linspace(0, 0.99, 50))


def grid_study(trials: int, lr_distribution=None, value=None) -> optuna.Study:
    """A study as a grid sweep makes one: every hyperparameter a categorical of its 50
    values (Optuna's view of a grid); the objective peaks at lr 0.01, the momentum
    barely matters, plus noise."""
    rng = np.random.default_rng(0)
    dists = {"lr": lr_distribution or distribution("lr", LRS),
             "momentum": distribution("momentum", MOMENTA),
             "optimizer": distribution("optimizer", ("sgd", "adam"))}
    made = []
    for _ in range(trials):
        params = {"lr": LRS[rng.integers(50)], "momentum": MOMENTA[rng.integers(50)],
                  "optimizer": ("sgd", "adam")[rng.integers(2)]}
        objective = (0.9 - 0.1 * abs(math.log10(params["lr"]) + 2)
                     + 0.01 * params["momentum"] + rng.normal(0, 0.01))
        made.append(create_trial(params=params, distributions=dists,
                                 value=objective if value is None else value))
    study = optuna.create_study(direction="maximize")
    study.add_trials(made)
    return study


def test_a_big_grid_gets_importances_that_sum_to_one_and_name_the_method():
    frame = importance(grid_study(3000))
    assert list(frame.columns) == ["hparam", "importance", "method"]
    assert set(frame.hparam) == {"lr", "momentum", "optimizer"}
    assert frame.importance.sum() == pytest.approx(1.0)
    assert (frame.method == METHOD).all()
    assert frame.hparam[0] == "lr" and frame.importance[0] > 0.9  # it drives the objective


def test_a_grid_of_numbers_is_read_as_numbers_as_a_range_would_be():
    as_grid = importance(grid_study(400))
    as_range = importance(grid_study(400, FloatDistribution(1e-4, 1, log=True)))
    assert isinstance(grid_study(400).trials[0].distributions["lr"],
                      optuna.distributions.CategoricalDistribution)
    assert as_grid.equals(as_range)


def test_too_few_trials_or_a_flat_objective_give_no_importance():
    assert importance(grid_study(MIN_TRIALS - 1)) is None
    assert importance(grid_study(MIN_TRIALS)) is not None
    assert importance(grid_study(50, value=0.5)) is None  # nothing to explain
