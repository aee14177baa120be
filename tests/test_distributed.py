"""Several machines on one study, played by processes that share only a PostgreSQL
server (each has its own results directory, as on separate machines)."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
from conftest import ROOT, run_cli, small_config

from harness.study.claims import DEAD


def test_three_workers_one_killed_complete_every_configuration_once(
        tmp_path, write_config, postgres_url):
    raw = small_config(name="distributed", data={"train_size": 1000}, train={"epochs": 2},
                       search={"space": {"lr": [0.01, 0.02, 0.05], "batch_size": [32, 64],
                                         "optimizer": ["sgd", "adam"]}})
    config = str(write_config(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen([sys.executable, "-m", "harness", "sweep", config, "--storage",
                                 postgres_url, "--out", str(tmp_path / f"machine{i}"),
                                 "--quiet"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for i in range(3)]
    process, killed_trial = freeze_mid_trial(workers, "distributed", postgres_url, done=3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    for worker in workers:
        if worker is not process:
            assert worker.wait(timeout=300) == 0, worker.stderr.read()
    trials = optuna.load_study(study_name="distributed", storage=postgres_url).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 12
    assert len({t.user_attrs["point"] for t in complete}) == 12  # none twice
    lost = trials[killed_trial.number]
    assert lost.state.name == "FAIL" and lost.user_attrs["error"] == DEAD
    rerun = [t for t in complete if t.user_attrs["point"] == lost.user_attrs["point"]]
    assert rerun[0].user_attrs["owner"] != lost.user_attrs["owner"]
    # Any machine can rebuild the results from the shared study.
    result = run_cli("export", "--storage", postgres_url, "--study", "distributed",
                     "--out", str(tmp_path / "exported"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    exported = pd.read_csv(tmp_path / "exported" / "trials.csv")
    assert len(exported) == 12 and (exported.state == "COMPLETE").all()
    assert exported.run.is_unique


def freeze_mid_trial(workers: list[subprocess.Popen], name: str, postgres_url: str,
                     done: int) -> tuple[subprocess.Popen, optuna.trial.FrozenTrial]:
    """Once `done` trials are complete, stop (SIGSTOP) a worker in the middle of one:
    frozen, and its trial read again as RUNNING, it can finish nothing before it is
    killed. Returns the worker and its trial."""
    deadline = time.monotonic() + 180
    while True:
        assert time.monotonic() < deadline, "no worker was caught in the middle of a trial"
        time.sleep(0.2)
        trials = trials_of(name, postgres_url)
        if sum(t.state.name == "COMPLETE" for t in trials) < done:
            continue
        for trial in trials:
            owner = trial.user_attrs.get("owner", "")
            if trial.state.name != "RUNNING" or not owner:
                continue
            pid = int(owner.split(":")[-2])
            worker = next((w for w in workers if w.pid == pid), None)
            if worker is None:
                continue
            os.kill(pid, signal.SIGSTOP)
            time.sleep(1)  # a commit it sent before it stopped lands meanwhile
            if trials_of(name, postgres_url)[trial.number].state.name == "RUNNING":
                return worker, trial
            os.kill(pid, signal.SIGCONT)  # it finished meanwhile: look again


# Heartbeats every second, a trial silent for 3 s is stale: the grace period in seconds,
# not a minute, as every machine of a study must agree on it.
FAST_HEARTBEATS = {"HARNESS_HEARTBEAT_S": "1", "HARNESS_GRACE_S": "3"}

# A worker on another machine (its pid means nothing here) that is slow to train.
FAR_AND_SLOW = """
import sys, time
import harness.study.claims, harness.trainers.single
harness.study.claims.this_process = lambda: "a-machine-far-away:1:1"
real = harness.trainers.single.train_epoch

def train_epoch(*args, **kwargs):
    time.sleep(30)
    return real(*args, **kwargs)

harness.trainers.single.train_epoch = train_epoch
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""

# A machine that stalls: its second heartbeat hangs for 20 s and, meanwhile, each epoch
# takes 2 s; then it recovers. Before that, each epoch takes 0.3 s, so that the stall
# comes in the middle of its first trial however fast the machine trains.
STALLS = """
import sys, threading, time
import optuna, harness.trainers.single
real_beat = optuna.storages.RDBStorage.record_heartbeat
real_epoch = harness.trainers.single.train_epoch
stalled, beats = threading.Event(), []

def record_heartbeat(self, trial_id):
    if threading.current_thread().name == "heartbeat":
        beats.append(trial_id)
    if len(beats) == 2 and threading.current_thread().name == "heartbeat":
        beats.append(trial_id)
        stalled.set()
        time.sleep(20)
        stalled.clear()
    real_beat(self, trial_id)

def train_epoch(*args, **kwargs):
    time.sleep(2 if stalled.is_set() else 0.3)
    return real_epoch(*args, **kwargs)

optuna.storages.RDBStorage.record_heartbeat = record_heartbeat
harness.trainers.single.train_epoch = train_epoch
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start(tmp_path, args, script=None, log=None):
    """A worker process: `python -m harness sweep ARGS`, or `script` (a worker with a
    fault) given the same arguments; stderr into `log` when named."""
    command = ["-m", "harness"]
    if script is not None:
        (tmp_path / "worker.py").write_text(script)
        command = [str(tmp_path / "worker.py")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **FAST_HEARTBEATS}
    stderr = open(tmp_path / log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen([sys.executable, *command, "sweep", *args], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)


def wait_for(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def trials_of(name, postgres_url):
    try:
        return optuna.load_study(study_name=name, storage=postgres_url).trials
    except KeyError:
        return []


def one_point(tmp_path, write_config, name, epochs=2):
    raw = small_config(name=name, train={"epochs": epochs},
                       search={"space": {"lr": [0.01], "batch_size": [32],
                                         "optimizer": ["sgd"]}})
    return str(write_config(raw, f"{name}.yaml"))


def test_the_last_live_worker_reruns_a_dead_machines_trial_before_it_exits(
        tmp_path, write_config, postgres_url):
    config = one_point(tmp_path, write_config, "lastone")
    victim = start(tmp_path, [config, "--storage", postgres_url, "--out", "far", "--quiet"],
                   FAR_AND_SLOW)
    wait_for(lambda: any(t.state.name == "RUNNING" for t in trials_of("lastone",
                                                                       postgres_url)),
             "the far machine's claim")
    survivor = start(tmp_path, [config, "--storage", postgres_url, "--out", "near"],
                     log="near.log")
    log = tmp_path / "near.log"
    wait_for(lambda: "waiting for" in log.read_text() or survivor.poll() is not None,
             "the survivor to find nothing left but the far machine's trial")
    os.kill(victim.pid, signal.SIGKILL)  # the far machine dies
    victim.wait()
    assert survivor.wait(timeout=120) == 0, log.read_text()
    assert "waiting for 1 trial(s) running in other processes (0000-sgd-lr0.01-bs32-s0)" \
        in log.read_text()
    trials = trials_of("lastone", postgres_url)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].user_attrs["owner"] != trials[0].user_attrs["owner"]
    done = pd.read_csv(tmp_path / "near" / "trials.csv")
    assert list(done.state) == ["COMPLETE"]


def test_a_worker_whose_heartbeat_stalls_drops_its_trial_and_the_point_runs_once(
        tmp_path, write_config, postgres_url):
    config = one_point(tmp_path, write_config, "stalls", epochs=8)
    stalling = start(tmp_path, [config, "--storage", postgres_url, "--out", "a"], STALLS,
                     log="a.log")
    wait_for(lambda: any(t.state.name == "RUNNING" for t in trials_of("stalls",
                                                                       postgres_url)),
             "the first claim")
    time.sleep(3.5)  # its heartbeat is silent for longer than the grace period
    other = start(tmp_path, [config, "--storage", postgres_url, "--out", "b"], log="b.log")
    assert other.wait(timeout=180) == 0, (tmp_path / "b.log").read_text()
    assert stalling.wait(timeout=180) == 0, (tmp_path / "a.log").read_text()
    trials = trials_of("stalls", postgres_url)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 1 and len(complete[0].user_attrs["result"]["history"]) == 8
    dropped = [t for t in trials if t.state.name == "FAIL"]
    assert dropped and all("result" not in t.user_attrs for t in dropped)
    log = (tmp_path / "a.log").read_text()
    assert log.count("this attempt's result is dropped") == 1, log
    assert "Traceback" not in log


def test_a_refused_config_on_a_shared_study_writes_nothing_and_deletes_only_when_named(
        tmp_path, write_config, postgres_url):
    first = one_point(tmp_path, write_config, "shared")
    assert run_cli("sweep", first, "--storage", postgres_url, "--out", "m1",
                   cwd=tmp_path).returncode == 0
    written = (tmp_path / "m1" / "config.yaml").read_text()
    raw = small_config(name="shared", search={"space": {"lr": [0.05], "batch_size": [32],
                                                        "optimizer": ["sgd"]}})
    other = str(write_config(raw, "other.yaml"))
    for out in ("m2", "m1"):  # another machine's new directory; the sweep's own
        refused = run_cli("sweep", other, "--storage", postgres_url, "--out", out,
                          cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert "search.space.lr differs" in refused.stderr
        assert "--fresh" not in refused.stderr  # it would delete every machine's trials
        if out == "m2":  # the study's refusal (m1's is its config.yaml's)
            assert refused.stderr.rstrip().endswith(
                "or give this config another name, for a study of its own")
    assert not (tmp_path / "m2" / "config.yaml").exists()
    assert (tmp_path / "m1" / "config.yaml").read_text() == written
    for flag in ("--fresh", "--fresh=share"):  # a study is deleted only when named
        refused = run_cli("sweep", flag, other, "--storage", postgres_url, "--out", "m2",
                          cwd=tmp_path)
        assert refused.returncode == 2 and "--fresh=shared" in refused.stderr, refused.stderr
        assert len(trials_of("shared", postgres_url)) == 1
    fresh = run_cli("sweep", "--fresh=shared", other, "--storage", postgres_url, "--out",
                    "m2", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    trials = trials_of("shared", postgres_url)
    assert len(trials) == 1 and trials[0].params["lr"] == 0.05
    # SQLite, a study of this directory alone: --fresh needs no name.
    assert run_cli("sweep", "--fresh", first, "--out", "s", cwd=tmp_path).returncode == 0


OPEN_AT = """
import sys, time
from harness.study.storage import open_storage
time.sleep(max(float(sys.argv[2]) - time.time(), 0))  # all at the same moment
with open_storage(sys.argv[1]):
    pass
"""


def test_machines_started_together_on_a_new_database_all_open_it(tmp_path, postgres_url):
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("CREATE DATABASE together"))
    engine.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/together"
    at = str(time.time() + 6)  # after every interpreter has started
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    opening = [subprocess.Popen([sys.executable, "-c", OPEN_AT, url, at], env=env,
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for process in opening:
        assert process.wait(timeout=120) == 0, process.stderr.read()


def checkpoint_accuracies(out, raw, run):
    """A checkpoint's validation and test accuracy, measured anew."""
    import torch

    from harness.data import load_dataset
    from harness.lenet import LeNet
    from harness.parse import parse_config
    from harness.train import evaluate

    data = load_dataset(parse_config(raw).data, torch.device("cpu"))
    model = LeNet()
    model.load_state_dict(torch.load(out / "checkpoints" / f"{run}.pt", weights_only=True))
    return (evaluate(model, data.x_val, data.y_val, 1000)[1],
            evaluate(model, data.x_test, data.y_test, 1000)[1])


def test_a_stalled_workers_dropped_attempt_leaves_no_checkpoint_or_run(
        tmp_path, write_config, postgres_url):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    raw = small_config(name="stalled", data={"train_size": 1000}, train={"epochs": 6},
                       search={"space": {"lr": [0.01, 0.03], "batch_size": [32],
                                         "optimizer": ["adam"]}},
                       logging={"tensorboard": {"histograms": False, "images": False,
                                                "graph": False}, "visdom": False})
    config = str(write_config(raw))
    b = start(tmp_path, [config, "--storage", postgres_url, "--out", "b"], log="b.log")
    wait_for(lambda: any(t.state.name == "RUNNING" for t in trials_of("stalled",
                                                                       postgres_url)),
             "b's first claim")
    time.sleep(0.5)  # inside its first trial
    os.kill(b.pid, signal.SIGSTOP)  # a paused machine: no heartbeats, no epochs
    a = start(tmp_path, [config, "--storage", postgres_url, "--out", "a"], log="a.log")
    assert a.wait(timeout=180) == 0, (tmp_path / "a.log").read_text()
    os.kill(b.pid, signal.SIGCONT)
    assert b.wait(timeout=180) == 0, (tmp_path / "b.log").read_text()
    assert "this attempt's result is dropped" in (tmp_path / "b.log").read_text()
    trials = trials_of("stalled", postgres_url)
    by_run = {t.user_attrs["run"]: t for t in trials if t.state.name == "COMPLETE"}
    assert len(by_run) == 2
    for name in ("a", "b"):
        out = tmp_path / name
        rows = pd.read_csv(out / "trials.csv")
        assert sorted(rows.run) == sorted(by_run)
        assert not list(out.glob("checkpoints/.*"))  # no attempt's weights left behind
        for row in rows.itertuples():
            ran_here = by_run[row.run].user_attrs["owner"].split(":")[-2] == str(
                (a if name == "a" else b).pid)
            checkpoint = out / "checkpoints" / f"{row.run}.pt"
            run = out / "tb" / row.run
            # The directory that ran the recorded attempt has its weights and events;
            # the other has neither, never the dropped attempt's.
            assert checkpoint.exists() == ran_here and run.exists() == ran_here, (name, row)
            if not ran_here:
                continue
            assert checkpoint_accuracies(out, raw, row.run) == pytest.approx(
                (row.val_acc, row.test_acc), abs=1e-9)
            events = EventAccumulator(str(run)).Reload()
            assert events.Scalars("hparam/val_acc")[-1].value == pytest.approx(row.val_acc)
            assert len(events.Scalars("val/accuracy")) == 6  # one attempt's epochs


def test_a_results_directory_belongs_to_the_storage_that_wrote_it(tmp_path, write_config,
                                                                  postgres_url):
    config = one_point(tmp_path, write_config, "owned")
    assert run_cli("sweep", config, "--out", "local", cwd=tmp_path).returncode == 0
    shared = run_cli("sweep", config, "--storage", postgres_url, "--out", "local",
                     cwd=tmp_path)
    assert shared.returncode == 2 and shared.stderr == (
        "harness: --out: local holds a sweep with its own study.db; a sweep on the shared "
        "--storage writes its results from that storage: pass another --out\n")
    assert run_cli("sweep", config, "--storage", postgres_url, "--out", "far",
                   cwd=tmp_path).returncode == 0
    local = run_cli("sweep", config, "--out", "far", cwd=tmp_path)
    assert local.returncode == 2 and local.stderr == (
        "harness: --out: far holds the results of a sweep whose study is elsewhere (no "
        "study.db beside them): pass its --storage, or another --out\n")
    assert not (tmp_path / "far" / "study.db").exists()
