"""Every shipped experiment loads (the quick start runs in test_readme.py, as the README
shows it)."""

from pathlib import Path

import pytest
from conftest import ROOT

from harness.parse import load_config
from harness.study.search import total_points

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))


def test_the_shipped_experiments_are_there():
    names = {p.name for p in EXPERIMENTS}
    assert {"quickstart.yaml", "grid.yaml", "optuna.yaml"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_validates_and_selects_on_validation(path: Path):
    config = load_config(path)
    assert config.name and total_points(config) >= 1
    assert config.objective.metric.startswith("val_") and config.data.val_fraction > 0
