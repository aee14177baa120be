"""Worker processes: how many threads each gets, their signal handling, and a parent
that waits for every one of them."""

import multiprocessing
import os
import signal
import time
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import small_config

import harness.trainers.single
from harness import stop
from harness.parse import parse_config
from harness.study import workers
from harness.sweep import SweepOptions, run_sweep


@pytest.fixture(autouse=True)
def no_stop_left():
    yield
    stop.reset()


def test_threads_follow_the_cpus_this_process_may_use_not_the_machines(monkeypatch):
    # As under `taskset -c 0,1` or a container's CPU set on a 64-core machine.
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.delattr(os, "process_cpu_count", raising=False)  # Python 3.12
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert workers.available_cpus() == 2
    monkeypatch.setattr(os, "process_cpu_count", lambda: 2, raising=False)  # 3.13
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert workers.available_cpus() == 2
    assert workers.threads_per_worker(1) == 2
    assert workers.threads_per_worker(2) == 1
    assert workers.threads_per_worker(8) == 1


def stopped_by_sigterm(config, options):
    """A worker's run that gets a SIGTERM and then reaches a safe point."""
    os.kill(os.getpid(), signal.SIGTERM)
    stop.check()
    return SimpleNamespace(ran=1)


def test_a_spawned_worker_turns_sigterm_into_a_stop_at_a_safe_point():
    # spawn (CUDA's start method) starts a fresh interpreter with Python's own handlers:
    # without ours, SIGTERM would kill the worker before it records its trial.
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=workers._work, args=(stopped_by_sigterm, None, None, 1))
    process.start()
    process.join(120)
    assert process.exitcode == 130


def test_the_parent_waits_for_every_worker_however_long_its_trial_and_counts_all(
        tmp_path, monkeypatch):
    parent, real = os.getpid(), harness.trainers.single.train_epoch

    def slow_in_children(*args, **kwargs):
        if os.getpid() != parent:
            time.sleep(1.5)  # the child's trial outlasts the parent's whole share
        return real(*args, **kwargs)

    monkeypatch.setattr(harness.trainers.single, "train_epoch", slow_in_children)
    # Formerly the parent gave its children a fixed time (120 s), then wrote the final
    # tables without their trials; shortened here, it must not matter.
    monkeypatch.setattr(workers, "JOIN_TIMEOUT_S", 0.5, raising=False)
    outcome = run_sweep(parse_config(small_config()),
                        SweepOptions(out=tmp_path, progress=False, workers=2))
    assert len(outcome.trials) == 4 and (outcome.trials.state == "COMPLETE").all()
    saved = pd.read_csv(tmp_path / "trials.csv")
    assert len(saved) == 4 and (saved.state == "COMPLETE").all()
    assert outcome.ran == 4  # the child's trials too, not the parent's alone
    leaderboard = pd.read_csv(tmp_path / "tables" / "leaderboard.csv")
    assert leaderboard.n.sum() == 4
