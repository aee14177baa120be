"""Visdom as a user runs it: a real server from `harness visdom`, checked through its API."""

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, interrupt_epoch, run_cli, small_config

import harness.sinks.visdom
from harness.config import VisdomConfig
from harness.parse import parse_config
from harness.sinks.visdom import BAND, VisdomSink, parse_url
from harness.sweep import SweepOptions, run_sweep
from harness.types import TrialSpec

STABLE = ["trial", "run", "state", "val_acc", "test_acc", "best_epoch", "final_test_acc",
          "final_test_loss", "final_train_loss", "error"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env_path: Path, log=subprocess.PIPE) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "visdom", "--port", str(port), "--env-path",
         str(env_path)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.2)


@pytest.fixture(scope="module")
def visdom_server(tmp_path_factory):
    """One `harness visdom` for the module's tests: starting one takes seconds."""
    root = tmp_path_factory.mktemp("visdom")
    with open(root / "server.log", "w") as log:
        process, port = start_server(root / "envs", log)
        yield port, root / "envs"
        process.kill()
        process.wait()


@pytest.fixture
def server(visdom_server):
    """The module's server with no environment left from an earlier test."""
    port, env_path = visdom_server
    viz = client(port)
    saved = {path.stem for path in env_path.glob("*.json")}
    for env in saved | set(viz.get_env_list()) | {"test-env"}:
        viz.delete_env(env)
    for path in env_path.glob("*.json"):
        path.unlink()
    assert not viz.win_exists("test_acc", env="test-env")
    return port, env_path


def test_ctrl_c_stops_the_server_with_one_line(tmp_path):
    process, _ = start_server(tmp_path / "envs")
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130
    assert output.strip().splitlines()[-1] == "harness: visdom: interrupted"
    assert "Traceback" not in output and "trials" not in output


def test_the_web_page_has_every_script_it_loads(server):
    # pip's Visdom ships only main.js; `make` fetches the rest, so the page works offline.
    port, _ = server
    base = f"http://127.0.0.1:{port}"
    page = urllib.request.urlopen(base + "/", timeout=30).read().decode()
    assets = sorted(set(re.findall(r"(?:src|href)=(/static/[^ >?]+)", page)))
    assets = [a for a in assets if "/user/" not in a]  # an optional user stylesheet
    assert len(assets) >= 15 and "/static/js/plotly-plotly.min.js" in assets
    for asset in assets:
        body = urllib.request.urlopen(base + asset, timeout=30).read()
        assert len(body) > 100, asset


def client(port):
    from visdom import Visdom

    return Visdom(port=port, raise_exceptions=True, use_incoming_socket=False)


def sweep(out, port=None, **config):
    visdom = {"port": port, "env": "test-env"} if port else False
    raw = small_config(logging={"tensorboard": False, "visdom": visdom}, **config)
    return run_sweep(parse_config(raw), SweepOptions(out=out, progress=False))


def html_table(html):
    """The one <table> of a pane as text cells, by its header."""
    header = re.findall(r"<th>(.*?)</th>", html)
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(
        r"<tr>(.*?)</tr>", html, re.S) if "<td>" in row]
    return pd.DataFrame(rows, columns=header)


def traces(viz, win):
    data = json.loads(viz.get_window_data(win, env="test-env"))
    return {t["name"]: list(zip(t["x"], t["y"], strict=True)) for t in data["content"]["data"]}


def test_the_env_holds_one_trace_per_trial_equal_to_history(server, tmp_path):
    port, env_path = server
    sweep(tmp_path / "r", port)
    viz = client(port)
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    for win, column in (("test_acc", "test_acc"), ("train_loss", "train_loss")):
        logged = traces(viz, win)
        assert sorted(logged) == sorted(history.run.unique())
        for run, rows in history.groupby("run"):
            assert [x for x, _ in logged[run]] == rows.epoch.tolist()
            assert [y for _, y in logged[run]] == pytest.approx(rows[column].tolist())
    for pane in ("leaderboard", "progress"):
        assert viz.win_exists(pane, env="test-env")
    board = json.loads(viz.get_window_data("leaderboard", env="test-env"))["content"]
    shown = html_table(board)
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    best = trials.sort_values("value", ascending=False).iloc[0]
    assert shown.loc[0, "run"] == best.run and len(shown) == 4
    assert float(shown.loc[0, "val_acc"]) == pytest.approx(best.val_acc, abs=1e-4)  # objective
    assert float(shown.loc[0, "test_acc"]) == pytest.approx(best.test_acc, abs=1e-4)
    # Each trial with its configuration's verdict, as the leaderboard gives it.
    keys = ["optimizer", "lr", "batch_size"]
    leaderboard = pd.read_csv(tmp_path / "r" / "tables" / "leaderboard.csv")
    verdict = trials.merge(leaderboard[[*keys, "verdict"]], on=keys).set_index("run").verdict
    assert shown.verdict.tolist() == [verdict[run] for run in shown.run]
    assert shown.verdict.tolist().count("leader") == 1
    progress = json.loads(viz.get_window_data("progress", env="test-env"))["content"]
    assert "4 / 4 trials done" in progress
    assert (env_path / "test-env.json").exists()  # saved: survives a server restart
    # The verdicts as report.html's forest plot: a row per configuration, by verdict.
    verdicts = json.loads(viz.get_window_data("verdicts", env="test-env"))["content"]
    rows = {y: t["name"] for t in verdicts["data"] for y in t["y"]}
    board = pd.read_csv(tmp_path / "r" / "tables" / "leaderboard.csv")
    assert sorted(rows) == sorted(f"{r.rank}. {r.optimizer}, {r.lr:g}, {r.batch_size}"
                                  for r in board.itertuples())
    assert rows[f"1. {board.optimizer[0]}, {board.lr[0]:g}, {board.batch_size[0]}"] == \
        "leader"
    # One diverged trial must not flatten every other loss curve: a log axis, as in
    # report.html; epochs are whole numbers on both windows.
    for win, scale in (("test_acc", None), ("train_loss", "log")):
        layout = json.loads(viz.get_window_data(win, env="test-env"))["content"]["layout"]
        assert layout["yaxis"].get("type") == scale
        assert layout["xaxis"]["dtick"] == 1


def test_the_optuna_method_plots_the_best_objective_so_far(server, tmp_path):
    port, _ = server
    sweep(tmp_path / "r", port, search={"method": "optuna", "n_trials": 3, "space": {
        "lr": {"low": 0.001, "high": 0.1, "log": True}}})
    best = traces(client(port), "best_so_far")
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert [y for _, y in next(iter(best.values()))] == pytest.approx(
        trials.value.cummax().tolist())


def test_no_server_is_one_warning_and_the_same_results(tmp_path, capsys):
    sweep(tmp_path / "off")
    capsys.readouterr()
    sweep(tmp_path / "on", free_port())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harness: warning: visdom at")
    on = pd.read_csv(tmp_path / "on" / "trials.csv")[STABLE]
    pd.testing.assert_frame_equal(on, pd.read_csv(tmp_path / "off" / "trials.csv")[STABLE])


def test_a_server_killed_mid_sweep_is_one_warning_and_the_same_results(
        tmp_path, capsys, monkeypatch):
    import harness.trainers.single

    process, port = start_server(tmp_path / "envs")
    real, calls = harness.trainers.single.train_epoch, []

    def kill_server_in_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            process.kill()
            process.wait()
        return real(*args, **kwargs)

    sweep(tmp_path / "off")
    monkeypatch.setattr(harness.trainers.single, "train_epoch", kill_server_in_second_trial)
    capsys.readouterr()
    sweep(tmp_path / "on", port)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the sweep goes on" in err[0]
    on = pd.read_csv(tmp_path / "on" / "trials.csv")[STABLE]
    pd.testing.assert_frame_equal(on, pd.read_csv(tmp_path / "off" / "trials.csv")[STABLE])


@pytest.fixture
def silent_server():
    """A TCP server on a free loopback port that accepts every connection and never
    answers: what a hung or overloaded Visdom looks like to its clients."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held = []

    def accept():
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:  # closed at the end of the test
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in held:
        connection.close()


def test_a_server_that_never_answers_costs_one_wait_and_one_warning(silent_server, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(small_config()))

    def timed(*args, timeout=600):
        started = time.monotonic()
        result = run_cli("sweep", str(config), "--quiet", *args, cwd=tmp_path, timeout=timeout)
        return result, time.monotonic() - started

    _, without = timed("--out", "off", "--visdom", "off")
    result, elapsed = timed("--out", "r", "--visdom", f"http://127.0.0.1:{silent_server}",
                            timeout=2 * without + 120)  # it used to wait forever
    assert result.returncode == 0, result.stderr
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert len(trials) == 4 and (trials.state == "COMPLETE").all()
    assert result.stderr.splitlines() == [
        f"harness: warning: visdom at http://127.0.0.1:{silent_server} failed (the server "
        "did not answer in time); the live view is off, the sweep goes on"]
    # It waits once (about 5 s); waiting in each of the sweep's ~25 Visdom calls would
    # cost minutes. Generous, for a loaded machine.
    assert elapsed - without < 45, (elapsed, without)


def test_the_sink_gives_up_on_a_silent_server_after_its_timeout(silent_server):
    from harness.sinks.visdom import TIMEOUT_S, VisdomSink

    made = []
    worker = threading.Thread(target=lambda: made.append(VisdomSink(
        VisdomConfig("http://127.0.0.1", silent_server), parse_config(small_config()), 4)),
        daemon=True)  # without timeouts this waits forever: the test must not
    worker.start()
    worker.join(timeout=sum(TIMEOUT_S) + 20)
    assert made and not made[0].active


def test_a_rerun_trial_replaces_its_trace(server, tmp_path, monkeypatch):
    from harness.sweep import SweepInterrupted

    port, _ = server
    one_point = {"space": {"lr": [0.02], "optimizer": ["sgd"]}}
    interrupt_epoch(monkeypatch, at=2)
    with pytest.raises(SweepInterrupted):
        sweep(tmp_path / "r", port, search=one_point)
    progress = json.loads(client(port).get_window_data("progress", env="test-env"))
    assert "0 / 1 trials done<br>0 failed" in progress["content"]  # it will run again
    sweep(tmp_path / "r", port, search=one_point)
    logged = traces(client(port), "test_acc")
    assert list(logged) == ["0000-sgd-lr0.02-bs64-s0"]
    assert [x for x, _ in logged["0000-sgd-lr0.02-bs64-s0"]] == [1, 2]


def window(viz, win):
    return json.loads(viz.get_window_data(win, env="test-env"))


def assert_band(logged, others, column):
    """The band's traces are numpy's quartiles per epoch of the other trials' history."""
    for name, q in zip(BAND, (0.25, 0.75, 0.5), strict=True):
        expected = others.groupby("epoch")[column].quantile(q)
        assert [x for x, _ in logged[name]] == expected.index.tolist()
        assert [y for _, y in logged[name]] == pytest.approx(
            [np.quantile(others.loc[others.epoch == e, column], q) for e in expected.index])


def test_past_20_trials_a_curve_window_holds_the_top_10_and_a_band(server, tmp_path):
    port, _ = server
    lrs = np.geomspace(0.002, 0.2, 15).round(5).tolist()
    sweep(tmp_path / "r", port, data={"train_size": 64, "test_size": 32}, train={"epochs": 1},
          search={"space": {"lr": lrs, "batch_size": [16, 32], "optimizer": ["sgd"]}})
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert len(trials) == 30 and history.run.nunique() == 30 and trials.state.eq(
        "COMPLETE").all()
    assert len(pd.read_csv(tmp_path / "r" / "tables" / "leaderboard.csv")) == 30
    top = trials.sort_values("value", ascending=False, kind="stable").run.head(10).tolist()
    viz = client(port)
    for win in ("test_acc", "train_loss"):
        logged = traces(viz, win)
        assert sorted(logged) == sorted([*top, *BAND])
        for run in top:
            rows = history[history.run == run]
            assert [y for _, y in logged[run]] == pytest.approx(rows[win].tolist())
        assert_band(logged, history[~history.run.isin(top)], win)
        assert window(viz, win)["title"].endswith(
            ": top 10 of 30 trials by val_acc; the band is the other 20: median and "
            "quartiles per epoch")


class Trials:
    """Trials as a sweep records them, without training: the sink's live points, then
    trials.csv's row and history.csv's lines, then the refresh after each trial."""

    def __init__(self, port, history):
        raw = small_config(logging={"tensorboard": False,
                                    "visdom": {"port": port, "env": "test-env"}})
        self.config, self.history = parse_config(raw), history
        self.rows, self.lines = [], []

    def sink(self):
        return VisdomSink(self.config.logging.visdom, self.config, 40, self.history)

    def run(self, sink, number, value, epochs=2, record=True):
        run = f"{number:04d}-sgd"
        sink.start(TrialSpec(number, run, {}, 0), None)
        points = [{"epoch": e, "test_acc": value * e / epochs, "train_loss": 1 / (value * e)}
                  for e in range(1, epochs + 1)]
        for point in points:
            sink.log(point, point["epoch"])
        if record:
            self.rows.append({"trial": number, "run": run, "lr": 0.01 * (1 + number % 2),
                              "batch_size": 32, "optimizer": "sgd", "seed": number,
                              "state": "COMPLETE", "value": value, "duration_s": 1.0,
                              "error": ""})
            self.lines += [{"run": run} | point for point in points]
            pd.DataFrame(self.lines).to_csv(self.history, index=False)
            sink.refresh(pd.DataFrame(self.rows), maximize=True)
        return run


def test_a_trial_that_drops_out_of_the_top_leaves_the_window_for_the_band(
        server, tmp_path, monkeypatch):
    port, _ = server
    monkeypatch.setattr(harness.sinks.visdom, "REDRAW_EVERY_S", 3600)
    trials = Trials(port, tmp_path / "history.csv")
    sink, other_worker = trials.sink(), trials.sink()
    runs = [trials.run(sink, i, 0.01 * (i + 1)) for i in range(20)]
    viz = client(port)
    assert sorted(traces(viz, "test_acc")) == sorted(runs)  # up to 20: every trial
    runs.append(trials.run(sink, 20, 0.5))  # the first redraw is never put off
    assert sorted(traces(viz, "test_acc")) == sorted([*runs[11:], *BAND])
    running = trials.run(other_worker, 30, 0.9, epochs=1, record=False)
    runs.append(trials.run(sink, 21, 0.6))  # the next is, until REDRAW_EVERY_S or close
    assert sorted(traces(viz, "test_acc")) == sorted([*runs[11:], running, *BAND])
    sink.close()
    logged = traces(viz, "test_acc")
    assert sorted(logged) == sorted([*runs[12:], running, *BAND])  # 0011 dropped out
    assert logged[running] == [(1, 0.9)]  # still running, elsewhere: kept as drawn
    history = pd.read_csv(trials.history)
    assert_band(logged, history[history.run.isin(runs[:12])], "test_acc")
    assert "top 10 of 22 trials" in window(viz, "train_loss")["title"]


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_harness_visdom_listens_on_127_0_0_1_only(server):
    port, _ = server
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else


def test_parse_url():
    assert parse_url("http://example:9000") == VisdomConfig("http://example", 9000)
    assert parse_url("localhost") == VisdomConfig("http://localhost", 8097)
    with pytest.raises(ValueError):
        parse_url("http://")


def test_two_sweeps_of_one_config_keep_their_own_traces(server, tmp_path):
    # Two --out directories, one config name: each sweep is its own environment.
    port, _ = server
    raw = small_config(name="same", logging={"tensorboard": False,
                                             "visdom": {"port": port}})
    for name, lr in (("first", [0.01, 0.02]), ("second", [0.03, 0.04])):
        raw["search"]["space"]["lr"] = lr
        run_sweep(parse_config(raw), SweepOptions(out=tmp_path / name, progress=False))
    viz = client(port)
    for name in ("first", "second"):
        env = (tmp_path / name / "sweep.txt").read_text().strip()
        assert env.startswith("same-")
        history = pd.read_csv(tmp_path / name / "history.csv")
        data = json.loads(viz.get_window_data("test_acc", env=env))["content"]["data"]
        assert sorted(t["name"] for t in data) == sorted(history.run.unique())
        for trace in data:
            rows = history[history.run == trace["name"]]
            assert trace["y"] == pytest.approx(rows.test_acc.tolist())


def test_auto_is_the_live_view_when_a_server_answers_and_one_line_when_none(
        server, tmp_path, write_config, monkeypatch, capsys):
    import harness.parse
    from harness.cli import main

    port, _ = server
    config = str(write_config(small_config(logging={"tensorboard": False,
                                                    "visdom": "auto"})))
    monkeypatch.chdir(tmp_path)

    def auto_at(at):  # logging.visdom: auto, at this port instead of 8097
        monkeypatch.setattr(harness.parse, "_visdom",
                            lambda raw, problems: VisdomConfig(port=at, auto=True))

    auto_at(port)  # a server answers: the sweep's environment, and where to look
    assert main(["sweep", config, "--out", "up"]) == 0
    said = capsys.readouterr()
    env = (tmp_path / "up" / "sweep.txt").read_text().strip()
    assert client(port).win_exists("test_acc", env=env)
    assert f"  the live view: http://localhost:{port}/env/{env}" in said.out
    assert "Visdom" not in said.err
    nobody = free_port()
    auto_at(nobody)  # none answers: one line says how to start one; the sweep goes on
    assert main(["sweep", config, "--out", "down"]) == 0
    said = capsys.readouterr()
    lines = [line for line in said.err.splitlines() if "Visdom" in line or "visdom" in line]
    assert lines == [f"harness: no Visdom server at http://localhost:{nobody} for the live "
                     "view; start one with: python -m harness visdom"]
    assert "live view:" not in said.out
    assert main(["sweep", config, "--out", "quiet", "--quiet"]) == 0
    assert capsys.readouterr().err == ""  # --quiet: not even that line
