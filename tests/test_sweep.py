"""Whole sweeps in this process on tiny synthetic data."""

import optuna
import pandas as pd
import pytest
import torch
from conftest import interrupt_epoch, small_config

from harness.config import ConfigError, parse_config
from harness.results import HISTORY_COLUMNS
from harness.sweep import SweepOptions, run_sweep

CONTRACT_COLUMNS = [
    "trial", "run", "state", "optimizer", "lr", "batch_size", "seed", "epochs",
    "best_test_acc", "best_epoch", "final_test_acc", "final_test_loss", "final_train_loss",
    "duration_s", "samples_per_s", "device", "dataset", "params", "mult_adds", "error"]


def sweep(raw, out, **options):
    return run_sweep(parse_config(raw), SweepOptions(out=out, progress=False, **options))


def test_a_grid_sweep_writes_one_complete_row_per_point_and_seed(tmp_path):
    outcome = sweep(small_config(search={"seeds": [0, 1]}), tmp_path / "r")
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert set(CONTRACT_COLUMNS) <= set(trials.columns)
    assert len(trials) == 8 and (trials["state"] == "COMPLETE").all()
    assert trials.groupby(["optimizer", "lr", "batch_size", "seed"]).size().eq(1).all()
    assert trials["params"].eq(44_426).all() and trials["mult_adds"].eq(281_640).all()
    assert trials["dataset"].eq("synthetic").all() and trials["device"].eq("cpu").all()
    assert outcome.ran == 8
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS
    assert len(history) == 8 * 2
    # trials.csv agrees with history.csv.
    best = history.groupby("run")["test_acc"].max()
    assert trials.set_index("run")["best_test_acc"].to_dict() == pytest.approx(best.to_dict())
    for run in trials["run"]:
        state = torch.load(tmp_path / "r" / "checkpoints" / f"{run}.pt", weights_only=True)
        assert state["conv1.weight"].shape == (6, 1, 5, 5)
    assert "synthetic" in (tmp_path / "r" / "config.yaml").read_text()
    assert (tmp_path / "r" / "study.db").exists()
    summary = pd.read_csv(tmp_path / "r" / "model_summary.csv")
    assert summary["params"].sum() == 44_426


def test_running_it_again_trains_nothing(tmp_path):
    sweep(small_config(), tmp_path / "r")
    before = pd.read_csv(tmp_path / "r" / "trials.csv")
    again = sweep(small_config(), tmp_path / "r")
    assert again.ran == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "r" / "trials.csv"), before)


def test_another_config_for_the_same_directory_is_refused_unless_fresh(tmp_path):
    sweep(small_config(), tmp_path / "r")
    other = small_config(search={"space": {"lr": [0.02], "optimizer": ["sgd"]}})
    with pytest.raises(ConfigError, match=r"search.space.lr differs.*--fresh"):
        sweep(other, tmp_path / "r")
    outcome = sweep(other, tmp_path / "r", fresh=True)
    assert outcome.ran == 1 and len(pd.read_csv(tmp_path / "r" / "trials.csv")) == 1
    assert len(list((tmp_path / "r" / "checkpoints").iterdir())) == 1
    # Only logging or the device changed: that is the same sweep, resumed.
    same = {**other, "logging": {"tensorboard": False, "visdom": False}}
    assert sweep(same, tmp_path / "r", device="cpu").ran == 0


def test_a_diverging_trial_fails_and_the_others_complete(tmp_path):
    raw = small_config(search={"space": {"lr": [0.02, 1.0e6], "optimizer": ["sgd"]}})
    trials = sweep(raw, tmp_path / "r").trials.set_index("lr")
    assert trials.loc[0.02, "state"] == "COMPLETE"
    assert trials.loc[1.0e6, "state"] == "FAIL"
    assert trials.loc[1.0e6, "error"].startswith("diverged: train loss is nan")


def test_an_exception_in_one_trial_does_not_stop_the_sweep(tmp_path, monkeypatch):
    import harness.trial

    real = harness.trial.build_optimizer

    def flaky(name, *args, **kwargs):
        if name == "adam":
            raise ValueError("adam is broken today")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(harness.trial, "build_optimizer", flaky)
    trials = sweep(small_config(), tmp_path / "r").trials
    assert (trials[trials.optimizer == "sgd"].state == "COMPLETE").all()
    failed = trials[trials.optimizer == "adam"]
    assert (failed.state == "FAIL").all()
    assert (failed.error == "ValueError: adam is broken today").all()


def test_the_same_config_and_seed_give_the_same_results(tmp_path):
    a = sweep(small_config(), tmp_path / "a").trials
    b = sweep(small_config(), tmp_path / "b").trials
    assert a["best_test_acc"].tolist() == b["best_test_acc"].tolist()
    assert a["final_train_loss"].tolist() == b["final_train_loss"].tolist()


def test_an_optuna_sweep_with_pruning(tmp_path):
    raw = small_config(train={"epochs": 3}, search={
        "method": "optuna", "n_trials": 8, "sampler": "tpe", "pruner": "median",
        "space": {"lr": {"low": 1e-4, "high": 0.5, "log": True}, "optimizer": ["sgd", "adam"]}})
    outcome = sweep(raw, tmp_path / "r")
    trials = outcome.trials
    assert len(trials) == 8 and set(trials.state) <= {"COMPLETE", "PRUNED", "FAIL"}
    assert trials.lr.between(1e-4, 0.5).all()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'r'}/study.db")
    assert len(study.trials) == 8
    # Resuming an optuna sweep runs nothing more once n_trials exist.
    assert sweep(raw, tmp_path / "r").ran == 0


def test_an_interrupted_trial_is_saved_and_rerun(tmp_path, monkeypatch):
    from harness.sweep import SweepInterrupted

    interrupt_epoch(monkeypatch, at=3)  # the first epoch of the second trial
    with pytest.raises(SweepInterrupted):
        sweep(small_config(), tmp_path / "r")
    trials = pd.read_csv(tmp_path / "r" / "trials.csv", keep_default_na=False)
    assert trials.state.tolist() == ["COMPLETE", "FAIL"]
    assert trials.error.tolist() == ["", "interrupted"]
    outcome = sweep(small_config(), tmp_path / "r")
    assert outcome.ran == 3
    assert (outcome.trials.state == "COMPLETE").all() and len(outcome.trials) == 4


def test_a_dry_run_runs_every_point_briefly_and_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = small_config(train={"epochs": 50})
    outcome = sweep(raw, None, dry_run=True)
    assert outcome.ran == 4 and (outcome.trials.epochs == 1).all()
    assert not outcome.out.exists() and not (tmp_path / "results").exists()
    kept = sweep(raw, tmp_path / "dry", dry_run=True)
    assert (kept.out / "trials.csv").exists()


def test_train_diverge_above_decides_which_trials_diverged(tmp_path):
    raw = small_config(train={"momentum": 0.0}, search={"space": {
        "lr": [0.05, 10.0], "batch_size": [32], "optimizer": ["sgd"]}})
    trials = sweep(raw, tmp_path / "a").trials.set_index("lr")
    assert trials.loc[0.05, "state"] == "COMPLETE"
    assert trials.loc[10.0, "state"] == "FAIL" and trials.loc[10.0, "epochs"] == 1
    assert trials.loc[10.0, "error"].startswith("diverged: train loss is ")
    raw["train"]["diverge_above"] = 1e30
    assert (sweep(raw, tmp_path / "b").trials.state == "COMPLETE").all()
