"""Faults a long sweep meets: damaged data, an unwritable results path, out of memory,
nan in the first step, and malformed configs by the hundred."""

import contextlib
import errno
import io
import re
import string

import optuna
import pandas as pd
import pytest
import sqlalchemy.exc
import torch
import yaml
from conftest import fill, run_cli, small_config, write_idx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.config import DataConfig
from harness.data import load_dataset
from harness.errors import MAX_LINES
from harness.trial import run_trial
from harness.types import Training, TrialSpec


def test_a_truncated_data_file_is_bad_input_that_names_the_files(tmp_path, write_config):
    raw = write_idx(tmp_path / "data")
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    config = small_config(data={"dataset": "mnist", "root": str(tmp_path / "data"),
                                "train_size": None, "test_size": None})
    result = run_cli("sweep", str(write_config(config)), cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot be read" in result.stderr and "truncated" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_an_unwritable_results_path_is_bad_input(tmp_path, write_config, dry_run):
    (tmp_path / "a-file").write_text("not a directory")
    result = run_cli("sweep", str(write_config(small_config())), "--out",
                     str(tmp_path / "a-file" / "results"), *dry_run, cwd=tmp_path)
    assert result.returncode == 2
    assert "--out: cannot write results to" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_out_of_memory_is_retryable_runs_once_more_at_the_end_and_again_on_resume(
        tmp_path, monkeypatch):
    import harness.trainers.single
    from harness.parse import parse_config
    from harness.sweep import SweepOptions, run_sweep

    real, attempts = harness.trainers.single.train_epoch, []

    def oom_for_large_batches(model, optimizer, x, y, batch_size, *args):
        if batch_size == 64:
            attempts.append(len(attempts))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(model, optimizer, x, y, batch_size, *args)

    monkeypatch.setattr(harness.trainers.single, "train_epoch", oom_for_large_batches)
    raw = small_config(search={"space": {"batch_size": [64, 32], "optimizer": ["sgd"]}})
    options = SweepOptions(out=tmp_path, progress=False)
    outcome = run_sweep(parse_config(raw), options)
    by_batch = outcome.trials.set_index("batch_size")
    assert by_batch.loc[32, "state"] == "COMPLETE"
    assert by_batch.loc[64, "state"] == "FAIL"
    assert by_batch.loc[64, "error"] == ("retryable: OutOfMemoryError: CUDA out of memory. "
                                         "Tried to allocate 20.00 GiB")
    # First in the grid, it ran first, then once more after the rest: no endless retry.
    assert len(attempts) == 2 and outcome.ran == 3
    # The memory is free again: the same command runs that point, and only that one.
    monkeypatch.setattr(harness.trainers.single, "train_epoch", real)
    again = run_sweep(parse_config(raw), options)
    assert again.ran == 1 and (again.trials.state == "COMPLETE").all()


@pytest.mark.parametrize(("fault", "retry"), [
    (torch.OutOfMemoryError("CUDA out of memory"), True),
    (MemoryError(), True),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (ConnectionResetError("connection reset by peer"), True),
    (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the "
                                                                  "connection")), True),
    (ValueError("Invalid learning rate: -1"), False),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
    (ZeroDivisionError("division by zero"), False),
])
def test_faults_of_the_machine_are_retryable_faults_of_the_trial_are_results(fault, retry):
    from harness.errors import retryable

    assert (retryable(fault) is not None) == retry
    wrapped = optuna.exceptions.StorageInternalError("An exception is raised during the "
                                                     "commit.")
    wrapped.__cause__ = fault  # as Optuna raises a lost connection: the cause is read
    assert (retryable(wrapped) is not None) == retry
    if retry:
        assert retryable(wrapped).startswith(f"retryable: {type(fault).__name__}")


def test_nan_in_the_first_step_fails_the_trial_as_diverged():
    data = load_dataset(DataConfig(dataset="synthetic", train_size=64, test_size=32),
                        torch.device("cpu"))
    data.x_train[0, 0, 0, 0] = float("nan")  # one damaged pixel
    params = {"lr": 0.01, "batch_size": 64, "optimizer": "sgd", "momentum": 0.9,
              "weight_decay": 0.0}
    result = run_trial(TrialSpec(number=0, run="r", params=params, seed=0), Training(epochs=3),
                       data)
    assert result.state == "FAIL"
    assert result.error == "diverged: train loss is nan at epoch 1"


# ---------------------------------------------------------------- malformed configs

VALID = small_config(name="fuzz")
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                 st.floats(allow_nan=True, allow_infinity=True),
                 st.text(string.printable, max_size=12),
                 st.lists(st.integers(), max_size=3), st.dictionaries(
                     st.text(string.ascii_letters, min_size=1, max_size=5), st.integers(),
                     max_size=2))


def unknown_key(draw):
    section = draw(st.sampled_from(["", "data", "train", "search", "logging"]))
    key = draw(st.text(string.ascii_lowercase + "_", min_size=1, max_size=10))
    valid = {"": ["name", "data", "model", "train", "search", "objective", "logging"],
             "data": ["dataset", "root", "train_size", "test_size", "val_fraction",
                      "split_seed"],
             "train": ["epochs", "seed", "device", "lr", "batch_size", "optimizer",
                       "momentum", "weight_decay", "eval_batch_size", "amp",
                       "channels_last", "diverge_above"],
             "search": ["method", "space", "seeds", "n_trials", "sampler", "pruner"],
             "logging": ["tensorboard", "visdom"]}
    if key in valid[section]:
        key += "_x"
    config = yaml.safe_load(yaml.safe_dump(VALID))
    (config.setdefault(section, {}) if section else config)[key] = 1
    return config


BAD_VALUES = {
    ("train", "epochs"): st.one_of(st.integers(max_value=0), st.text(max_size=5),
                                   st.floats(), st.lists(st.integers(), min_size=1)),
    ("train", "lr"): st.one_of(st.floats(max_value=0), st.text(string.ascii_letters,
                                                               min_size=1, max_size=5)),
    ("train", "device"): st.text(string.ascii_letters, min_size=1, max_size=8).filter(
        lambda d: d not in ("auto", "cpu", "cuda", "mps")),
    ("train", "optimizer"): st.text(max_size=8).filter(
        lambda o: o not in ("sgd", "adam", "adamw", "rmsprop")),
    ("data", "dataset"): st.text(max_size=10).filter(
        lambda d: d not in ("mnist", "mnist-5k", "synthetic")),
    ("data", "train_size"): st.integers(max_value=0),
    ("data", "val_fraction"): st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1),
                                        st.text(string.ascii_letters, min_size=1, max_size=5)),
    ("search", "method"): st.text(max_size=8).filter(lambda m: m not in ("grid", "optuna")),
    ("search", "seeds"): st.lists(st.integers(0, 3), min_size=2, max_size=4).filter(
        lambda s: len(set(s)) < len(s)),
    ("search", "space"): st.one_of(
        st.fixed_dictionaries({"lr": st.lists(st.floats(max_value=0), min_size=1, max_size=3)}),
        st.fixed_dictionaries({"batch_size": st.lists(st.integers(max_value=0), min_size=1)}),
        st.fixed_dictionaries({"optimizer": st.just([])}),
        st.fixed_dictionaries({"lr": st.fixed_dictionaries({"low": st.floats(0.1, 1),
                                                            "high": st.floats(0.1, 1)})}),
        st.integers(), st.text(max_size=5)),
    ("", "name"): st.one_of(st.just(""), st.text("./ \\", min_size=1, max_size=6),
                            st.integers(), st.none()),
}


@st.composite
def bad_configs(draw):
    """A malformed config and how many problems it holds: one, but a list of bad values
    is a problem per value."""
    kind = draw(st.sampled_from(["unknown", "value", "type", "top", "yaml"]))
    if kind == "unknown":
        return yaml.safe_dump(unknown_key(draw)), 1
    if kind == "top":  # the document is not a mapping of sections
        return yaml.safe_dump(draw(st.one_of(st.lists(JUNK, max_size=3), st.integers(),
                                             st.text(string.ascii_letters, min_size=1)))), 1
    if kind == "yaml":  # broken YAML
        return "name: fuzz\ntrain: {epochs: " + draw(st.sampled_from(["[", "{", "'", "]]"])), 1
    config = yaml.safe_load(yaml.safe_dump(VALID))
    if kind == "type":  # a section that is not a mapping
        config[draw(st.sampled_from(["data", "train", "search"]))] = draw(st.one_of(
            st.integers(), st.text(min_size=1, max_size=5), st.lists(st.integers(), min_size=1)))
        return yaml.safe_dump(config), 1
    (section, key) = draw(st.sampled_from(sorted(BAD_VALUES)))
    value = draw(BAD_VALUES[(section, key)])
    (config.setdefault(section, {}) if section else config)[key] = value
    values = next(iter(value.values())) if isinstance(value, dict) else None
    return yaml.safe_dump(config), len(values) if isinstance(values, list) and values else 1


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad=bad_configs())
def test_every_malformed_config_exits_2_with_a_line_per_problem(tmp_path_factory, bad):
    text, problems = bad
    work = tmp_path_factory.mktemp("fuzz")
    path = work / "config.yaml"
    path.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["sweep", str(path), "--out", str(work / "out")])
    lines = err.getvalue().strip().splitlines()
    assert code == 2, text
    # More than MAX_LINES problems end in one line that counts the rest.
    assert len(lines) == min(problems, MAX_LINES), err.getvalue()
    assert all(line.startswith("harness: ") for line in lines), err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert not (work / "out").exists()


def test_tensorboard_on_a_full_disk_is_a_warning_and_every_trial_is_recorded(
        tmp_path, write_config, full_disk):
    full_disk(tmp_path / "r" / "tb")  # only the TensorBoard runs are on the full disk
    raw = small_config(logging={"tensorboard": True, "visdom": False})
    result = run_cli("sweep", str(write_config(raw)), "--out", "r", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert len(trials) == 4 and (trials.state == "COMPLETE").all()
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and "Exception in thread" not in result.stderr
    assert 1 <= len(lines) <= 2, result.stderr  # the experiment summary, then the runs
    assert all(line.startswith("harness: warning: tensorboard") for line in lines), lines
    assert all("No space left on device" in line for line in lines), lines


NO_SPACE_LINE = re.compile(r"harness: (\S+): no space left on device; free some space and run "
                           r"the same command: it goes on where it stopped")


def test_a_full_disk_mid_trial_records_it_retryable_and_stops_the_sweep(
        tmp_path, monkeypatch, full_disk):
    import harness.trainers.single
    from harness.parse import parse_config
    from harness.sweep import SweepOptions, run_sweep

    out = full_disk(tmp_path / "r", free=2_000_000)  # room for the first trial
    real, calls = harness.trainers.single.train_epoch, []

    def fill_in_the_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two epochs a trial
            fill(out, free=120_000)  # room for the study's record, not for a checkpoint
        return real(*args, **kwargs)

    monkeypatch.setattr(harness.trainers.single, "train_epoch", fill_in_the_second_trial)
    config = parse_config(small_config())
    with pytest.raises(OSError) as info:
        run_sweep(config, SweepOptions(out=out, progress=False))
    # The attempt's own checkpoint: it becomes <run>.pt once its result is recorded.
    attempt = out / "checkpoints" / ".0001-adam-lr0.01-bs32-s0.t1.pt"
    checkpoint = out / "checkpoints" / "0001-adam-lr0.01-bs32-s0.pt"
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(attempt)
    assert not attempt.exists() and not checkpoint.exists()
    assert not list(out.glob("checkpoints/.*.tmp"))
    (out / "ballast").unlink()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out}/study.db")
    retryable = f"retryable: no space left on device writing {attempt}"
    assert [(t.state.name, t.user_attrs["error"]) for t in study.trials] == [
        ("COMPLETE", ""), ("FAIL", retryable)]  # and the sweep stopped there
    assert pd.read_csv(out / "trials.csv").error.fillna("").tolist() == ["", retryable]
    monkeypatch.undo()
    trials = run_sweep(config, SweepOptions(out=out, progress=False)).trials
    assert len(trials) == 4 and (trials.state == "COMPLETE").all()  # its point ran again
    assert checkpoint.exists()


def test_a_full_disk_is_one_line_naming_the_file_and_the_same_command_goes_on(
        tmp_path, write_config, full_disk):
    out = full_disk(tmp_path / "r", free=400_000)  # a checkpoint is about 180 kB
    config = str(write_config(small_config()))
    result = run_cli("sweep", config, "--out", "r", "--quiet", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert NO_SPACE_LINE.fullmatch(lines[0]).group(1).startswith("r/"), lines[0]
    (out / "ballast").unlink()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out}/study.db")
    for trial in study.trials:  # the one running is retryable, or RUNNING if the study
        error = trial.user_attrs.get("error") or ""  # itself could not be written
        assert trial.state.name in ("COMPLETE", "RUNNING") or error.startswith(
            "retryable: no space left on device writing r/"), (trial.state, error)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) < 4
    again = run_cli("sweep", config, "--out", "r", "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 4 and (trials.state == "COMPLETE").all() and trials.run.is_unique


@pytest.mark.parametrize("device", ["tpu", "gpu", "meta", "cuda:x"])
def test_device_on_the_command_line_is_checked_as_train_device_is(tmp_path, write_config,
                                                                   device):
    config = str(write_config(small_config()))
    flag = run_cli("sweep", config, "--device", device, "--out", "r", cwd=tmp_path)
    assert flag.returncode == 2, flag.stderr
    assert flag.stderr == (f"harness: --device: {device!r} is not a device; use auto, cpu, "
                           "cuda or cuda:N\n")
    field = run_cli("sweep", str(write_config(small_config(train={"device": device}))),
                    cwd=tmp_path)
    assert field.returncode == 2 and field.stderr.endswith(
        f"train.device: {device!r} is not a device; use auto, cpu, cuda or cuda:N\n")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("population", [1, 4])
def test_a_fault_of_the_set_up_stops_the_sweep_and_records_no_trial(tmp_path, monkeypatch,
                                                                     capsys, write_config,
                                                                     population):
    # What fails every trial the same way, before any epoch: here the model cannot be
    # built on the device. Recorded, each trial would be a result, and the same command
    # would never run them again.
    import harness.groups
    from harness.study.storage import open_storage

    real = harness.groups.build_model

    def broken(name):
        raise RuntimeError("CUDA error: no kernel image is available for execution")

    monkeypatch.setattr(harness.groups, "build_model", broken)
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", str(write_config(small_config())), "--out", "r", "--quiet",
            "--visdom", "off", "--population", str(population)]
    assert main(argv) == 1
    said = capsys.readouterr().err.strip().splitlines()
    assert said == ["harness: the sweep cannot train lenet on cpu (RuntimeError: CUDA "
                    "error: no kernel image is available for execution); nothing was run "
                    "or recorded: fix this and run the same command"]
    with open_storage(f"sqlite:///{tmp_path / 'r' / 'study.db'}") as storage:
        assert optuna.load_study(study_name="tiny", storage=storage).trials == []
    monkeypatch.setattr(harness.groups, "build_model", real)
    assert main(argv) == 0  # the cause fixed, the same command runs every trial
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert len(trials) == 4 and (trials.state == "COMPLETE").all()
