"""The command line as a user runs it: real processes, exit codes, signals."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta

import optuna
import pandas as pd
import pytest
from conftest import ROOT, SHELL_ENV, run_cli, small_config

from harness.reporting.importance import METHOD
from harness.study.claims import DEAD


def bad_config_exits_2(tmp_path, write_config, text):
    result = run_cli("sweep", str(write_config(text)), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()
    return lines[0]


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, write_config):
    line = bad_config_exits_2(tmp_path, write_config, "name: x\nsearch: {space: {lr: [-1]}}\n")
    assert "search.space.lr[0]: -1.0 is not valid; use a number > 0" in line
    line = bad_config_exits_2(tmp_path, write_config,
                              "name: x\nsearch: {space: {optimzer: [sgd]}}\n")
    assert "search.space.optimzer: unknown key; did you mean 'optimizer'?" in line
    line = bad_config_exits_2(tmp_path, write_config, "name: x\ndata: {dataset: mnist, "
                              f"root: {tmp_path / 'nowhere'}}}\n")
    assert "mnist-5k" in line
    line = bad_config_exits_2(tmp_path, write_config, "name: x\ndata: {val_fraction: 0}\n")
    assert "objective.metric: val_acc needs a validation split but data.val_fraction is 0" \
        in line
    missing = run_cli("sweep", "no/such.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "no/such.yaml: no such config file" in missing.stderr
    flag = run_cli("sweep", "x.yaml", "--wrokers", "2", cwd=tmp_path)
    assert flag.returncode == 2 and len(flag.stderr.strip().splitlines()) == 1
    device = run_cli("sweep", str(write_config(small_config())), "--device", "cuda:7",
                     cwd=tmp_path)
    assert device.returncode == 2 and "--device cpu" in device.stderr


def test_every_problem_of_a_config_is_a_line_of_its_own(tmp_path, write_config):
    path = write_config("name: x\ntrain: {epochs: 0, device: gpu}\n"
                        "search: {space: {lr: [-1, 0.1], lr: [0.1]}}\n")
    result = run_cli("sweep", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"harness: {path}: search.space.lr: given twice (line 3, columns 18 and 33); YAML "
        "would keep only the last, so keep one",
        f"harness: {path}: train.epochs: 0 is too small; use an integer >= 1",
        f"harness: {path}: train.device: 'gpu' is not a device; use auto, cpu, cuda or cuda:N"]
    assert not (tmp_path / "results").exists()


def test_a_config_name_alone_is_looked_for_in_experiments(tmp_path):
    # `python -m harness sweep grid.yaml`, as the one-line description says it.
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mine.yaml").write_text("name: x\ntrain: {epochs: 0}\n")
    result = run_cli("sweep", "mine.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "harness: mine.yaml is not here; using experiments/mine.yaml",
        "harness: experiments/mine.yaml: train.epochs: 0 is too small; use an integer >= 1"]
    (tmp_path / "experiments" / "other.yaml").write_text("name: y\n")
    missing = run_cli("sweep", "grid.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.splitlines() == [
        "harness: grid.yaml: no such config file, here or in experiments/; the configs in "
        "experiments/ are mine.yaml, other.yaml"]


def test_help_and_bad_input_answer_without_loading_torch(tmp_path, write_config):
    # Loading torch takes seconds; bad input should be answered at once.
    bad = write_config("name: x\nsearch: {space: {lr: [-1]}}\n")
    for args in (["--help"], ["sweep", str(bad)], ["sweep", str(bad), "--workers", "0"]):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "harness", *args],
                                cwd=tmp_path, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "harness.config" in imported and "torch" not in imported, args
        assert result.returncode == (0 if args == ["--help"] else 2)


def test_sweep_prints_progress_the_top_trials_and_the_results_path(tmp_path, write_config):
    result = run_cli("sweep", str(write_config(small_config())), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[4/4] 0003-adam-lr0.05-bs32-s0" in result.stderr
    assert "4 trials: 4 COMPLETE (ran 4)" in result.stdout
    header = result.stdout.splitlines()[0].split()  # the top trials, objective by name
    assert "val_acc" in header and "value" not in header
    assert f"results: results{'/'}tiny" in result.stdout
    assert len(pd.read_csv(tmp_path / "results" / "tiny" / "trials.csv")) == 4
    assert_self_contained(tmp_path / "results" / "tiny", 4)
    assert not (tmp_path / "results" / "tiny" / "tables" / "importance.csv").exists()  # < 8
    again = run_cli("sweep", str(write_config(small_config())), cwd=tmp_path)
    assert again.returncode == 0 and "nothing left to run" in again.stdout
    # A reader that stops early (here: at once) ends the output quietly.
    closed = subprocess.run(f"{sys.executable} -m harness compare results/tiny | true",
                            shell=True, cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert closed.stderr == ""


def assert_self_contained(out, n_trials):
    """study.db alone holds every trial: the process closed SQLite, which folded its
    write-ahead log back in, though it skips Python's shutdown."""
    assert not list(out.glob("study.db-*"))
    copy = out.parent / "copy.db"
    copy.write_bytes((out / "study.db").read_bytes())
    storage = optuna.storages.RDBStorage(f"sqlite:///{copy}")
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == n_trials
    storage.engine.dispose()


def slow_config(write_config):
    # Four trials of about a second each, so a signal lands inside a trial.
    raw = small_config(data={"train_size": 1800}, train={"epochs": 4})
    return str(write_config(raw))


def launch(tmp_path, config, *flags):
    """`sweep CONFIG --out r --quiet FLAGS` in its own process group, as a shell runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", config, "--out", "r", "--quiet", *flags],
        cwd=tmp_path, env=SHELL_ENV,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def start_sweep(tmp_path, config, *flags, running=1):
    """Launch a sweep and wait until `running` trials, the second one among them, run."""
    process = launch(tmp_path, config, *flags)
    deadline = time.monotonic() + 120
    while not second_trial_running(tmp_path / "r" / "study.db", running):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the second trial, which trains for about a second
    return process


def second_trial_running(db, running=1):
    """Read from Optuna's SQLite tables, as any client may while the sweep writes."""
    if not db.exists():
        return False
    connection = sqlite3.connect(db, timeout=10)
    try:
        row = connection.execute("SELECT COUNT(*), MAX(number) FROM trials WHERE "
                                 "state = 'RUNNING'").fetchone()
    except sqlite3.OperationalError:  # the tables are not created yet
        return False
    finally:
        connection.close()
    return row[0] >= running and row[1] >= 1


def final_trials(tmp_path):
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert len(trials) == 4 and (trials.state == "COMPLETE").all()
    assert trials.run.is_unique
    return trials


def test_kill_9_then_the_same_command_completes_the_grid(tmp_path, write_config):
    config = slow_config(write_config)
    process = start_sweep(tmp_path, config)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = run_cli("sweep", config, "--out", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    final_trials(tmp_path)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/r/study.db")
    assert [t.user_attrs.get("error") for t in study.trials].count(DEAD) == 1


def test_ctrl_c_saves_exits_130_and_the_rerun_completes(tmp_path, write_config):
    config = slow_config(write_config)
    process = start_sweep(tmp_path, config)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert "interrupted" in process.stderr.read()
    saved = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert saved.error.fillna("").tolist()[-1] == "interrupted"
    result = run_cli("sweep", config, "--out", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    final_trials(tmp_path)
    # The rerun counts on from the trials that finished: no number twice, ending at 4/4.
    counts = [line.split("]")[0] for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(counts) == len(set(counts)) and counts[-1] == "[4/4"


@pytest.mark.parametrize("moment", [0.5, 1.5, "mid-trial"])
def test_sigterm_to_the_process_group_at_any_moment_exits_130_and_resume_completes(
        tmp_path, write_config, moment):
    # Start-up (torch loading, the data, the study) and the middle of a trial. The
    # handler only sets a flag; the sweep stops at its next safe point, so no signal is
    # lost inside a callback that swallows exceptions, and none kills it silently (143).
    config = slow_config(write_config)
    if moment == "mid-trial":
        process = start_sweep(tmp_path, config)
    else:
        process = launch(tmp_path, config)
        time.sleep(moment)
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=60) == 130, process.stderr.read()
    assert "harness: interrupted; finished trials are saved" in process.stderr.read()
    result = run_cli("sweep", config, "--out", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    final_trials(tmp_path)


def test_sigterm_to_the_parent_alone_stops_its_workers_at_once(tmp_path, write_config):
    config = slow_config(write_config)
    process = start_sweep(tmp_path, config, "--workers", "2", running=2)
    sent = datetime.now()
    process.send_signal(signal.SIGTERM)  # the parent only, as `kill PID` does
    assert process.wait(timeout=60) == 130, process.stderr.read()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/r/study.db")
    # The child stopped with its parent: it claimed nothing after the signal and left
    # no trial RUNNING; each process recorded the trial it was running.
    assert [t.number for t in study.trials
            if t.datetime_start > sent + timedelta(seconds=0.5)] == []
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    errors = [t.user_attrs.get("error") for t in study.trials]
    assert 1 <= errors.count("interrupted") <= 2
    result = run_cli("sweep", config, "--out", "r", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    final_trials(tmp_path)


def test_summary_prints_the_layers_and_totals(tmp_path):
    result = run_cli("summary", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "conv1" in result.stdout and "44,426 parameters, 281,640 mult-adds" in result.stdout


@pytest.mark.parametrize("command", [["--help"], ["sweep", "--help"]])
def test_help_shows_the_commands(tmp_path, command):
    result = run_cli(*command, cwd=tmp_path)
    assert result.returncode == 0 and "sweep" in result.stdout


def test_two_workers_share_a_grid_and_run_every_point_once(tmp_path, write_config):
    raw = small_config(search={"space": {"lr": [0.01, 0.02, 0.05], "batch_size": [32, 64],
                                         "optimizer": ["sgd", "adam"]}})
    result = run_cli("sweep", str(write_config(raw)), "--out", "r", "--workers", "2",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert len(trials) == 12 and (trials.state == "COMPLETE").all() and trials.run.is_unique
    # Progress counts every process's trials: each number once, and all of them ran.
    counts = [int(m[1]) for m in re.finditer(r"^\[\s*(\d+)/12\]", result.stderr, re.M)]
    assert sorted(counts) == list(range(1, 13)), result.stderr
    assert "(ran 12)" in result.stdout
    assert_self_contained(tmp_path / "r", 12)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/r/study.db")
    assert len(study.trials) == 12  # no point was run twice
    owners = {t.user_attrs["owner"].split(":")[-2] for t in study.trials}
    assert len(owners) == 2  # both processes ran trials
    # 12 trials are enough for the importance: one per varied hparam, the method named.
    importance = pd.read_csv(tmp_path / "r" / "tables" / "importance.csv")
    assert set(importance.hparam) == {"lr", "batch_size", "optimizer"}
    assert importance.importance.sum() == pytest.approx(1.0)
    assert (importance.method == METHOD).all()
    assert "Hyperparameter importance" in (tmp_path / "r" / "summary.md").read_text()
    bad = run_cli("sweep", str(write_config(raw)), "--workers", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--workers: 0 is too small" in bad.stderr


def test_ctrl_c_with_workers_records_every_running_trial(tmp_path, write_config):
    config = slow_config(write_config)
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", config, "--out", "r", "--quiet",
         "--workers", "2"], cwd=tmp_path, env=SHELL_ENV,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    trials = tmp_path / "r" / "trials.csv"
    deadline = time.monotonic() + 120
    while not (trials.exists() and len(pd.read_csv(trials)) >= 1):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    assert process.wait(timeout=120) == 130
    saved = pd.read_csv(trials, keep_default_na=False)
    # Each process records the trial it was running; one caught between two trials has
    # none, and a trial cut off while being recorded is rerun as a dead process's.
    assert 1 <= (saved.error == "interrupted").sum() <= 2
    result = run_cli("sweep", config, "--out", "r", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    final_trials(tmp_path)


POPULATION_SEARCHES = {
    # Eight sgd points of one batch size: two populations of four.
    "grid": {"space": {"lr": [0.01, 0.02, 0.03, 0.04], "batch_size": [32],
                       "optimizer": ["sgd"]}, "seeds": [0, 1]},
    "optuna": {"method": "optuna", "n_trials": 8, "sampler": "random",
               "space": {"lr": {"low": 0.005, "high": 0.05, "log": True},
                         "batch_size": [32], "optimizer": ["sgd"]}},
}


@pytest.mark.parametrize("method", sorted(POPULATION_SEARCHES))
def test_ctrl_c_inside_a_population_stops_at_the_next_step_and_resume_completes(
        tmp_path, write_config, method):
    raw = small_config(data={"train_size": 1800}, train={"epochs": 3},
                       search=POPULATION_SEARCHES[method])
    config = str(write_config(raw))
    process = start_sweep(tmp_path, config, "--population", "4", running=4)
    sent = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    assert process.wait(timeout=60) == 130, process.stderr.read()
    # A population's epoch takes seconds here; the stop comes after one fused step
    # (bounded loosely: the interpreter's exit and the files come after it).
    assert time.monotonic() - sent < 5
    saved = pd.read_csv(tmp_path / "r" / "trials.csv", keep_default_na=False)
    assert len(saved) == 4 and (saved.error == "interrupted").all(), saved
    result = run_cli("sweep", config, "--out", "r", "--population", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert len(trials) == 8 and (trials.state == "COMPLETE").all()
    assert trials.run.is_unique and len(set(zip(trials.lr, trials.seed, strict=True))) == 8


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_every_file_gets_the_mode_the_umask_gives_a_new_file(tmp_path, write_config, mask,
                                                             mode):
    raw = small_config(logging={"tensorboard": True, "visdom": False})
    config = str(write_config(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def harness(*args):
        done = subprocess.run([sys.executable, "-m", "harness", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300,
                              preexec_fn=lambda: os.umask(mask))
        assert done.returncode == 0, done.stderr

    harness("sweep", config, "--out", "r", "--quiet")
    harness("report", "r")
    harness("export", "--storage", "sqlite:///r/study.db", "--study", "tiny", "--out", "x")
    files = [p for p in [*(tmp_path / "r").rglob("*"), *(tmp_path / "x").rglob("*")]
             if p.is_file()]
    kinds = {p.name if p.suffix != ".pt" else "*.pt" for p in files}
    assert {"config.yaml", "trials.csv", "history.csv", "summary.md", "model_summary.csv",
            "leaderboard.csv", "report.html", "*.pt", "study.db"} <= kinds
    assert any(p.name.startswith("events.out.tfevents") for p in files)
    wrong = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in files
             if p.stat().st_mode & 0o777 != mode}
    assert wrong == {}


def test_ran_counts_the_trials_of_a_worker_killed_later(tmp_path, write_config):
    raw = small_config(data={"train_size": 1000}, train={"epochs": 3},
                       search={"seeds": [0, 1]})
    config = str(write_config(raw))
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", config, "--out", "r", "--workers", "2"],
        cwd=tmp_path, env=SHELL_ENV,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    db = tmp_path / "r" / "study.db"
    child = None
    deadline = time.monotonic() + 120
    while child is None:  # once the child has recorded a trial and runs another
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
        if not db.exists():
            continue
        connection = sqlite3.connect(db, timeout=10)
        try:
            owners = connection.execute(
                "SELECT t.state, a.value_json FROM trials t JOIN trial_user_attributes a "
                "ON a.trial_id = t.trial_id WHERE a.key = 'owner'").fetchall()
        except sqlite3.OperationalError:
            continue
        finally:
            connection.close()
        pids = {state: {int(json.loads(v).split(":")[-2]) for s, v in owners if s == state}
                for state in ("COMPLETE", "RUNNING")}
        children = (pids["COMPLETE"] & pids["RUNNING"]) - {process.pid}
        child = next(iter(children), None)
    os.kill(child, signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    lines = [line for line in err.splitlines() if re.match(r"\[ *\d+/", line)]
    assert re.search(rf"8 trials: 8 COMPLETE \(ran {len(lines)}\)", out), (out, lines)
    assert len(lines) == 8


def test_quiet_prints_nothing_but_errors_and_warnings(tmp_path, write_config):
    config = str(write_config(small_config()))
    result = run_cli("sweep", config, "--out", "r", "--quiet", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == ""
    bad = run_cli("sweep", config, "--out", "r", "--quiet", "--visdom",
                  "http://127.0.0.1:9", cwd=tmp_path)  # nothing listens there
    assert bad.returncode == 0 and bad.stdout == ""
    assert bad.stderr.startswith("harness: warning: visdom at http://127.0.0.1:9 failed")


def test_a_trial_that_diverged_in_its_first_epoch_is_said_without_contradiction():
    from harness.sinks.progress import format_result
    from harness.types import TrialResult, TrialSpec

    spec = TrialSpec(number=2, run="0002-sgd-lr10-bs32-s0", params={}, seed=0)
    diverged = TrialResult(spec, "FAIL", history=[{"epoch": 1, "train_loss": 740.0}],
                           error="diverged: train loss is 7.4e+02 at epoch 1", duration_s=1.25)
    line = format_result(diverged, 3, 12)
    assert "no epoch finished" not in line
    assert line.endswith("FAIL     1.2s  diverged: train loss is 7.4e+02 at epoch 1")
