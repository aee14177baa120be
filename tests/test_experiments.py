"""Every shipped experiment loads; the quick-start one runs."""

from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, run_cli

from harness.config import load_config
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


def test_the_quickstart_runs_offline_with_one_complete_row_per_point(tmp_path):
    result = run_cli("sweep", str(ROOT / "experiments" / "quickstart.yaml"),
                     "--out", str(tmp_path / "qs"), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = pd.read_csv(tmp_path / "qs" / "trials.csv")
    config = load_config(ROOT / "experiments" / "quickstart.yaml")
    assert len(trials) == total_points(config) == 12
    assert (trials.state == "COMPLETE").all()
    assert trials.dataset.eq("mnist-5k").all()
    assert trials.test_acc.max() > 0.9  # real digits: the best configuration learns
