"""Several machines on one study, played by processes that share only a PostgreSQL
server (each has its own results directory, as on separate machines)."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
from conftest import ROOT, run_cli, small_config

from harness.search import DEAD


def test_three_workers_one_killed_complete_every_configuration_once(
        tmp_path, write_config, postgres_url):
    raw = small_config(name="distributed", data={"train_size": 1500}, train={"epochs": 3},
                       search={"space": {"lr": [0.01, 0.02, 0.05], "batch_size": [32, 64],
                                         "optimizer": ["sgd", "adam"]}})
    config = str(write_config(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen([sys.executable, "-m", "harness", "sweep", config, "--storage",
                                 postgres_url, "--out", str(tmp_path / f"machine{i}"),
                                 "--quiet"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for i in range(3)]
    study = None
    deadline = time.monotonic() + 180
    victim = None
    while victim is None:  # once 3 trials are done, kill a worker in the middle of one
        assert time.monotonic() < deadline
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="distributed", storage=postgres_url)
        except KeyError:
            continue
        trials = study.get_trials(deepcopy=False)
        if sum(t.state.name == "COMPLETE" for t in trials) < 3:
            continue
        for trial in trials:
            if trial.state.name == "RUNNING" and "owner" in trial.user_attrs:
                pid = int(trial.user_attrs["owner"].split(":")[-2])
                victim = next((w for w in workers if w.pid == pid), None), trial
                if victim[0] is None:
                    victim = None
                    continue
                break
    process, killed_trial = victim
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
