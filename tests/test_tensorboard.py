"""TensorBoard as a user sees it: the real server's HTTP API and its event loader."""

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import interrupt_epoch, small_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from harness.lenet import LeNet
from harness.parse import parse_config
from harness.sinks.images import prediction_grid
from harness.sinks.tensorboard import HISTOGRAM_BINS, histograms
from harness.sweep import SweepOptions, run_sweep

STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "r"
    raw = small_config(
        search={"space": {"lr": [0.02, 1.0e6], "optimizer": ["sgd", "adam"]}, "seeds": [0, 1]},
        logging={"tensorboard": {"log_every": 2}, "visdom": False})
    run_sweep(parse_config(raw), SweepOptions(out=out, progress=False))
    return out


@pytest.fixture(scope="module")
def server(sweep_dir):
    with tensorboard(sweep_dir / "tb") as url:
        yield url


@contextlib.contextmanager
def tensorboard(logdir):
    """A real TensorBoard server reading `logdir`; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/data/runs", timeout=2)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait()


def get(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=30))


def test_one_run_per_trial_and_no_sub_runs(server, sweep_dir):
    trials = pd.read_csv(sweep_dir / "trials.csv")
    runs = get(server + "/data/runs")
    # "." is the sweep's root: the experiment summary, the graph and the model summary.
    assert sorted(runs) == sorted([".", *trials.run])


def session_groups(server):
    return get(server + "/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": STATUSES, "colParams": [],
        "aggregationType": "AGGREGATION_AVG", "startIndex": 0,
        "sliceSize": 100})["sessionGroups"]


def metric_values(row):
    return {m["name"]["tag"]: m["value"] for m in row.get("metricValues", [])}


def test_hparams_table_has_every_trial_with_its_best_epochs_numbers(server, sweep_dir):
    trials = pd.read_csv(sweep_dir / "trials.csv").set_index("run")
    sessions = {s["name"]: s for g in session_groups(server) for s in g["sessions"]}
    assert set(sessions) == set(trials.index)
    for run, session in sessions.items():
        metrics = metric_values(session)
        if trials.loc[run, "state"] == "COMPLETE":
            assert session["status"] == "STATUS_SUCCESS"
            # Validation and test of the epoch chosen on validation (the checkpoint's).
            assert metrics["hparam/val_acc"] == pytest.approx(trials.loc[run, "val_acc"])
            assert metrics["hparam/test_acc"] == pytest.approx(trials.loc[run, "test_acc"])
            assert metrics["hparam/final_test_acc"] == pytest.approx(
                trials.loc[run, "final_test_acc"])
        else:
            assert session["status"] == "STATUS_FAILURE"


def test_a_group_row_is_the_configuration_and_the_mean_over_its_seeds(server, sweep_dir):
    trials = pd.read_csv(sweep_dir / "trials.csv")
    groups = session_groups(server)
    # The two seeds of each configuration form one session group.
    assert len(groups) == 4 and all(len(g["sessions"]) == 2 for g in groups)
    for group in groups:
        members = trials[trials.run.isin([s["name"] for s in group["sessions"]])]
        # The row shows the configuration and its sweep, never one member's seed; the
        # group is named after its sweep and configuration, the members after themselves,
        # seed included.
        label = (sweep_dir / "sweep.txt").read_text().strip()
        assert label.startswith("tiny-")
        assert group["hparams"] == {"lr": members.lr.iloc[0],
                                    "optimizer": members.optimizer.iloc[0], "sweep": label}
        assert members[["lr", "optimizer"]].nunique().eq(1).all()
        assert sorted(members.seed) == [0, 1]
        sweep, configuration = group["name"].split("/")
        assert sweep == label
        assert {f"{configuration}-s{seed}" for seed in members.seed} == set(members.run)
        # Its metrics are the mean over the seeds that have them.
        metrics = metric_values(group)
        for tag, column in (("hparam/val_acc", "val_acc"), ("hparam/test_acc", "test_acc")):
            if members[column].notna().any():
                assert metrics[tag] == pytest.approx(members[column].mean())
            else:
                assert tag not in metrics
    assert any(metric_values(g) for g in groups)  # the check above ran on some numbers


def test_the_experiment_lists_every_hparam_domain_and_metric(server):
    experiment = get(server + "/data/plugin/hparams/experiment", {"experimentName": ""})
    # Domains that admit every sweep's values: TensorBoard keeps the first summary it
    # reads, whichever sweep wrote it.
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    assert infos["optimizer"]["domainDiscrete"] == ["sgd", "adam", "adamw", "rmsprop"]
    assert infos["lr"]["domainInterval"] == {"minValue": 0.0, "maxValue": "Infinity"}
    assert "domainDiscrete" not in infos["sweep"] and infos["sweep"]["type"] == \
        "DATA_TYPE_STRING"
    tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"hparam/val_acc", "hparam/test_acc", "hparam/final_test_acc",
            "hparam/final_test_loss", "val/accuracy", "test/accuracy"} <= tags


def test_scalars_in_the_event_files_equal_history_csv(sweep_dir):
    history = pd.read_csv(sweep_dir / "history.csv")
    for run, rows in history.groupby("run"):
        events = EventAccumulator(str(sweep_dir / "tb" / run), size_guidance={"scalars": 0})
        events.Reload()
        for column, tag in (("test_acc", "test/accuracy"), ("train_loss", "train/loss"),
                            ("test_loss", "test/loss"), ("val_acc", "val/accuracy"),
                            ("val_loss", "val/loss")):
            logged = [(e.step, e.value) for e in events.Scalars(tag)]
            expected = list(zip(rows.epoch, rows[column], strict=True))
            assert [s for s, _ in logged] == [s for s, _ in expected]
            assert [v for _, v in logged] == pytest.approx([v for _, v in expected],
                                                           nan_ok=True)
        tags = events.Tags()
        assert "train/loss_step" in tags["scalars"]
        if rows.test_acc.notna().all() and len(rows) == 2:
            assert "test/predictions" in tags["images"]
            assert "weights/conv1.weight" in tags["histograms"]


def test_the_graph_is_written_once_at_the_root(sweep_dir, server):
    assert len(list((sweep_dir / "tb").glob("events.out.tfevents.*"))) == 1
    request = urllib.request.urlopen(server + "/data/plugin/graphs/graph?run=.&conceptual=false",
                                     timeout=30)
    text = request.read().decode()
    nodes = {}  # name -> (op, inputs, output shape) from TensorBoard's pbtxt
    for block in text.split("node {")[1:]:
        name = block.split('name: "', 1)[1].split('"', 1)[0]
        op = block.split('op: "', 1)[1].split('"', 1)[0]
        inputs = [part.split('"', 1)[0] for part in block.split('input: "')[1:]]
        shape = [int(part.split("\n", 1)[0]) for part in block.split("size: ")[1:]]
        nodes[name] = (op, inputs, shape)
    assert nodes["input"] == ("IO Node", [], [1, 1, 28, 28])
    assert nodes["LeNet/conv1"] == ("Conv2d", ["input"], [1, 6, 24, 24])
    assert nodes["LeNet/flatten"] == ("flatten", ["LeNet/pool_1"], [1, 256])
    assert nodes["LeNet/fc3"] == ("Linear", ["LeNet/relu_3"], [1, 10])
    assert nodes["output"] == ("IO Node", ["LeNet/fc3"], [1, 10])
    # Every layer, and a path from the input to the output.
    assert {"LeNet/conv2", "LeNet/fc1", "LeNet/fc2", "LeNet/pool", "LeNet/relu"} < set(nodes)
    node, seen = "output", 0
    while node != "input" and seen < len(nodes):
        node, seen = nodes[node][1][0], seen + 1
    assert node == "input"


def test_an_interrupted_trial_rerun_replaces_its_curves(tmp_path, monkeypatch):
    from harness.sweep import SweepInterrupted

    raw = small_config(search={"space": {"lr": [0.02], "optimizer": ["sgd"]}},
                       logging={"tensorboard": True, "visdom": False})
    interrupt_epoch(monkeypatch, at=2)
    options = SweepOptions(out=tmp_path, progress=False)
    with pytest.raises(SweepInterrupted):
        run_sweep(parse_config(raw), options)
    run_sweep(parse_config(raw), options)
    runs = [p.name for p in (tmp_path / "tb").iterdir() if p.is_dir()]
    assert runs == ["0000-sgd-lr0.02-bs64-s0"]
    events = EventAccumulator(str(tmp_path / "tb" / runs[0]))
    events.Reload()
    history = pd.read_csv(tmp_path / "history.csv")
    logged = [(e.step, e.value) for e in events.Scalars("test/accuracy")]
    assert [step for step, _ in logged] == history.epoch.tolist() == [1, 2]
    assert [value for _, value in logged] == pytest.approx(history.test_acc.tolist())


def test_a_rerun_trial_is_a_success_in_the_hparams_table_as_in_trials_csv(
        tmp_path, monkeypatch):
    from harness.sweep import SweepInterrupted

    raw = small_config(search={"space": {"lr": [0.02, 0.05], "optimizer": ["sgd"]}},
                       logging={"tensorboard": True, "visdom": False})
    interrupt_epoch(monkeypatch, at=2)  # the first trial, in its second epoch
    options = SweepOptions(out=tmp_path, progress=False)
    with pytest.raises(SweepInterrupted):
        run_sweep(parse_config(raw), options)
    run_sweep(parse_config(raw), options)
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert (trials.state == "COMPLETE").all() and len(trials) == 2
    with tensorboard(tmp_path / "tb") as url:
        groups = session_groups(url)
    statuses = {s["name"]: s["status"] for g in groups for s in g["sessions"]}
    assert statuses == {run: "STATUS_SUCCESS" for run in trials.run}


def test_prediction_grid_puts_misclassified_digits_first():
    x = torch.randn(40, 1, 28, 28)
    y = torch.randint(0, 10, (40,))
    model = LeNet()
    image, caption = prediction_grid(model, x, y)
    assert image.mode == "RGB" and image.width == 8 * 56 and image.height == 4 * 68
    wrong = int((model(x).argmax(1) != y).sum())
    assert caption.startswith(f"{wrong} of 40 example digits misclassified")


def test_fast_record_checksum_equals_tensorboards_own():
    import os

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as slow

    from harness.sinks.tensorboard import masked_crc32c

    for size in (0, 1, 12, 1000, 65_537):
        data = os.urandom(size)
        assert masked_crc32c(data) == slow(data)


def test_histograms_bin_like_numpy_and_leave_out_non_finite_tensors():
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(5000, generator=generator) * 0.1
    bad = torch.tensor([1.0, float("nan")])
    summary = histograms({"weights/w": weights.view(50, 100), "grads/w": bad})
    assert [value.tag for value in summary.value] == ["weights/w"]
    histo = summary.value[0].histo
    counts, edges = np.histogram(weights.numpy(), bins=HISTOGRAM_BINS)
    assert histo.num == 5000 and sum(histo.bucket) == 5000
    assert histo.min == pytest.approx(edges[0]) and histo.max == pytest.approx(edges[-1])
    assert histo.sum == pytest.approx(float(weights.sum()), abs=1e-3)
    assert histo.sum_squares == pytest.approx(float(weights.square().sum()), rel=1e-5)
    assert list(histo.bucket_limit) == pytest.approx(list(edges[1:]), abs=1e-6)
    # float32 against float64 edges: at most a value or two may land in a neighbour.
    assert np.abs(np.array(histo.bucket) - counts).sum() <= 2


@pytest.fixture(scope="module")
def three_sweeps(tmp_path_factory):
    """One config run twice (two --out directories) and a third with other values, under
    one folder, as a person keeps yesterday's and today's sweeps."""
    root = tmp_path_factory.mktemp("three")
    quiet = {"histograms": False, "images": False, "graph": False}
    twin = small_config(name="twin", data={"train_size": 128, "test_size": 64},
                        train={"epochs": 1}, logging={"tensorboard": quiet, "visdom": False})
    other = small_config(name="other", data={"train_size": 128, "test_size": 64},
                         train={"epochs": 1}, search={"space": {
                             "lr": [0.003], "batch_size": [16, 64],
                             "optimizer": ["rmsprop"]}},
                         logging={"tensorboard": quiet, "visdom": False})
    for name, raw in (("a", twin), ("b", twin), ("c", other)):
        run_sweep(parse_config(raw), SweepOptions(out=root / name, progress=False))
    return root


def test_several_sweeps_under_one_folder_are_never_pooled_and_never_filtered_out(
        three_sweeps):
    trials = {name: pd.read_csv(three_sweeps / name / "trials.csv") for name in "abc"}
    labels = {name: (three_sweeps / name / "sweep.txt").read_text().strip() for name in "abc"}
    assert len(set(labels.values())) == 3  # the same config run twice: two sweeps
    with tensorboard(three_sweeps) as url:
        groups = session_groups(url)
        experiment = get(url + "/data/plugin/hparams/experiment", {"experimentName": ""})
        filtered = get(url + "/data/plugin/hparams/session_groups", {
            "experimentName": "", "allowedStatuses": STATUSES,
            "colParams": [own_domain_filter(h) for h in experiment["hparamInfos"]],
            "aggregationType": "AGGREGATION_AVG", "startIndex": 0,
            "sliceSize": 100})["sessionGroups"]
    every = {f"{name}/tb/{run}" for name, table in trials.items() for run in table.run}
    assert {s["name"] for g in groups for s in g["sessions"]} == every
    for group in groups:  # each group holds one sweep's sessions, named after it
        sweeps = {s["name"].split("/")[0] for s in group["sessions"]}
        assert len(sweeps) == 1
        assert group["name"].startswith(labels[sweeps.pop()] + "/")
    # Whichever sweep's experiment summary TensorBoard read, its domains drop nobody.
    assert {s["name"] for g in filtered for s in g["sessions"]} == every
    assert {g["hparams"].get("batch_size") for g in groups if "batch_size" in g["hparams"]} \
        == {"16", "32", "64"}  # integers as written, not 32.000


def own_domain_filter(info):
    """A column filter that selects what the experiment's own domain admits."""
    column = {"hparam": info["name"]}
    if "domainDiscrete" in info:
        column["filterDiscrete"] = info["domainDiscrete"]
    elif "domainInterval" in info:
        column["filterInterval"] = info["domainInterval"]
    return column


def test_harness_tensorboard_shows_several_sweeps_labelled_as_compare_labels_them(
        three_sweeps):
    import os
    import signal

    from conftest import ROOT

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "tensorboard", "a", "b", "c", "--port", str(port)],
        cwd=three_sweeps, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        assert first == f"TensorBoard on http://127.0.0.1:{port} over a, b, c (Ctrl-C stops " \
            "it)\n", process.stderr.read()
        url = f"http://127.0.0.1:{port}"
        runs = get(url + "/data/runs")
        trials = {name: pd.read_csv(three_sweeps / name / "trials.csv") for name in "abc"}
        assert sorted(runs) == sorted([".", *(f"{name}/{run}" for name, table in
                                              trials.items() for run in table.run)])
        experiment = get(url + "/data/plugin/hparams/experiment", {"experimentName": ""})
        infos = {h["name"]: h for h in experiment["hparamInfos"]}
        labels = [(three_sweeps / name / "sweep.txt").read_text().strip() for name in "abc"]
        assert infos["sweep"]["domainDiscrete"] == labels  # a checkbox per sweep
        assert infos["batch_size"]["domainDiscrete"] == ["16", "32", "64"]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130


def test_harness_tensorboard_of_a_directory_without_a_sweep_is_one_line(tmp_path):
    from conftest import run_cli

    (tmp_path / "empty").mkdir()
    result = run_cli("tensorboard", "empty", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("harness: empty: holds no sweep with TensorBoard runs (no "
                             "config.yaml and tb/); give a directory a sweep wrote with "
                             "logging.tensorboard on, such as results/quickstart\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
