"""Populations whose freed places are filled again: a trial that joins a running
population trains as its trial alone, every finished member is recorded once and as
soon as it finishes, kill -9 in the middle loses and duplicates nothing, and a device
that fails stops the sweep once, its running trials saved to run again."""

import signal
import sqlite3
import subprocess
import sys
import threading
import time

import optuna
import pandas as pd
import pytest
import torch
from conftest import SHELL_ENV, count_trials, run_cli, small_config
from test_groups import assert_same_results, sweep

import harness.groups
from harness.data import load_dataset
from harness.errors import MachineFault
from harness.parse import parse_config
from harness.record import Recorder
from harness.study.claims import DEAD
from harness.trainers.fused import FusedTrainer
from harness.trainers.fused_optim import FUSED_OPTIMIZERS
from harness.trainers.population import PopulationTrainer
from harness.trainers.single import SingleTrainer
from harness.types import Training, TrialSpec

# lr 1e6 diverges in the first epoch: its place is free while the others go on, and
# the next points join them at their second epoch.
LATE = small_config(train={"epochs": 3}, search={"seeds": [0, 1], "space": {
    "lr": [1.0e6, 0.01, 0.03], "batch_size": [32], "optimizer": ["sgd"]}})


@pytest.fixture
def joins(monkeypatch):
    """The trial numbers that joined a running population, and the populations made."""
    seen = {"made": [], "joined": []}

    class Spy(FusedTrainer):
        def __init__(self, specs, *args):
            seen["made"].append([spec.number for spec in specs])
            super().__init__(specs, *args)

        def join(self, specs):
            seen["joined"].extend(spec.number for spec in specs)
            super().join(specs)

    monkeypatch.setattr(harness.groups, "FusedTrainer", Spy)
    return seen


@pytest.fixture(scope="module")
def late_alone(tmp_path_factory):
    out = tmp_path_factory.mktemp("late") / "r"
    sweep(LATE, out, population="off")
    return out


def test_points_that_join_a_running_population_give_the_results_of_one_at_a_time(
        tmp_path, late_alone, joins):
    outcome = sweep(LATE, tmp_path / "r", population=4)
    assert joins["made"] == [[0, 1, 2, 3]] and sorted(joins["joined"]) == [4, 5]
    assert outcome.ran == 6
    assert_same_results(tmp_path / "r", late_alone)  # bit for bit, late joiners too
    trials = outcome.trials.set_index("lr")
    assert (trials.loc[1.0e6, "state"] == "FAIL").all()
    assert (trials.loc[[0.01, 0.03], "state"] == "COMPLETE").all()
    # A grid's pruner stops nothing: its reports are written with the result, every
    # epoch's objective as it would have been reported (not a diverged epoch's).
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/r/study.db")
    for t in study.trials:
        mine = history[history.run == t.user_attrs["run"]].set_index("epoch")["val_acc"]
        if t.user_attrs["error"].startswith("diverged"):
            mine = mine.iloc[:-1]
        assert t.intermediate_values == pytest.approx(mine.to_dict())


@pytest.mark.parametrize("optimizer", list(FUSED_OPTIMIZERS))
def test_a_trial_that_joins_the_fused_trainer_measures_as_the_single_trainer(optimizer):
    """FusedTrainer.join and stop: a member that joins at the others' second epoch and
    one that leaves after the first measure exactly what the single trainer measures."""
    data = load_dataset(parse_config(small_config()).data, torch.device("cpu"))
    training = Training(epochs=3)
    lr = 0.01 if optimizer == "sgd" else 0.002
    params = {"optimizer": optimizer, "batch_size": 32, "momentum": 0.9,
              "weight_decay": 1e-3, "lr": lr}
    specs = [TrialSpec(number=k, run=f"r{k}", seed=k, params=params | {"lr": lr * (k + 1)})
             for k in range(3)]
    trainer = FusedTrainer(specs[:2], training, data)
    got = {spec.number: [] for spec in specs}
    for spec, metrics in zip(specs[:2], trainer.epoch(specs[:2]), strict=True):
        got[spec.number].append(metrics)
    trainer.stop([specs[0]])
    trainer.join([specs[2]])
    for _ in range(2):
        for spec, metrics in zip(specs[1:], trainer.epoch(specs[1:]), strict=True):
            got[spec.number].append(metrics)
    for spec in specs:
        alone = SingleTrainer(spec, training, data)
        for metrics in got[spec.number]:
            [want] = alone.epoch([spec])
            for name in ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc",
                         "seen", "steps", "step_losses"):
                assert getattr(metrics, name) == getattr(want, name), (spec.number, name)
        if spec.number:  # still a member: its weights are its trial's
            weights = trainer.weights(spec)
            for name, value in alone.weights(spec).items():
                assert torch.equal(weights[name], value), name


OPTUNA = small_config(train={"epochs": 3}, search={
    "method": "optuna", "n_trials": 14, "sampler": "tpe", "pruner": "median",
    "space": {"lr": {"low": 1e-4, "high": 0.5, "log": True},
              "optimizer": ["sgd", "adam"]}})


def test_refills_under_the_median_pruner_record_every_trial_once(tmp_path, joins,
                                                                 monkeypatch):
    real, when = Recorder.record, []

    def record(self, claim, result, lease):
        when.append(len(calls))  # the population's epochs so far
        return real(self, claim, result, lease)

    calls = []
    real_epoch = PopulationTrainer.epoch

    def epoch(self, *args, **kwargs):
        calls.append(self.k)
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Recorder, "record", record)
    monkeypatch.setattr(PopulationTrainer, "epoch", epoch)
    trials = sweep(OPTUNA, tmp_path / "r", population=4).trials
    assert joins["joined"]  # freed places were filled at the others' epoch boundaries
    assert max(calls) <= 4  # never more than four places
    assert when[0] < len(calls) - 1  # the first result was recorded while others trained
    assert len(trials) == 14 and trials.run.is_unique
    assert (trials.state == "PRUNED").any() and (trials.state == "COMPLETE").any()
    failed = trials[trials.state == "FAIL"]  # adam at the top of the range diverges
    assert failed.error.str.startswith("diverged").all()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/r/study.db")
    points = [t for t in study.trials if "point" in t.user_attrs]
    assert len(points) == 14 and all(t.state.is_finished() for t in study.trials)
    assert sorted(t.user_attrs["run"] for t in points) == sorted(trials.run)
    for t in points:  # every member reported every epoch it trained, its own count
        epochs = len(t.user_attrs["result"]["history"])
        diverged = t.user_attrs["error"].startswith("diverged")  # its last is no report
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1 - diverged))
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert len(history) == len(history.drop_duplicates(["run", "epoch"]))
    assert sweep(OPTUNA, tmp_path / "r", population=4).ran == 0


def test_kill_9_in_the_middle_of_refills_then_the_same_command_completes(tmp_path,
                                                                        write_config):
    raw = small_config(data={"train_size": 1200}, train={"epochs": 3},
                       search={"seeds": [0, 1], "space": {
                           "lr": [1.0e6, 0.01, 0.03, 0.05], "batch_size": [32],
                           "optimizer": ["sgd"]}})
    config = str(write_config(raw))
    command = [sys.executable, "-m", "harness", "sweep", config, "--out", "r", "--quiet",
               "--population", "4"]
    process = subprocess.Popen(command, cwd=tmp_path, env=SHELL_ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study = tmp_path / "r" / "study.db"
    deadline = time.monotonic() + 240
    while not refilled(study):  # the divergers recorded, their places taken by others
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = run_cli("sweep", config, "--out", "r", "--population", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert len(trials) == 8 and trials.run.is_unique
    assert set(trials[trials.lr == 1.0e6].state) == {"FAIL"}
    assert (trials[trials.lr != 1.0e6].state == "COMPLETE").all()
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert len(history) == len(history.drop_duplicates(["run", "epoch"]))
    assert set(history.run) == set(trials.run)
    attempts = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study}").trials
    dead = [t.user_attrs["run"] for t in attempts if t.user_attrs.get("error") == DEAD]
    # The four that were training, and a diverger whose result the bookkeeping thread
    # had not yet recorded when the process died: each rerun once, recorded once.
    assert 4 <= len(dead) <= 6 and len(set(dead)) == len(dead)
    assert len(attempts) == 8 + len(dead)


def refilled(db):
    """Whether a trial claimed after the first four is RUNNING (it took a freed place)."""
    if not db.exists() or count_trials(db, "RUNNING") < 4:
        return False
    connection = sqlite3.connect(db, timeout=10)
    try:
        return connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING' "
                                  "AND number >= 4").fetchone()[0] > 0
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


STICKY = [torch.AcceleratorError("CUDA error: device-side assert triggered"),
          RuntimeError("CUDA error: an illegal memory access was encountered")]


@pytest.mark.parametrize("fault", STICKY, ids=["AcceleratorError", "RuntimeError"])
def test_a_sticky_cuda_error_in_a_population_stops_the_sweep_once(tmp_path, monkeypatch,
                                                                  fault, joins):
    """The device fails in the second epoch: the trials that were training are recorded
    retryable, no other trial is tried, and the same command then runs everything."""
    real, calls = PopulationTrainer.epoch, []

    def epoch(self, *args, **kwargs):
        calls.append(self.k)
        if len(calls) == 2:
            raise fault
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PopulationTrainer, "epoch", epoch)
    with pytest.raises(MachineFault, match="the device failed"):
        sweep(LATE, tmp_path / "r", population=4)
    assert calls == [4, 4]  # not a population more (the second: two went on, two joined)
    saved = pd.read_csv(tmp_path / "r" / "trials.csv", keep_default_na=False)
    assert len(saved) == 6 and (saved.state == "FAIL").all()
    # The divergers stopped in the first epoch: recorded as such, or, when the fault
    # came before their bookkeeping was done (a failed device cannot finish them),
    # retryable too.
    assert saved[saved.lr == 1.0e6].error.str.startswith(("diverged", "retryable")).all()
    assert (saved[saved.lr != 1.0e6].error.str.startswith(
        f"retryable: {type(fault).__name__}: CUDA error")).all()
    monkeypatch.setattr(PopulationTrainer, "epoch", real)
    outcome = sweep(LATE, tmp_path / "r", population=4)
    assert 4 <= outcome.ran <= 6 and outcome.trials.run.is_unique
    assert len(outcome.trials) == 6
    assert (outcome.trials[outcome.trials.lr != 1.0e6].state == "COMPLETE").all()


def test_a_sticky_cuda_error_one_trial_at_a_time_stops_the_sweep_once(tmp_path,
                                                                      monkeypatch):
    import harness.trainers.single

    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        raise torch.AcceleratorError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(harness.trainers.single, "train_epoch", failing)
    with pytest.raises(MachineFault):
        sweep(small_config(), tmp_path / "r")
    assert calls == [1]
    saved = pd.read_csv(tmp_path / "r" / "trials.csv", keep_default_na=False)
    assert len(saved) == 1 and saved.error[0].startswith("retryable: AcceleratorError")


AHEAD = small_config(train={"epochs": 3}, search={"seeds": [0, 1], "space": {
    "lr": [1.0e6, 0.01, 0.03, 0.05], "batch_size": [32], "optimizer": ["sgd"]}})


def test_places_claimed_ahead_while_a_round_trains_give_the_same_results(tmp_path,
                                                                        monkeypatch):
    """On CUDA the places a round frees for sure are claimed while it trains; on the CPU
    too here: the results are those of one at a time, and a Ctrl-C during such a round
    records the claims made ahead as interrupted, to run again."""
    monkeypatch.setattr(harness.groups, "claims_ahead", lambda device: True)
    real, ahead = harness.groups.Lanes._claim_free, []

    def claim_free(self, free, idle, keys):
        seats = real(self, free, idle, keys)
        if threading.current_thread() is not threading.main_thread():
            ahead.extend(seat.claim.spec.number for seat in seats)
        return seats

    monkeypatch.setattr(harness.groups.Lanes, "_claim_free", claim_free)
    sweep(AHEAD, tmp_path / "alone", population="off")
    outcome = sweep(AHEAD, tmp_path / "r", population=4)
    assert ahead == [6, 7] and outcome.ran == 8
    assert_same_results(tmp_path / "r", tmp_path / "alone")
    calls, real_epoch = [], PopulationTrainer.epoch

    def epoch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the round during which 6 and 7 are claimed ahead
            raise KeyboardInterrupt
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(PopulationTrainer, "epoch", epoch)
    with pytest.raises(KeyboardInterrupt):
        sweep(AHEAD, tmp_path / "stopped", population=4)
    saved = pd.read_csv(tmp_path / "stopped" / "trials.csv", keep_default_na=False)
    assert sorted(saved.trial) == list(range(8))
    assert saved[saved.lr != 1.0e6].error.eq("interrupted").all()
    monkeypatch.setattr(PopulationTrainer, "epoch", real_epoch)
    assert sweep(AHEAD, tmp_path / "stopped", population=4).ran == 6


def test_a_sticky_cuda_error_is_exit_1_with_one_line(tmp_path, monkeypatch, capsys,
                                                      write_config):
    import harness.trainers.single
    from harness.cli import main

    def failing(*args, **kwargs):
        raise torch.AcceleratorError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(harness.trainers.single, "train_epoch", failing)
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", str(write_config(small_config())), "--out", "r", "--quiet"]
    assert main(argv) == 1
    assert capsys.readouterr().err.splitlines() == [
        "harness: the device failed (AcceleratorError: CUDA error: device-side assert "
        "triggered); the trials that were running are saved to run again: run the same "
        "command (a new process gets a new CUDA context)"]
