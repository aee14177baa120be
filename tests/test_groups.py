"""Sweeps with population training: trials grouped into fused populations must give the
results of the same trials run one at a time, each member a whole trial."""

import math
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from conftest import SHELL_ENV, count_trials, run_cli, small_config

import harness.groups
from harness.book import TrialBook
from harness.data import load_dataset
from harness.lenet import LeNet
from harness.parse import parse_config
from harness.study.claims import DEAD
from harness.sweep import SweepInterrupted, SweepOptions, run_sweep
from harness.train import evaluate
from harness.trainers.fused import FusedTrainer
from harness.trainers.population import PopulationTrainer
from harness.trial import run_books
from harness.types import Training, TrialSpec

# Relative, for losses. On the CPU a population's members train and are measured bit
# for bit as their trials alone (each through LeNet's own forward and its own loss).
TOLERANCE = 0.0
LOSSES = ["train_loss", "val_loss", "test_loss"]
# Two optimizers, two learning rates, two seeds: two populations of four.
RAW = small_config(search={"seeds": [0, 1], "space": {
    "lr": [0.01, 0.03], "batch_size": [32], "optimizer": ["sgd", "adam"]}})
# With rmsprop too, three populations of four. rmsprop at these rates is chaotic (alone,
# one seed of lr 0.01 completes and the other diverges): any difference in arithmetic
# between a population and its trials alone would show.
MIXED = small_config(search={"seeds": [0, 1], "space": {
    "lr": [0.01, 0.03], "batch_size": [32], "optimizer": ["sgd", "adam", "rmsprop"]}})


def sweep(raw, out, **options):
    return run_sweep(parse_config(raw), SweepOptions(out=out, progress=False, **options))


@pytest.fixture
def sizes(monkeypatch):
    """The size of every population the sweep trained."""
    seen = []

    class Spy(FusedTrainer):
        def __init__(self, specs, *args):
            seen.append(len(specs))
            super().__init__(specs, *args)

    monkeypatch.setattr(harness.groups, "FusedTrainer", Spy)
    return seen


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential") / "r"
    sweep(RAW, out, population="off")
    return out


@pytest.fixture(scope="module")
def mixed_alone(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed") / "r"
    sweep(MIXED, out, population="off")
    return out


def by_run(out, name):
    table = pd.read_csv(out / name)
    return table.set_index(["run", "epoch"] if name == "history.csv" else "run").sort_index()


def texts(column):
    return ["" if pd.isna(value) else value for value in column]


def assert_same_results(out, reference, runs=None, tolerance=TOLERANCE):
    """trials.csv and history.csv of `out` equal the reference's (on `runs`)."""
    for name, losses in (("trials.csv", ["value", "val_loss", "test_loss", "final_train_loss",
                                         "final_test_loss"]), ("history.csv", LOSSES)):
        got, want = by_run(out, name), by_run(reference, name)
        if runs is not None:
            want = want[want.index.get_level_values("run").isin(runs)]
            got = got[got.index.get_level_values("run").isin(runs)]
        assert list(got.index) == list(want.index)
        # NaN where a failed trial has no value: in both, or the check fails.
        assert np.allclose(got[losses], want[losses], rtol=tolerance, atol=0, equal_nan=True)
        assert got["val_acc"].astype(float).equals(want["val_acc"].astype(float))
        if name == "trials.csv":
            assert got["best_epoch"].astype(float).equals(want["best_epoch"].astype(float))
            assert got["state"].tolist() == want["state"].tolist()
            assert texts(got["error"]) == texts(want["error"])


def test_a_population_sweep_gives_the_results_of_one_at_a_time(tmp_path, mixed_alone,
                                                                  sizes):
    outcome = sweep(MIXED, tmp_path / "r", population=4)
    assert sorted(sizes) == [4, 4, 4] and outcome.ran == 12
    assert_same_results(tmp_path / "r", mixed_alone)  # the same trials diverged, too
    complete = outcome.trials[outcome.trials.state == "COMPLETE"]
    assert set(complete.optimizer) == {"sgd", "adam", "rmsprop"}
    # Every member's checkpoint is a plain LeNet that reproduces its test accuracy.
    data = load_dataset(parse_config(MIXED).data, torch.device("cpu"))
    for row in complete.itertuples():
        model = LeNet()
        model.load_state_dict(torch.load(tmp_path / "r" / "checkpoints" / f"{row.run}.pt",
                                         weights_only=True))
        _, test_acc = evaluate(model, data.x_test, data.y_test, 1000)
        assert test_acc == pytest.approx(row.test_acc, abs=1 / len(data.y_test)), row.run


def test_the_cuda_paths_grouped_convolutions_in_a_sweep(tmp_path, one_at_a_time, sizes,
                                                         monkeypatch):
    """The sweep as it runs on CUDA, with one grouped convolution for all members: the
    results of one at a time, up to float32 rounding (1e-4 relative over two epochs)."""
    import harness.trainers.population

    monkeypatch.setattr(harness.trainers.population, "default_conv", lambda d: "grouped")
    outcome = sweep(RAW, tmp_path / "r", population=4)
    assert sorted(sizes) == [4, 4] and (outcome.trials.state == "COMPLETE").all()
    assert_same_results(tmp_path / "r", one_at_a_time, tolerance=1e-4)
    differs = pd.read_csv(tmp_path / "r" / "history.csv")["train_loss"].to_numpy() != \
        pd.read_csv(one_at_a_time / "history.csv")["train_loss"].to_numpy()
    assert differs.any()  # the grouped convolution did run: it rounds differently


def test_a_member_that_diverges_fails_and_the_others_are_untouched(tmp_path, one_at_a_time,
                                                                    sizes):
    raw = small_config(search={"seeds": [0, 1], "space": {
        "lr": [0.01, 1.0e6], "batch_size": [32], "optimizer": ["sgd"]}})
    trials = sweep(raw, tmp_path / "r", population=4).trials.set_index("lr")
    assert sizes == [4]
    assert (trials.loc[1.0e6, "state"] == "FAIL").all()
    assert trials.loc[1.0e6, "error"].str.startswith("diverged: train loss is nan at epoch 1").all()
    kept = list(trials.loc[0.01, "run"])
    assert_same_results(tmp_path / "r", one_at_a_time, runs=kept)


def test_optuna_with_a_population_and_the_median_pruner(tmp_path, sizes):
    raw = small_config(train={"epochs": 3}, search={
        "method": "optuna", "n_trials": 8, "sampler": "tpe", "pruner": "median",
        "space": {"lr": {"low": 1e-4, "high": 0.5, "log": True}, "optimizer": ["sgd"]}})
    trials = sweep(raw, tmp_path / "r", population=4).trials
    assert 4 in sizes  # the sampler's four points trained as one population
    assert len(trials) == 8 and set(trials.state) <= {"COMPLETE", "PRUNED"}
    assert not trials.duplicated(["lr", "optimizer", "seed"]).any()
    pruned = trials[trials.state == "PRUNED"]
    assert not pruned.empty and (pruned.epochs < 3).all()  # members stopped early
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/r/study.db")
    for t in study.trials:  # every member reported every epoch it trained, and stopped
        epochs = len(t.user_attrs["result"]["history"])
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
    assert sweep(raw, tmp_path / "r", population=4).ran == 0


def test_ctrl_c_in_a_population_saves_every_member_interrupted_and_reruns(tmp_path,
                                                                           monkeypatch):
    real, calls = PopulationTrainer.epoch, []

    def epoch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PopulationTrainer, "epoch", epoch)
    with pytest.raises(SweepInterrupted):
        sweep(RAW, tmp_path / "r", population=4)
    saved = pd.read_csv(tmp_path / "r" / "trials.csv", keep_default_na=False)
    # The population that was training (the first four), every member interrupted.
    assert len(saved) == 4 and saved.error.eq("interrupted").all()
    outcome = sweep(RAW, tmp_path / "r", population=4)
    assert outcome.ran == 8 and (outcome.trials.state == "COMPLETE").all()
    assert outcome.trials.run.nunique() == 8


def fused_run(specs, training, data):
    """Every member's metrics per epoch, and the trainer."""
    measured = {s.number: [] for s in specs}
    trainer = FusedTrainer(specs, training, data)
    for _ in range(training.epochs):
        for spec, metrics in zip(specs, trainer.epoch(specs), strict=True):
            measured[spec.number].append(metrics)
    return measured, trainer


def four_members():
    """Four sgd trials (lr, momentum and seed apart) and the tiny data set."""
    params = {"optimizer": "sgd", "batch_size": 32, "weight_decay": 0.0}
    specs = [TrialSpec(number=k, run=f"r{k}", seed=k, params=params | {
        "lr": 0.01 * (k + 1), "momentum": 0.3 * k}) for k in range(4)]
    return specs, load_dataset(parse_config(RAW).data, torch.device("cpu"))


@pytest.mark.parametrize("oom_epoch", [1, 2])
def test_out_of_memory_retries_in_smaller_populations(monkeypatch, oom_epoch):
    specs, data = four_members()
    training = Training(epochs=2)
    want, _ = fused_run(specs, training, data)
    real, tried = PopulationTrainer.epoch, []

    def epoch(self, *args, **kwargs):
        tried.append(self.k)
        if self.k > 2 and len(tried) >= oom_epoch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PopulationTrainer, "epoch", epoch)
    got, trainer = fused_run(specs, training, data)
    assert sorted(len(part.numbers) for part in trainer.parts) == [2, 2]
    for number, epochs in want.items():
        for a, b in zip(epochs, got[number], strict=True):
            assert b.train_loss == pytest.approx(a.train_loss, rel=TOLERANCE)
            assert b.test_loss == pytest.approx(a.test_loss, rel=TOLERANCE)
    # The weights, too: a split population is trained again from its seeds.
    for spec in specs:
        model = LeNet()
        model.load_state_dict(trainer.weights(spec))


def test_a_split_after_a_member_stopped_goes_on_with_the_others(monkeypatch):
    """A member stopped (pruned) in epoch 1; out of memory in epoch 2 splits the other
    three, which train on; the split happens once the failed step is let go of."""
    import sys

    specs, data = four_members()
    trainer = FusedTrainer(specs, Training(epochs=2), data)
    for spec in specs:
        trainer.module(spec)  # as run_books asks for every member at the start
    trainer.epoch(specs)
    trainer.stop([specs[3]])
    real_epoch, real_split, during = PopulationTrainer.epoch, FusedTrainer._split, []

    def epoch(self, *args, **kwargs):
        if self.k > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_epoch(self, *args, **kwargs)

    def split(self, *args):
        during.append(sys.exc_info()[0])
        return real_split(self, *args)

    monkeypatch.setattr(PopulationTrainer, "epoch", epoch)
    monkeypatch.setattr(FusedTrainer, "_split", split)
    measured = trainer.epoch(specs[:3])
    assert len(measured) == 3 and all(math.isfinite(m.train_loss) for m in measured)
    assert sorted(len(part.numbers) for part in trainer.parts) == [1, 2]
    assert during == [None]  # not inside the except: the failed step's tensors are freed


def test_out_of_memory_down_to_one_member_fails_the_trials(monkeypatch):
    specs, data = four_members()
    tried = []

    def epoch(self, *args, **kwargs):
        tried.append(self.k)
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(PopulationTrainer, "epoch", epoch)
    training = Training(epochs=2)
    books = [TrialBook(spec, training) for spec in specs]
    results = run_books(books, lambda: FusedTrainer(specs, training, data), data.device)
    assert tried[:3] == [4, 2, 1]  # halved down to one before anything failed
    # Out of memory is a fault of the machine: the trials fail as retryable.
    assert all(r.state == "FAIL" and r.error.startswith("retryable: OutOfMemoryError")
               for r in results)


def test_kill_9_during_a_population_then_the_same_command_completes(tmp_path, write_config):
    raw = small_config(data={"train_size": 1800}, train={"epochs": 3},
                       search={"seeds": [0, 1]})
    config = str(write_config(raw))
    command = [sys.executable, "-m", "harness", "sweep", config, "--out", "r", "--quiet",
               "--population", "4"]
    process = subprocess.Popen(command, cwd=tmp_path, env=SHELL_ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study = tmp_path / "r" / "study.db"
    deadline = time.monotonic() + 180
    while count_trials(study, "RUNNING") < 4:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = run_cli("sweep", config, "--out", "r", "--population", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert len(trials) == 8 and (trials.state == "COMPLETE").all() and trials.run.is_unique
    errors = [t.user_attrs.get("error") for t in optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{study}").trials]
    assert errors.count(DEAD) == 4  # the population that was killed, rerun once each


def test_the_population_is_a_flag_and_a_config_field(tmp_path, write_config):
    line = run_cli("sweep", str(write_config(small_config())), "--population", "many",
                   cwd=tmp_path).stderr.strip()
    assert line == ("harness: --population: 'many' is not valid; use auto, off or the "
                    "number of trials to train together (an integer >= 1)")


def test_members_get_weight_histograms_and_prediction_images_of_their_own(tmp_path):
    """Each member's TensorBoard run: its step losses, histograms of its own weights
    every epoch (the last one's equal to its checkpoint where the last epoch was the
    best) and its own prediction grid at the end."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    raw = small_config(name="tb", logging={"tensorboard": True, "visdom": False},
                       search={"seeds": [0, 1], "space": {
                           "lr": [0.01, 0.03], "batch_size": [32], "optimizer": ["sgd"]}})
    outcome = sweep(raw, tmp_path / "r", population=4)
    assert (outcome.trials.state == "COMPLETE").all() and len(outcome.trials) == 4
    maxima = set()
    for row in outcome.trials.itertuples():
        events = EventAccumulator(str(tmp_path / "r" / "tb" / row.run),
                                  size_guidance={"histograms": 0, "images": 0})
        events.Reload()
        assert "test/predictions" in events.Tags()["images"]
        assert "train/loss_step" in events.Tags()["scalars"]
        logged = events.Histograms("weights/conv1.weight")
        assert [h.step for h in logged] == [1, 2]
        last = logged[-1].histogram_value
        assert last.num == 6 * 1 * 5 * 5
        maxima.add(last.max)
        if row.best_epoch == 2:
            weights = torch.load(tmp_path / "r" / "checkpoints" / f"{row.run}.pt",
                                 weights_only=True)["conv1.weight"]
            assert last.max == pytest.approx(weights.max().item())
            assert last.min == pytest.approx(weights.min().item())
    assert len(maxima) == 4  # each run shows its own member's weights


def test_a_members_module_for_the_sinks_leaves_the_global_rng_as_it_was():
    specs, data = four_members()
    trainer = FusedTrainer(specs, Training(epochs=1), data)
    state = torch.get_rng_state()
    model = trainer.module(specs[1])
    assert torch.equal(state, torch.get_rng_state())
    want = LeNet()
    want.load_state_dict(trainer.weights(specs[1]))  # the member's weights, not new ones
    for name, value in want.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
