"""trials.csv and history.csv while a sweep runs: each trial's rows appended, exactly the
rows a rebuild from the study writes, in the same order, and whole after a kill -9; the
progress count without reading the study; a slow ending that says what it does."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT, small_config

import harness.reporting.bookkeeping
from harness.parse import parse_config
from harness.reporting.bookkeeping import ResultFiles, saying
from harness.reporting.directory import HISTORY_COLUMNS, TRIAL_COLUMNS, write_results
from harness.sweep import SweepInterrupted, SweepOptions, run_sweep

MODEL = {"params": 44_426, "mult_adds": 281_640}


def sweep(raw, out, **options):
    return run_sweep(parse_config(raw), SweepOptions(out=out, progress=False, **options))


def study_trials(out: Path, name: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def rebuilt(tmp_path: Path, trials) -> tuple[bytes, bytes]:
    """trials.csv and history.csv as a rebuild from these trials writes them."""
    out = tmp_path / "rebuilt"
    out.mkdir(exist_ok=True)
    write_results(out, trials, MODEL)
    return (out / "trials.csv").read_bytes(), (out / "history.csv").read_bytes()


def files(out: Path) -> tuple[bytes, bytes]:
    return (out / "trials.csv").read_bytes(), (out / "history.csv").read_bytes()


def interrupt_second_epoch(monkeypatch, lr: float) -> None:
    """Ctrl-C in the second epoch of the trial with this learning rate."""
    import harness.trainers.single

    real, epochs = harness.trainers.single.train_epoch, []

    def train_epoch(model, optimizer, *args, **kwargs):
        if optimizer.param_groups[0]["lr"] == lr:
            epochs.append(1)
            if len(epochs) == 2:
                raise KeyboardInterrupt
        return real(model, optimizer, *args, **kwargs)

    monkeypatch.setattr(harness.trainers.single, "train_epoch", train_epoch)


@pytest.fixture(scope="module")
def rerun_study(tmp_path_factory):
    """A real sweep's trials: a diverged one (no best epoch), an interrupted one, and its
    point's rerun after the resume."""
    out = tmp_path_factory.mktemp("sweep")
    raw = small_config(search={"space": {"lr": [0.02, 1.0e6, 0.05], "batch_size": [32],
                                         "optimizer": ["sgd"]}})
    with pytest.MonkeyPatch.context() as patch:
        interrupt_second_epoch(patch, lr=0.05)
        with pytest.raises(SweepInterrupted):
            sweep(raw, out)
    sweep(raw, out)
    trials = study_trials(out)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    assert trials[2].user_attrs["error"] == "interrupted"
    assert trials[2].user_attrs["run"] == trials[3].user_attrs["run"]
    return trials


def test_appended_rows_are_the_bytes_a_rebuild_writes(tmp_path, rerun_study):
    books = ResultFiles(tmp_path, MODEL)
    with books.locked():
        books.rebuild([])
        for trial in rerun_study[:3]:
            books.append(trial, lambda: pytest.fail("appending needs no rebuild"))
    assert files(tmp_path) == rebuilt(tmp_path, rerun_study[:3])
    assert books.count_done() == 2  # the interrupted trial's point is not done


def test_a_rerun_point_rebuilds_so_only_its_newest_attempt_has_rows(tmp_path, rerun_study):
    books = ResultFiles(tmp_path, MODEL)
    with books.locked():
        books.rebuild(rerun_study[:3])
        books.append(rerun_study[3], lambda: rerun_study)
    assert files(tmp_path) == rebuilt(tmp_path, rerun_study)
    assert len((tmp_path / "trials.csv").read_text().splitlines()) == 1 + 3
    assert books.count_done() == 3


@pytest.mark.parametrize("name", ["trials.csv", "history.csv"])
def test_a_cut_last_line_is_rebuilt_not_appended_to(tmp_path, rerun_study, name):
    books = ResultFiles(tmp_path, MODEL)
    with books.locked():
        books.rebuild(rerun_study[:1])
        with open(tmp_path / name, "a") as f:
            f.write("1,0001-sgd-lr1e+06-bs32-s0,1,na")  # a process killed mid-append
        books.append(rerun_study[1], lambda: rerun_study[:2])
    assert files(tmp_path) == rebuilt(tmp_path, rerun_study[:2])


def test_processes_sharing_the_files_see_each_others_rows(tmp_path, rerun_study):
    one, two = ResultFiles(tmp_path, MODEL), ResultFiles(tmp_path, MODEL)
    with one.locked():
        one.rebuild([])
    with two.locked():
        two.rebuild([])
        two.append(rerun_study[0], lambda: pytest.fail("no rebuild"))
    with one.locked():
        one.append(rerun_study[2], lambda: pytest.fail("no rebuild"))
    assert two.count_done() == 1 and one.count_done() == 1  # the interrupted is not done
    with two.locked():  # the rerun of the point `one` recorded: a rebuild, seen by `one`
        two.append(rerun_study[3], lambda: [rerun_study[i] for i in (0, 2, 3)])
    assert one.count_done() == 2
    assert files(tmp_path) == rebuilt(tmp_path, [rerun_study[i] for i in (0, 2, 3)])


def test_rows_appended_out_of_trial_order_are_put_in_order_by_the_next_rebuild(
        tmp_path, rerun_study):
    """With --workers trials finish in any order; a rebuild writes trial order."""
    books = ResultFiles(tmp_path, MODEL)
    first, second = rerun_study[1], rerun_study[0]
    with books.locked():
        books.rebuild([])
        books.append(first, lambda: pytest.fail("no rebuild"))
        books.append(second, lambda: pytest.fail("no rebuild"))
    appended = [row[0] for row in csv.reader((tmp_path / "trials.csv").open())][1:]
    assert appended == ["1", "0"]
    assert sorted_lines(tmp_path) == sorted_lines(tmp_path / "rebuilt", [first, second])
    with books.locked():
        books.rebuild([first, second])
    assert files(tmp_path) == rebuilt(tmp_path, [second, first])


def sorted_lines(out: Path, trials=None) -> tuple[list[str], list[str]]:
    if trials is not None:
        out.mkdir(exist_ok=True)
        write_results(out, trials, MODEL)
    return tuple(sorted((out / name).read_text().splitlines())
                 for name in ("trials.csv", "history.csv"))


def test_the_progress_count_reads_only_rows_appended_since_it_last_looked(
        tmp_path, rerun_study, monkeypatch):
    books = ResultFiles(tmp_path, MODEL)
    with books.locked():
        books.rebuild(rerun_study[:1])
    assert books.count_done() == 1
    reads: list[int] = []
    real = harness.reporting.bookkeeping.csv.reader
    monkeypatch.setattr(harness.reporting.bookkeeping.csv, "reader",
                        lambda lines: reads.append(len(lines)) or real(lines))
    with books.locked():
        books.append(rerun_study[1], lambda: pytest.fail("no rebuild"))
    other = ResultFiles(tmp_path, MODEL)  # another worker's row
    with other.locked():
        other.append(rerun_study[2], lambda: pytest.fail("no rebuild"))
    reads.clear()
    assert books.count_done() == 2 and reads == [1]  # the other's one line, no more
    assert books.count_done() == 2 and reads == [1, 0]


def test_a_sweep_rebuilds_at_its_start_and_end_only_when_tables_are_not_due(
        tmp_path, monkeypatch):
    calls = []
    real = harness.reporting.bookkeeping.write_results
    monkeypatch.setattr(harness.reporting.bookkeeping, "write_results",
                        lambda *args: calls.append(1) or real(*args))
    monkeypatch.setattr(harness.reporting.bookkeeping, "TABLES_EVERY_S", 1e9)
    raw = small_config(train={"epochs": 1}, search={"seeds": [0, 1, 2]})
    assert sweep(raw, tmp_path).ran == 12
    assert len(calls) == 3  # start, the first trial's views, the end: not one per trial
    assert files(tmp_path) == rebuilt(tmp_path, study_trials(tmp_path))


def test_ctrl_c_while_a_trial_is_recorded_waits_until_it_is(tmp_path, monkeypatch):
    import harness.record

    real = harness.record.Recorder.store

    def interrupted(*args):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C just as the first trial is recorded
        time.sleep(0.1)
        return real(*args)

    monkeypatch.setattr(harness.record.Recorder, "store", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep(small_config(), tmp_path)
    trials = study_trials(tmp_path)
    assert [t.state.name for t in trials] == ["COMPLETE"]
    assert files(tmp_path) == rebuilt(tmp_path, trials)


def test_a_slow_step_says_what_it_is_doing_unless_quiet(capsys, monkeypatch):
    with saying("counting sheep", show=True):
        pass  # fast: nothing to say
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(harness.reporting.bookkeeping, "SLOW_S", 0.05)
    with saying("counting sheep", show=False):
        time.sleep(0.3)
    assert capsys.readouterr().err == ""
    with saying("counting sheep", show=True):
        time.sleep(0.3)
    assert capsys.readouterr().err == "harness: counting sheep...\n"


# ------------------------------------------------------------- kill -9, for real

TEAR_AT = 3  # the driver cuts the third trial's row in trials.csv in half

DRIVER = f"""
import runpy, sys, time
from pathlib import Path
import harness.reporting.bookkeeping as books

real, calls = books.append_lines, []

def torn(path, text):
    if path.name == "trials.csv":
        calls.append(path)
        if len(calls) == {TEAR_AT}:  # what a write stopped at a page boundary leaves
            with open(path, "ab") as f:
                f.write(text.encode()[: len(text) // 2])
            Path("torn").touch()
            time.sleep(600)
    return real(path, text)

books.append_lines = torn
sys.argv = ["harness", "sweep", "config.yaml", "--out", "r", "--quiet"]
runpy.run_module("harness", run_name="__main__")
"""


def whole_lines(path: Path, columns: list[str]) -> list[list[str]]:
    """The file's complete lines as cells, each with every column (a line still being
    written, at the end, is left out)."""
    text = path.read_text()
    rows = list(csv.reader(text[:text.rfind("\n") + 1].splitlines()))
    assert rows[0] == columns
    assert all(len(row) == len(columns) for row in rows), text
    return rows[1:]


def watch(process: subprocess.Popen, out: Path, until_rows: int | None) -> None:
    """Check trials.csv and history.csv while the sweep writes them: every line whole,
    no run twice; kill -9 the sweep once trials.csv has `until_rows` rows."""
    deadline = time.monotonic() + 240
    while process.poll() is None:
        assert time.monotonic() < deadline
        if (out / "trials.csv").exists() and (out / "history.csv").exists():
            runs = [row[1] for row in whole_lines(out / "trials.csv", TRIAL_COLUMNS)]
            whole_lines(out / "history.csv", HISTORY_COLUMNS)
            assert len(runs) == len(set(runs)), runs
            if until_rows is not None and len(runs) >= until_rows:
                process.send_signal(signal.SIGKILL)
        time.sleep(0.01)


def test_kill_9_while_appending_then_resume_agrees_with_the_study(tmp_path):
    raw = small_config(data={"train_size": 128, "test_size": 64}, train={"epochs": 1},
                       search={"space": {"lr": [0.01, 0.02, 0.05, 0.1], "batch_size": [32],
                                         "optimizer": ["sgd", "adam"]}, "seeds": [0, 1]})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cut = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=tmp_path, env=env,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (tmp_path / "torn").exists():
        assert cut.poll() is None and time.monotonic() < deadline, cut.stderr.read()
        time.sleep(0.02)
    cut.send_signal(signal.SIGKILL)
    cut.wait()
    out = tmp_path / "r"
    assert not (out / "trials.csv").read_text().endswith("\n")  # killed mid-append
    # Resumed, and killed again right after a few more trials are recorded (most likely
    # inside the next trial, whose point then runs again).
    command = [sys.executable, "-m", "harness", "sweep", "config.yaml", "--out", "r",
               "--quiet"]
    resumed = subprocess.Popen(command, cwd=tmp_path, env=env)
    watch(resumed, out, until_rows=TEAR_AT + 3)
    assert resumed.returncode == -signal.SIGKILL
    finish = subprocess.Popen(command, cwd=tmp_path, env=env)
    watch(finish, out, until_rows=None)
    assert finish.returncode == 0
    assert files(out) == rebuilt(tmp_path, study_trials(out))
    assert len(whole_lines(out / "trials.csv", TRIAL_COLUMNS)) == 16
    assert len(whole_lines(out / "history.csv", HISTORY_COLUMNS)) == 16
