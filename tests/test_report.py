"""compare and report on real sweep directories, through the command line."""

import io
import re

import pandas as pd
import pytest
from conftest import run_cli, small_config

from harness.config import parse_config
from harness.sweep import SweepOptions, run_sweep


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    space = {"lr": [0.02, 1.0e6], "optimizer": ["sgd", "adam"]}
    for name in ("first", "second"):
        raw = small_config(name=name, search={"space": space, "seeds": [0, 1]},
                           data={"train_size": 128, "test_size": 64})
        run_sweep(parse_config(raw), SweepOptions(out=root / name, progress=False))
    return root


def test_a_sweep_writes_its_tables_and_summary(sweeps):
    out = sweeps / "first"
    names = {p.name for p in (out / "tables").iterdir()}
    assert {"leaderboard.csv", "by_optimizer.csv", "marginals.csv", "seeds.csv",
            "failures.csv", "pivot_adam.csv", "pivot_sgd.csv"} <= names
    board = pd.read_csv(out / "tables" / "leaderboard.csv")
    trials = pd.read_csv(out / "trials.csv")
    complete = trials[trials.state == "COMPLETE"]
    assert board["n"].sum() == len(complete)
    assert board["mean"].max() == pytest.approx(complete.groupby(["optimizer", "lr"])
                                                ["value"].mean().max())
    assert "## Leaderboard" in (out / "summary.md").read_text()


def test_report_is_one_self_contained_file(sweeps):
    result = run_cli("report", str(sweeps / "first"), cwd=sweeps)
    assert result.returncode == 0, result.stderr
    text = (sweeps / "first" / "report.html").read_text()
    assert not re.search(r"https?:", text)
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) >= 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "Leaderboard" in text and "Failed and pruned trials" in text
    assert "Welch" in text


def test_compare_merges_sweeps_that_share_configurations(sweeps):
    result = run_cli("compare", str(sweeps / "first"), str(sweeps / "second"),
                     "--format", "csv", cwd=sweeps)
    assert result.returncode == 0, result.stderr
    board = pd.read_csv(io.StringIO(result.stdout))
    assert set(board["sweep"]) == {"first", "second"}
    assert len(board) == 2 * 2  # two completing configurations in each sweep
    assert board.groupby(["optimizer", "lr"]).size().eq(2).all()
    assert board["rank"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("fmt, marker", [("table", "leaderboard"), ("md", "## Leaderboard"),
                                         ("html", "<table")])
def test_compare_formats(sweeps, fmt, marker):
    result = run_cli("compare", str(sweeps / "first"), "--format", fmt, cwd=sweeps)
    assert result.returncode == 0 and marker in result.stdout


def test_compare_of_a_directory_without_results_is_bad_input(tmp_path):
    result = run_cli("compare", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "not a readable results directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
