import errno
import math
import re

import pytest
import torch

from harness.config import DataConfig
from harness.data import load_dataset
from harness.device import resolve_device, setup_device
from harness.errors import ConfigError
from harness.lenet import LeNet
from harness.sinks.base import MemorySink
from harness.sinks.guard import Guarded, Switch, guarded
from harness.trial import run_trial
from harness.types import INTERRUPTED, Training, TrialSpec

CPU = torch.device("cpu")
ADAM = {"optimizer": "adam", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}
PARAMS = {"lr": 0.02, "batch_size": 32, "optimizer": "sgd", "momentum": 0.9,
          "weight_decay": 0.0}


@pytest.fixture(scope="module")
def data():
    return load_dataset(DataConfig(dataset="synthetic", train_size=256, test_size=128), CPU)


def spec(**changes) -> tuple[TrialSpec, Training]:
    """A trial's point and its training, each with `changes` to its own fields."""
    point = {"number": 0, "run": "0000-sgd", "params": PARAMS, "seed": 0}
    training = {"epochs": 2}
    for key, value in changes.items():
        (point if key in point else training)[key] = value
    return TrialSpec(**point), Training(**training)


def test_a_trial_reports_every_epoch_to_every_sink(data, tmp_path):
    sink = MemorySink()
    result = run_trial(*spec(), data, [sink], checkpoint=tmp_path / "best.pt")
    assert result.state == "COMPLETE" and result.error == ""
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert [step for _, step in sink.logged] == [1, 2]
    assert sink.started == [result.spec] and sink.finished == [result]
    assert result.samples_per_s > 0 and result.duration_s > 0
    assert result.value == max(h["val_acc"] for h in result.history)
    # The best weights load into a fresh LeNet without unpickling code.
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    LeNet().load_state_dict(state)


def test_same_seed_same_numbers_on_the_cpu(data):
    a, b = run_trial(*spec(), data), run_trial(*spec(), data)
    assert a.history[-1]["test_acc"] == b.history[-1]["test_acc"]
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    c = run_trial(*spec(seed=1), data)
    assert [h["train_loss"] for h in c.history] != [h["train_loss"] for h in a.history]


def test_a_diverging_trial_fails_with_the_reason(data):
    result = run_trial(*spec(params={**PARAMS, "lr": 1e6}, epochs=3), data)
    assert result.state == "FAIL"
    assert result.error.startswith("diverged: train loss is nan at epoch 1")
    assert len(result.history) == 1 and math.isnan(result.history[0]["train_loss"])


def test_a_loss_above_diverge_above_fails_the_trial_there(data):
    # lr 20 without momentum: a train loss of about 9e9 in epoch 1, finite, then it
    # recovers to a useless model. Above the bound (100 by default) is divergence.
    blowing_up = {**PARAMS, "lr": 20.0, "momentum": 0.0}
    free = run_trial(*spec(params=blowing_up, epochs=3, diverge_above=math.inf), data)
    assert free.state == "COMPLETE" and len(free.history) == 3
    loss = free.history[0]["train_loss"]
    assert 100 < loss < math.inf
    result = run_trial(*spec(params=blowing_up, epochs=3), data)
    assert Training(epochs=3).diverge_above == 100
    assert result.state == "FAIL" and len(result.history) == 1
    assert result.error == f"diverged: train loss is {loss:.1e} at epoch 1"
    assert re.fullmatch(r"diverged: train loss is \d\.\de\+\d\d at epoch 1", result.error)
    assert run_trial(*spec(params=blowing_up, epochs=3, diverge_above=loss * 2), data
                     ).state == "COMPLETE"


def test_a_sink_that_raises_is_one_warning_and_the_trials_are_recorded(data, capsys):
    class Broken(MemorySink):  # TensorBoard on a full disk, say
        def finish(self, result):
            super().finish(result)
            raise OSError(errno.ENOSPC, "No space left on device")

    broken, fine = Broken(), MemorySink()
    sinks = guarded([broken, fine])
    first = run_trial(*spec(), data, sinks)
    second = run_trial(*spec(seed=1), data, sinks)
    assert first.state == second.state == "COMPLETE"
    assert fine.finished == [first, second]
    assert broken.finished == [first] and broken.started == [first.spec]  # off after it
    assert capsys.readouterr().err.splitlines() == [
        "harness: warning: broken failed in finish (OSError: [Errno 28] No space left on "
        "device); it is off for the rest of the sweep, the trials go on"]


def test_a_checkpoint_that_cannot_be_written_is_one_warning(data, tmp_path, capsys):
    (tmp_path / "checkpoints").write_text("a file where the directory was")
    path = tmp_path / "checkpoints" / "best.pt"
    result = run_trial(*spec(), data, checkpoint=path)
    assert result.state == "COMPLETE" and result.error == "" and len(result.history) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"harness: warning: checkpoint {path} not saved (")
    assert "File exists" in err[0] and err[0].endswith("the trial's result is recorded "
                                                       "without it")


def test_an_exception_inside_a_trial_is_recorded(data):
    class Exploding(MemorySink):
        def log(self, metrics, step):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB\nmore detail")

    result = run_trial(*spec(), data, [Exploding()])
    assert result.state == "FAIL"
    assert result.error == "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"


def test_ctrl_c_inside_a_trial_becomes_an_interrupted_result(data, tmp_path):
    class CtrlC(MemorySink):
        def log(self, metrics, step):
            raise KeyboardInterrupt

    result = run_trial(*spec(), data, [CtrlC()], checkpoint=tmp_path / "best.pt")
    assert result.state == "FAIL" and result.error == INTERRUPTED and result.interrupted
    assert len(result.history) == 1


def test_the_epoch_callback_prunes(data):
    result = run_trial(*spec(epochs=5), data, on_epoch=lambda m: m["epoch"] >= 2)
    assert result.state == "PRUNED" and len(result.history) == 2


def test_a_trial_that_ran_every_epoch_is_complete_whatever_the_pruner_says(data):
    heard = []

    def prune_from_epoch_2(metrics):
        heard.append(metrics["epoch"])
        return metrics["epoch"] >= 2

    result = run_trial(*spec(epochs=2), data, on_epoch=prune_from_epoch_2)
    assert result.state == "COMPLETE" and len(result.history) == 2
    assert heard == [1, 2]  # the last epoch is still reported, for the other trials


def test_best_epoch_follows_the_objective_direction(data):
    result = run_trial(*spec(epochs=3, metric="test_loss", maximize=False), data)
    losses = [h["test_loss"] for h in result.history]
    assert result.best_epoch == losses.index(min(losses)) + 1


def test_the_gpu_switches_run_on_the_cpu_too(data):
    # bf16 autocast and channels_last are GPU speed switches; CI has no GPU, so the
    # same code path is checked here.
    plain = run_trial(*spec(epochs=4), data)
    fast = run_trial(*spec(amp=True, channels_last=True, epochs=4), data)
    assert fast.state == "COMPLETE"
    losses = [h["train_loss"] for h in fast.history]
    assert losses[-1] < losses[0]
    # bf16 rounds differently, but it learns the same thing.
    assert losses == pytest.approx([h["train_loss"] for h in plain.history], abs=0.05)


def test_fused_optimizers_are_asked_for_on_cuda_only():
    from harness.hyperparams import build_optimizer

    params = list(LeNet().parameters())
    assert build_optimizer(params, ADAM).defaults["fused"] is None
    assert build_optimizer(params, ADAM, fused=True).defaults["fused"]


def test_auto_on_a_cuda_machine_gets_the_gpu_speed_settings(monkeypatch):
    # CI has no GPU: pretend one is there. Resolving a device touches no CUDA state;
    # setting it up switches the speed settings.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    try:
        device = resolve_device("auto")
        assert device == torch.device("cuda") and not torch.backends.cudnn.benchmark
        setup_device(device)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
        with pytest.raises(ConfigError, match="only 1 CUDA devices"):
            resolve_device("cuda:1")
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = flags


def test_sinks_made_per_trial_share_one_switch_per_kind(data, capsys):
    """Trials that run at once each have their own sink; the first error of any of them
    turns the kind off for all, with one warning."""
    class Broken(MemorySink):
        def log(self, metrics, step):
            raise OSError(errno.ENOSPC, "No space left on device")

    switch = Switch()
    broken, later = Broken(), MemorySink()
    first = run_trial(*spec(), data, [Guarded(broken, switch, "tensorboard")])
    second = run_trial(*spec(seed=1), data, [Guarded(later, switch, "tensorboard")])
    assert first.state == second.state == "COMPLETE"
    assert later.started == [] and later.logged == []  # off for the trials after
    assert capsys.readouterr().err.splitlines() == [
        "harness: warning: tensorboard failed in log (OSError: [Errno 28] No space left on "
        "device); it is off for the rest of the sweep, the trials go on"]
