"""Several processes on one SQLite study, as a user starts them: `--workers`, or two
commands at once on one results directory or one `--storage`."""

import fcntl
import os
import subprocess
import sys
import textwrap
import threading
import time

import optuna
import pandas as pd
import pytest
from conftest import ROOT, run_cli, small_config

from harness.study.storage import prepare_out

TPE = {"method": "optuna", "sampler": "tpe", "n_trials": 8,
       "space": {"lr": {"low": 1e-4, "high": 0.1, "log": True}, "batch_size": [32, 64],
                 "optimizer": ["sgd", "adam"]}}


def tpe_config(write_config, **search):
    raw = small_config(name="tpe", train={"epochs": 1}, search={**TPE, **search})
    return str(write_config(raw))


def sweep_process(*args, cwd, env=None):
    return subprocess.Popen([sys.executable, "-m", "harness", "sweep", *args, "--quiet"],
                            cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def sampled(storage: str, name: str = "tpe") -> list[tuple]:
    """The parameter set of every COMPLETE trial."""
    trials = optuna.load_study(study_name=name, storage=storage).trials
    return [tuple(sorted(t.params.items())) for t in trials if t.state.name == "COMPLETE"]


def claimed(storage: str) -> list:
    try:
        return optuna.load_study(study_name="tiny", storage=storage).trials
    except KeyError:  # not even created: the lock guards that too
        return []


def test_two_workers_on_a_tpe_sweep_never_sample_the_same_configuration(
        tmp_path, write_config):
    result = run_cli("sweep", tpe_config(write_config), "--out", "r", "--workers", "2",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    params = sampled(f"sqlite:///{tmp_path}/r/study.db")
    assert len(params) == 8 and len(set(params)) == 8


def test_two_commands_started_together_on_one_study_sample_different_configurations(
        tmp_path, write_config):
    config = tpe_config(write_config)
    processes = [sweep_process(config, "--out", "r", cwd=tmp_path) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    params = sampled(f"sqlite:///{tmp_path}/r/study.db")
    assert len(params) == 8 and len(set(params)) == 8
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert len(trials) == 8 and (trials.state == "COMPLETE").all()


def test_the_claim_lock_of_a_sqlite_study_lives_beside_its_database(tmp_path, write_config):
    """Two results directories on one --storage file share the lock that guards it."""
    config = str(write_config(small_config()))
    (tmp_path / "shared").mkdir()
    database = tmp_path / "shared" / "study.db"
    with open(f"{database}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process is claiming a point
        process = sweep_process(config, "--storage", f"sqlite:///{database}", "--out", "a",
                                cwd=tmp_path)
        time.sleep(8)  # time to start and to claim, were the lock elsewhere
        assert process.poll() is None and not claimed(f"sqlite:///{database}")
        assert not (tmp_path / "a" / ".lock").exists()
    assert process.wait(timeout=120) == 0, process.stderr.read()
    assert len(pd.read_csv(tmp_path / "a" / "trials.csv")) == 4


CRASH = """
import os, sys
import optuna
from harness.cli import main

real, writes = optuna.trial.Trial.set_user_attr, []

def set_user_attr(self, key, value):  # the power goes off after the N-th write
    real(self, key, value)
    writes.append(key)
    if len(writes) == {after}:
        os._exit(9)

optuna.trial.Trial.set_user_attr = set_user_attr
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("after", [1, 5])
def test_a_crash_between_the_writes_of_a_claim_never_breaks_resume(
        tmp_path, write_config, after):
    config = tpe_config(write_config, n_trials=3, seeds=[0, 1])
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(CRASH.replace("{after}", str(after))))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    crashed = subprocess.run([sys.executable, str(script), "sweep", config, "--out", "r"],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
    assert crashed.returncode == 9, crashed.stderr
    result = run_cli("sweep", config, "--out", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert len(trials) == 6 and (trials.state == "COMPLETE").all()
    seeds = trials.groupby(["lr", "batch_size", "optimizer"]).seed.apply(sorted)
    assert len(seeds) == 3 and all(s == [0, 1] for s in seeds)  # each with both seeds


def test_workers_checking_one_results_directory_at_once_never_collide(tmp_path):
    problems: list[Exception] = []

    def check() -> None:
        for _ in range(300):
            try:
                prepare_out(tmp_path / "r")
            except Exception as err:  # noqa: BLE001 - the test collects any failure
                problems.append(err)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    assert list((tmp_path / "r").iterdir()) == []  # the probes leave nothing behind
