"""Whole sweeps in this process on tiny synthetic data."""

import math

import optuna
import pandas as pd
import pytest
import torch
from conftest import interrupt_epoch, small_config

from harness.data import load_dataset
from harness.errors import ConfigError
from harness.parse import parse_config
from harness.reporting.directory import HISTORY_COLUMNS
from harness.sweep import SweepOptions, run_sweep

CONTRACT_COLUMNS = [
    "trial", "run", "state", "optimizer", "lr", "batch_size", "momentum", "weight_decay",
    "seed", "epochs", "value", "best_epoch", "val_acc", "val_loss", "test_acc", "test_loss",
    "final_test_acc", "final_test_loss", "final_train_loss", "duration_s", "samples_per_s",
    "device", "dataset", "params", "mult_adds", "error"]
CONTRACT_HISTORY = ["trial", "run", "epoch", "train_loss", "val_loss", "val_acc", "test_loss",
                    "test_acc", "epoch_s", "elapsed_s"]


def sweep(raw, out, **options):
    return run_sweep(parse_config(raw), SweepOptions(out=out, progress=False, **options))


def test_a_grid_sweep_writes_one_complete_row_per_point_and_seed(tmp_path):
    outcome = sweep(small_config(search={"seeds": [0, 1]}), tmp_path / "r")
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert list(trials.columns) == CONTRACT_COLUMNS
    assert "best_test_acc" not in trials.columns  # test is reported, never maximized over
    assert len(trials) == 8 and (trials["state"] == "COMPLETE").all()
    assert trials.groupby(["optimizer", "lr", "batch_size", "seed"]).size().eq(1).all()
    assert trials["params"].eq(44_426).all() and trials["mult_adds"].eq(281_640).all()
    assert trials["dataset"].eq("synthetic").all() and trials["device"].eq("cpu").all()
    assert outcome.ran == 8
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS == CONTRACT_HISTORY
    assert len(history) == 8 * 2
    # trials.csv agrees with history.csv: the best epoch is chosen on validation.
    best = history.groupby("run")["val_acc"].max()
    assert trials.set_index("run")["val_acc"].to_dict() == pytest.approx(best.to_dict())
    assert trials.set_index("run")["value"].to_dict() == pytest.approx(best.to_dict())
    for run in trials["run"]:
        state = torch.load(tmp_path / "r" / "checkpoints" / f"{run}.pt", weights_only=True)
        assert state["conv1.weight"].shape == (6, 1, 5, 5)
    assert "synthetic" in (tmp_path / "r" / "config.yaml").read_text()
    assert (tmp_path / "r" / "study.db").exists()
    # optuna-dashboard (and Optuna's plots) name the objective instead of "Objective 0"
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/r/study.db")
    assert study.metric_names == ["val_acc"]
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


def test_the_refusal_names_the_field_with_its_old_and_new_values(tmp_path):
    sweep(small_config(search={"seeds": [0, 1]}), tmp_path / "r")
    cases = [({"data": {"val_fraction": 0.2}},
              "data.val_fraction differs: 0.1 in the sweep, 0.2 now"),
             ({"search": {"seeds": [1]}}, "search.seeds differs: [0, 1] in the sweep, [1] now"),
             ({"train": {"epochs": 3}, "search": {"seeds": [0, 1, 2]}},
              "train.epochs differs: 2 in the sweep, 3 now")]
    for change, message in cases:
        with pytest.raises(ConfigError) as info:
            sweep(small_config(**change), tmp_path / "r")
        assert message in str(info.value) and "only search.seeds (a race's: at the end) " \
            "and search.n_trials may grow" in str(info.value)
    assert len(pd.read_csv(tmp_path / "r" / "trials.csv")) == 8  # nothing was touched


def test_adding_seeds_runs_only_the_new_points_and_keeps_the_old(tmp_path):
    out = tmp_path / "r"
    sweep(small_config(), out)
    before = pd.read_csv(out / "trials.csv")
    grown = sweep(small_config(search={"seeds": [0, 2, 1]}), out)
    assert grown.ran == 8
    after = pd.read_csv(out / "trials.csv")
    assert len(after) == 12 and sorted(after.seed.unique()) == [0, 1, 2]
    pd.testing.assert_frame_equal(after[after.trial.isin(before.trial)].reset_index(drop=True),
                                  before)
    assert after.groupby(["lr", "optimizer"]).seed.nunique().eq(3).all()
    assert "- 2" in (out / "config.yaml").read_text()  # the config that ran is the new one
    assert sweep(small_config(search={"seeds": [0, 2, 1]}), out).ran == 0


def test_an_optuna_sweep_grows_by_seeds_and_trials_in_a_shared_storage(tmp_path):
    def optuna_config(n_trials, seeds):
        return small_config(train={"epochs": 1}, search={
            "method": "optuna", "n_trials": n_trials, "seeds": seeds,
            "space": {"lr": {"low": 1e-3, "high": 0.1, "log": True}, "optimizer": ["sgd"]}})

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    sweep(optuna_config(2, [0]), tmp_path / "a", storage=storage)
    first = pd.read_csv(tmp_path / "a" / "trials.csv")
    # Another results directory on the same study: the study's own config check.
    grown = sweep(optuna_config(3, [0, 1]), tmp_path / "b", storage=storage)
    assert grown.ran == 2 + 2  # seed 1 of the two configurations, then a third with both
    trials = grown.trials
    assert len(trials) == 6
    assert trials.groupby("lr").seed.apply(sorted).tolist() == [[0, 1]] * 3
    kept = trials[trials.trial.isin(first.trial)].reset_index(drop=True)
    assert kept.run.tolist() == first.run.tolist()
    assert kept.lr.tolist() == first.lr.tolist()
    with pytest.raises(ConfigError, match=r"search.n_trials differs: 3 in the sweep, 2 now"):
        sweep(optuna_config(2, [0, 1]), tmp_path / "c", storage=storage)


def test_a_diverging_trial_fails_and_the_others_complete(tmp_path):
    raw = small_config(search={"space": {"lr": [0.02, 1.0e6], "optimizer": ["sgd"]}})
    trials = sweep(raw, tmp_path / "r").trials.set_index("lr")
    assert trials.loc[0.02, "state"] == "COMPLETE"
    assert trials.loc[1.0e6, "state"] == "FAIL"
    assert trials.loc[1.0e6, "error"].startswith("diverged: train loss is nan")


def test_an_exception_in_one_trial_does_not_stop_the_sweep(tmp_path, monkeypatch):
    import harness.trainers.single

    real = harness.trainers.single.build_optimizer

    def flaky(params, values, *args, **kwargs):
        if values["optimizer"] == "adam":
            raise ValueError("adam is broken today")
        return real(params, values, *args, **kwargs)

    monkeypatch.setattr(harness.trainers.single, "build_optimizer", flaky)
    trials = sweep(small_config(), tmp_path / "r").trials
    assert (trials[trials.optimizer == "sgd"].state == "COMPLETE").all()
    failed = trials[trials.optimizer == "adam"]
    assert (failed.state == "FAIL").all()
    assert (failed.error == "ValueError: adam is broken today").all()


def test_the_same_config_and_seed_give_the_same_results(tmp_path):
    a = sweep(small_config(), tmp_path / "a").trials
    b = sweep(small_config(), tmp_path / "b").trials
    assert a["test_acc"].tolist() == b["test_acc"].tolist()
    assert a["val_acc"].tolist() == b["val_acc"].tolist()
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


def test_hyperband_never_prunes_a_trial_at_its_last_epoch(tmp_path):
    raw = small_config(train={"epochs": 3}, search={
        "method": "optuna", "n_trials": 12, "sampler": "random", "pruner": "hyperband",
        "space": {"lr": {"low": 1e-4, "high": 0.5, "log": True}, "optimizer": ["sgd", "adam"]}})
    trials = sweep(raw, tmp_path / "r").trials
    pruned = trials[trials.state == "PRUNED"]
    assert not pruned.empty  # hyperband did stop trials early
    assert (pruned.epochs < 3).all(), pruned[["run", "epochs"]]
    done = trials[trials.epochs == 3]
    assert (done.state == "COMPLETE").all() and len(done) >= 1
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'r'}/study.db")
    # Every epoch was reported to Optuna, the last ones too; a diverged epoch (a lr near
    # 0.5, depending on the draws) stops its trial before it is reported.
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    for t in study.trials:
        epochs = len(t.user_attrs["result"]["history"])
        epochs -= t.user_attrs["error"].startswith("diverged")
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
        # What the pruner compares is the objective, val_acc: never a test metric.
        mine = history[history.run == t.user_attrs["run"]].set_index("epoch")
        for epoch, value in t.intermediate_values.items():
            assert value == pytest.approx(mine.loc[epoch, "val_acc"])


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


def test_without_a_validation_split_the_val_columns_are_empty(tmp_path):
    raw = small_config(data={"val_fraction": 0}, objective={"metric": "test_loss"},
                       search={"space": {"lr": [0.05], "optimizer": ["sgd"]}})
    trials = sweep(raw, tmp_path / "r").trials
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert history.val_acc.isna().all() and history.val_loss.isna().all()
    assert history.test_loss.notna().all() and len(history) == 2
    row = trials.iloc[0]
    assert row.state == "COMPLETE" and pd.isna(row.val_acc) and pd.isna(row.val_loss)
    assert row.best_epoch == history.test_loss.idxmin() + 1 and row.value == row.test_loss


def test_every_trial_of_two_sweeps_and_a_resume_validates_on_the_same_split(tmp_path,
                                                                             monkeypatch):
    from harness.sweep import SweepInterrupted

    def splits(out):
        study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out}/study.db")
        return [t.user_attrs["result"]["val_split"] for t in study.trials]

    raw = small_config(search={"seeds": [0, 1]})
    interrupt_epoch(monkeypatch, at=5)  # in the third trial
    with pytest.raises(SweepInterrupted):
        sweep(raw, tmp_path / "a")
    monkeypatch.undo()
    assert sweep(raw, tmp_path / "a").ran == 6
    other = small_config(search={"seeds": [0, 1]}, data={"train_size": 100})
    sweep(other, tmp_path / "b")
    expected = load_dataset(parse_config(raw).data, torch.device("cpu")).val_digest
    assert splits(tmp_path / "a") == [expected] * 9  # 8 points, one of them run twice
    assert splits(tmp_path / "b") == [expected] * 8  # train_size leaves validation alone


def test_a_dry_run_runs_every_point_briefly_and_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = small_config(train={"epochs": 50})
    outcome = sweep(raw, None, dry_run=True)
    assert outcome.ran == 4 and (outcome.trials.epochs == 1).all()
    assert not outcome.out.exists() and not (tmp_path / "results").exists()
    kept = sweep(raw, tmp_path / "dry", dry_run=True)
    assert (kept.out / "trials.csv").exists()


def test_a_dry_run_calls_only_a_non_finite_loss_divergence(tmp_path):
    # Two batches are the start of training, where the loss is far above an epoch's mean:
    # a bound that a whole epoch would meet is not applied to them.
    raw = small_config(train={"diverge_above": 1e-3})
    assert (sweep(raw, tmp_path / "dry", dry_run=True).trials.state == "COMPLETE").all()
    assert (sweep(raw, tmp_path / "real").trials.state == "FAIL").all()


def test_a_dry_run_computes_no_importance(tmp_path):
    # Nine points are enough for an importance table after a real sweep; a dry run's two
    # batches measure nothing, so it writes none.
    raw = small_config(search={"space": {"lr": [0.01, 0.03, 0.1], "batch_size": [16, 32, 64],
                                         "optimizer": ["sgd"]}})
    kept = sweep(raw, tmp_path / "dry", dry_run=True)
    assert len(kept.trials) == 9 and (kept.trials.state == "COMPLETE").all()
    assert (kept.out / "summary.md").exists()
    assert not (kept.out / "tables" / "importance.csv").exists()


def test_train_diverge_above_decides_which_trials_diverged(tmp_path):
    raw = small_config(train={"momentum": 0.0}, search={"space": {
        "lr": [0.05, 10.0], "batch_size": [32], "optimizer": ["sgd"]}})
    trials = sweep(raw, tmp_path / "a").trials.set_index("lr")
    assert trials.loc[0.05, "state"] == "COMPLETE"
    assert trials.loc[10.0, "state"] == "FAIL" and trials.loc[10.0, "epochs"] == 1
    error = trials.loc[10.0, "error"]
    assert error.startswith("diverged: train loss is ")
    # The first epoch's loss was finite and above 100: a looser bound keeps that trial. Its
    # second epoch may reach nan on some machines' kernels, which always diverges, so the
    # looser sweep runs the one epoch that was seen.
    assert math.isfinite(float(error.split()[4])) and float(error.split()[4]) > 100
    raw["train"]["diverge_above"] = 1e30
    raw["train"]["epochs"] = 1
    assert (sweep(raw, tmp_path / "b").trials.state == "COMPLETE").all()


def test_a_checkpoint_left_by_a_kill_between_the_study_and_its_place_is_put_in_place(
        tmp_path):
    # kill -9 after a result is told to the study and before its checkpoint is renamed:
    # the attempt's file is there, <run>.pt is not. The next command puts it in place;
    # a dropped attempt's file (its trial holds no result) goes.
    outcome = sweep(small_config(), tmp_path / "r")
    checkpoints = tmp_path / "r" / "checkpoints"
    first = outcome.trials.iloc[0]
    left = checkpoints / f".{first.run}.t{first.trial}.pt"
    (checkpoints / f"{first.run}.pt").rename(left)
    dropped = checkpoints / f".{first.run}.t99.pt"
    dropped.write_bytes(left.read_bytes())
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/r/study.db")
    trial = study.ask()  # trial 99 does not exist; make one finished without a result
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    (checkpoints / f".{first.run}.t{trial.number}.pt").write_bytes(left.read_bytes())
    assert sweep(small_config(), tmp_path / "r").ran == 0
    assert (checkpoints / f"{first.run}.pt").exists() and not left.exists()
    assert not (checkpoints / f".{first.run}.t{trial.number}.pt").exists()
    assert dropped.exists()  # no such trial: not this study's to judge
