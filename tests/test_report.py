"""compare and report on real sweep directories, through the command line."""

import io
import math
import re
import shutil
import socket
from html.parser import HTMLParser

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from conftest import run_cli, small_config

from harness.errors import ConfigError
from harness.parse import parse_config
from harness.reporting.report import _img, curves
from harness.reporting.saved import read_sweep, read_sweeps, sweep_labels
from harness.study.owner import this_process
from harness.sweep import SweepOptions, run_sweep

SPACE = {"lr": [0.02, 1.0e6], "optimizer": ["sgd", "adam"]}  # lr 1e6 always diverges
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    for name in ("first", "second"):
        raw = small_config(name=name, search={"space": SPACE, "seeds": SEEDS},
                           data={"train_size": 128, "test_size": 64})
        run_sweep(parse_config(raw), SweepOptions(out=root / name, progress=False))
    return root


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """One config run twice into two directories (`sweep --out`): one name, two sweeps."""
    root = tmp_path_factory.mktemp("twins")
    raw = small_config(name="quick", search={"space": SPACE, "seeds": SEEDS},
                       data={"train_size": 128, "test_size": 64}, train={"epochs": 1})
    for parent in ("a", "b"):
        run_sweep(parse_config(raw), SweepOptions(out=root / parent / "quick", progress=False))
    return root


def test_a_sweep_writes_its_tables_and_summary(sweeps):
    out = sweeps / "first"
    names = {p.name for p in (out / "tables").iterdir()}
    assert {"leaderboard.csv", "by_optimizer.csv", "marginals.csv", "failures.csv",
            "pivot_adam.csv", "pivot_sgd.csv"} <= names
    assert "seeds.csv" not in names  # its tests are the leaderboard's p columns
    board = pd.read_csv(out / "tables" / "leaderboard.csv")
    trials = pd.read_csv(out / "trials.csv")
    complete = trials[trials.state == "COMPLETE"]
    assert board["n"].sum() == len(complete)
    assert board["mean"].max() == pytest.approx(complete.groupby(["optimizer", "lr"])
                                                ["value"].mean().max())
    failures = pd.read_csv(out / "tables" / "failures.csv")
    assert set(failures["lr"]) == {1.0e6} and not failures["ranked"].any()
    assert "## Leaderboard" in (out / "summary.md").read_text()


def test_report_is_one_self_contained_file(sweeps):
    result = run_cli("report", str(sweeps / "first"), cwd=sweeps)
    assert result.returncode == 0, result.stderr
    text = (sweeps / "first" / "report.html").read_text()
    assert not re.search(r"https?:", text)
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) >= 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "Leaderboard" in text and "Failed and pruned trials" in text
    assert "Welch" in text and "Holm" in text


def test_compare_keeps_sweeps_with_different_names_apart(sweeps):
    result = run_cli("compare", str(sweeps / "first"), str(sweeps / "second"),
                     "--format", "csv", cwd=sweeps)
    assert result.returncode == 0, result.stderr
    board = pd.read_csv(io.StringIO(result.stdout))
    assert set(board["sweep"]) == {"first", "second"}
    assert len(board) == 2 * 2  # two completing configurations in each sweep
    assert board.groupby(["optimizer", "lr"]).size().eq(2).all()
    assert board["rank"].tolist() == [1, 2, 3, 4]


def leaderboard_rows(fmt: str, stdout: str) -> pd.DataFrame:
    """The leaderboard as compare printed it, in csv, md or html."""
    if fmt == "csv":
        return pd.read_csv(io.StringIO(stdout), dtype=str)
    if fmt == "md":
        section = stdout.split("## Leaderboard")[1].split("\n## ")[0]
        lines = [line for line in section.splitlines() if line.startswith("|")]
        cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
        return pd.DataFrame(cells[2:], columns=cells[0])
    parser = _Tables()
    parser.feed(stdout)
    header, *rows = parser.tables["Leaderboard"]
    return pd.DataFrame(rows, columns=header)


class _Tables(HTMLParser):
    """Every <table> of a page by the <h2> above it, as rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self.heading, self.row, self.text = {}, "", None, None

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self.text = ""
        elif tag == "table":
            self.tables[self.heading] = []
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.text = ""

    def handle_data(self, data):
        if self.text is not None:
            self.text += data

    def handle_endtag(self, tag):
        if tag == "h2":
            self.heading, self.text = self.text, None
        elif tag in ("td", "th"):
            self.row.append(self.text.strip())
            self.text = None
        elif tag == "tr":
            self.tables[self.heading].append(self.row)


@pytest.mark.parametrize("fmt", ["csv", "md", "html"])
def test_compare_of_one_config_run_twice_keeps_both_sweeps(twins, fmt):
    one = pd.read_csv(twins / "a" / "quick" / "tables" / "leaderboard.csv")
    result = run_cli("compare", "a/quick", "b/quick", "--format", fmt, cwd=twins)
    assert result.returncode == 0, result.stderr
    board = leaderboard_rows(fmt, result.stdout)
    assert len(board) == 2 * len(one) == 4
    assert sorted(set(board["sweep"])) == ["a/quick", "b/quick"]
    assert board["n"].astype(int).eq(len(SEEDS)).all()  # never pooled: one sweep's seeds
    assert board.groupby("sweep").size().eq(len(one)).all()
    if fmt != "csv":
        assert "# a/quick vs b/quick" in result.stdout or "a/quick vs b/quick</h1>" in \
            result.stdout


def test_compare_curves_carry_the_sweep(twins):
    sweep = read_sweeps([twins / "a" / "quick", twins / "b" / "quick"])
    figure = curves(sweep.trials, sweep.history, sweep.spec)
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert {label.split(": ")[0] for label in labels} == {"a/quick", "b/quick"}
    for line in figure.axes[0].get_lines():  # one point per epoch: one sweep's history
        assert len(line.get_xdata()) == 1


def test_compare_of_the_same_directory_twice_is_bad_input(twins):
    result = run_cli("compare", "a/quick", "a/quick/", cwd=twins)
    assert result.returncode == 2 and "given twice" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sweep_labels_are_directory_names_made_unique(tmp_path):
    paths = [tmp_path / "a" / "quick", tmp_path / "b" / "quick", tmp_path / "other"]
    assert sweep_labels(paths) == ["a/quick", "b/quick", "other"]
    nested = [tmp_path / "x" / "quick", tmp_path / "y" / "x" / "quick"]
    assert sweep_labels(nested) == [f"{tmp_path.name}/x/quick", "y/x/quick"]


def test_sweeps_that_select_on_different_metrics_are_not_compared(sweeps, tmp_path):
    for name, metric in (("acc", "test_acc"), ("loss", "test_loss")):
        shutil.copytree(sweeps / "first", tmp_path / name)
        config = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        config["objective"] = {"metric": metric, "direction": "maximize"}
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"different objectives \(acc: maximize test_acc, "
                       r"loss: maximize test_loss\)"):
        read_sweeps([tmp_path / "acc", tmp_path / "loss"])


def test_sweeps_that_optimize_in_opposite_directions_are_named_in_words(sweeps, tmp_path):
    for name, metric in (("acc", "val_acc"), ("loss", "val_loss")):
        shutil.copytree(sweeps / "first", tmp_path / name)
        config = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        config["objective"] = {"metric": metric}
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("compare", "acc", "loss", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "harness: compare: the sweeps select on different objectives (acc: maximize val_acc, "
        "loss: minimize val_loss); compare sweeps with the same objective")


@pytest.fixture(scope="module")
def old_results(sweeps, tmp_path_factory):
    """A results directory as earlier versions wrote it: selected on test, a
    best_test_acc column, no validation metrics."""
    out = tmp_path_factory.mktemp("old") / "old"
    shutil.copytree(sweeps / "first", out)
    trials = pd.read_csv(out / "trials.csv")
    test = trials["test_acc"] if "test_acc" in trials else trials["best_test_acc"]
    trials = trials.drop(columns=[c for c in ("test_acc", "test_loss", "val_acc", "val_loss",
                                              "best_test_acc") if c in trials])
    trials.insert(trials.columns.get_loc("value") + 1, "best_test_acc", test)
    trials.to_csv(out / "trials.csv", index=False)
    config = yaml.safe_load((out / "config.yaml").read_text())
    config["objective"] = {"metric": "test_acc", "direction": "maximize"}
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    return out


@pytest.mark.parametrize("fmt", ["table", "csv", "md", "html"])
def test_compare_shows_what_results_of_earlier_versions_have(old_results, fmt):
    result = run_cli("compare", str(old_results), "--format", fmt, cwd=old_results)
    assert result.returncode == 0, result.stderr
    assert "best_test_acc_mean" in result.stdout
    said = result.stderr if fmt == "csv" else result.stdout
    assert "Selected on the test set" in said


def test_report_of_earlier_results_says_selection_was_on_test(old_results):
    result = run_cli("report", str(old_results), cwd=old_results)
    assert result.returncode == 0, result.stderr
    text = (old_results / "report.html").read_text()
    assert "class=warning>Selected on the test set" in text


@pytest.mark.parametrize("fmt, marker", [("table", "Leaderboard"), ("md", "## Leaderboard"),
                                         ("html", "<table")])
def test_compare_formats(sweeps, fmt, marker):
    result = run_cli("compare", str(sweeps / "first"), "--format", fmt, cwd=sweeps)
    assert result.returncode == 0 and marker in result.stdout


@pytest.mark.parametrize("what, expected", [
    ("missing", "does not exist"), ("empty", "an empty directory, no sweep in it"),
    ("no sweep", "holds no sweep (no config.yaml)"),
    ("not started", "a sweep that has not started"),
])
@pytest.mark.parametrize("command", ["compare", "report"])
def test_a_directory_without_results_is_bad_input_that_says_what_it_is(
        tmp_path, sweeps, what, expected, command):
    target = tmp_path / "target"
    if what != "missing":
        target.mkdir()
    if what == "no sweep":
        (target / "notes.txt").write_text("my notes")
    if what == "not started":
        shutil.copy(sweeps / "first" / "config.yaml", target)
    result = run_cli(command, str(target), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"harness: {target}: {expected}")
    assert len(result.stderr.strip().splitlines()) == 1


def cut(path, keep_bytes_of_last_line=7):
    """Cut a file inside its last line, as a crash while appending leaves it."""
    text = path.read_text()
    start = text.rstrip("\n").rfind("\n") + 1
    path.write_text(text[:start + keep_bytes_of_last_line])


@pytest.mark.parametrize("damage", ["cut trials", "cut history", "a row lost"])
def test_damaged_results_files_are_rebuilt_from_the_study_beside_them(tmp_path, sweeps,
                                                                       damage):
    shutil.copytree(sweeps / "first", tmp_path / "first")
    out = tmp_path / "first"
    whole = (out / "trials.csv").read_text(), (out / "history.csv").read_text()
    if damage == "cut trials":
        cut(out / "trials.csv")
    elif damage == "cut history":
        cut(out / "history.csv")
    else:
        lines = whole[0].splitlines(keepends=True)
        (out / "trials.csv").write_text("".join(lines[:-1]))
    result = run_cli("compare", "first", "--format", "csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = result.stderr.strip().splitlines()
    assert len(said) == 1 and said[0].endswith(
        "rebuilt trials.csv and history.csv from first/study.db"), said
    # The half line is not a seed: the files are the study's again, and the table too.
    assert ((out / "trials.csv").read_text(), (out / "history.csv").read_text()) == whole
    assert pd.read_csv(io.StringIO(result.stdout))["n"].tolist() == \
        pd.read_csv(out / "tables" / "leaderboard.csv")["n"].tolist()


@pytest.mark.parametrize("command", ["compare", "report"])
def test_a_cut_results_file_without_a_study_is_bad_input_naming_file_and_line(
        tmp_path, sweeps, command):
    shutil.copytree(sweeps / "first", tmp_path / "first")
    (tmp_path / "first" / "study.db").unlink()
    lines = len((tmp_path / "first" / "trials.csv").read_text().splitlines())
    cut(tmp_path / "first" / "trials.csv")
    result = run_cli(command, "first", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"harness: first/trials.csv: line {lines} is cut short")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_sweep_still_running_is_compared_as_it_stands_and_says_so(tmp_path, sweeps):
    shutil.copytree(sweeps / "first", tmp_path / "first")
    storage = f"sqlite:///{tmp_path / 'first' / 'study.db'}"
    study = optuna.load_study(study_name="first", storage=storage)
    for owner in (this_process(), "gone:1:1", f"{socket.gethostname()}:999999999:1"):
        trial = study.ask()  # a point being trained by a live process, and by dead ones
        trial.set_user_attr("owner", owner)
        trial.set_user_attr("point", f"p{trial.number}")
    result = run_cli("compare", "first", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "8 trials: 4 COMPLETE, 4 FAIL; 2 more still running: the sweep is not " \
        "finished" in result.stdout.replace("\n", " ")
    assert result.stderr.strip() == (
        "harness: first: 1 trial cut off (the process that ran it died); "
        "the sweep's command runs it again")


@pytest.fixture(scope="module")
def thirty(tmp_path_factory):
    """30 trials of one epoch: 15 learning rates x 2 batch sizes."""
    out = tmp_path_factory.mktemp("thirty") / "thirty"
    lrs = np.geomspace(0.002, 0.2, 15).round(5).tolist()
    raw = small_config(name="thirty", data={"train_size": 64, "test_size": 32},
                       train={"epochs": 1}, search={"space": {
                           "lr": lrs, "batch_size": [16, 32], "optimizer": ["sgd"]}})
    run_sweep(parse_config(raw), SweepOptions(out=out, progress=False))
    return out


def test_past_20_trials_the_report_draws_the_top_10_and_a_band_of_the_others(thirty):
    result = run_cli("report", str(thirty), cwd=thirty)
    assert result.returncode == 0, result.stderr
    text = (thirty / "report.html").read_text()
    trials = pd.read_csv(thirty / "trials.csv")
    history = pd.read_csv(thirty / "history.csv")
    assert len(trials) == 30 and history.run.nunique() == 30 and trials.state.eq(
        "COMPLETE").all()
    assert len(pd.read_csv(thirty / "tables" / "leaderboard.csv")) == 30
    assert ("<p class=note>Top 10 of 30 trials by val_acc; the band is the other 20: "
            "median and quartiles per epoch.</p>") in text
    top = trials.sort_values("value", ascending=False, kind="stable").run.head(10).tolist()
    others = history[~history.run.isin(top)]
    sweep = read_sweep(thirty)
    figure = curves(sweep.trials, sweep.history, sweep.spec)
    for ax, column in zip(figure.axes, ("val_acc", "train_loss"), strict=True):
        named = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        assert [line.get_label() for line in named] == top
        (band,) = ax.containers  # the others' median, with quartile whiskers
        median = others.groupby("epoch")[column].median()
        assert band.lines[0].get_ydata().tolist() == pytest.approx(median.tolist())
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == [*top, "the other 20: median, quartiles"]
    assert _img(figure) in text  # report.html embeds exactly this figure


def test_compared_sweeps_past_20_trials_have_a_band_each(thirty, tmp_path):
    shutil.copytree(thirty, tmp_path / "again")
    sweep = read_sweeps([thirty, tmp_path / "again"])
    figure = curves(sweep.trials, sweep.history, sweep.spec)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    named, bands = legend[:10], legend[10:]
    assert {label.split(": ")[0] for label in named} <= {"thirty", "again"}
    counts = sweep.trials.groupby("sweep").size().sub(pd.Series(
        [label.split(": ")[0] for label in named]).value_counts(), fill_value=0)
    assert sorted(bands) == sorted(f"{name}: the other {n}: median, quartiles"
                                   for name, n in counts.items())


def test_a_configuration_that_diverged_for_some_seeds_is_ranked_on_the_others(
        tmp_path, monkeypatch):
    """A real sweep: lr 1e6 diverges for every seed and is only in failures.csv; lr 0.01
    diverges for its second seed (its first epoch's loss made nan), is ranked on its
    first, shows n_failed 1, and summary.md lists it under the leaderboard."""
    import dataclasses

    import harness.trainers.single

    real, calls = harness.trainers.single.train_epoch, []

    def train_epoch(*args, **kwargs):
        calls.append(1)
        stats = real(*args, **kwargs)
        return dataclasses.replace(stats, loss=math.nan) if len(calls) == 3 else stats

    monkeypatch.setattr(harness.trainers.single, "train_epoch", train_epoch)
    raw = small_config(search={"space": {"lr": [0.01, 1e6], "batch_size": [32],
                                         "optimizer": ["sgd"]}, "seeds": [0, 1]},
                       data={"train_size": 128, "test_size": 64})
    out = tmp_path / "out"
    run_sweep(parse_config(raw), SweepOptions(out=out, progress=False))
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials["state"]) == ["COMPLETE", "FAIL", "FAIL", "FAIL"]
    board = pd.read_csv(out / "tables" / "leaderboard.csv")
    assert list(board["lr"]) == [0.01]
    assert board.loc[0, ["rank", "n", "n_failed"]].tolist() == [1, 1, 1]
    failures = pd.read_csv(out / "tables" / "failures.csv")
    unranked = failures[~failures["ranked"]]
    assert set(unranked["lr"]) == {1e6} and set(failures["lr"]) == {0.01, 1e6}
    text = (out / "summary.md").read_text()
    assert "- rank 1, " in text and "1 of 2 seeds failed" in text
    assert "- not ranked, " in text and "(tables/failures.csv)" in text


def test_a_comparison_points_to_each_sweeps_own_failures_table(sweeps):
    result = run_cli("compare", "first", "second", "--format", "md", cwd=sweeps)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("- not ranked")]
    # lr 1e6 with either optimizer, in either sweep
    assert len(notes) == 4 and all("(its sweep's tables/failures.csv)" in n for n in notes)
    for name in ("first", "second"):
        failures = pd.read_csv(sweeps / name / "tables" / "failures.csv")
        assert set(failures["lr"]) == {1.0e6}


def test_report_of_several_sweeps_draws_each_labelled_as_compare_labels_it(twins, tmp_path):
    result = run_cli("report", str(twins / "a" / "quick"), str(twins / "b" / "quick"),
                     "--out", str(tmp_path / "both.html"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"report: {tmp_path / 'both.html'}"
    page = (tmp_path / "both.html").read_text()
    parser = _Tables()
    parser.feed(page)
    board = parser.tables["Leaderboard"]
    sweeps = {row[board[0].index("sweep")] for row in board[1:]}
    assert sweeps == {"a/quick", "b/quick"}
    assert "<h1>a/quick vs b/quick</h1>" in page
    alone = run_cli("report", "a/quick", cwd=twins)
    assert alone.returncode == 0 and (twins / "a" / "quick" / "report.html").exists()


def test_the_forest_plot_has_a_row_per_configuration_coloured_by_verdict(sweeps):
    from harness.reporting import summary
    from harness.reporting.forest import COLOURS as VERDICT_COLOURS
    from harness.reporting.report import forest
    from harness.reporting.tables import Spec

    trials = pd.read_csv(sweeps / "first" / "trials.csv")
    c = summary.build(trials, Spec(margin=0.005))
    figure = forest(c.board, c.spec)
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[::-1] == [f"{r.rank}. " + ", ".join(
        str(v) for v in (r.optimizer, f"{r.lr:g}", r.batch_size)) for r in c.board.itertuples()]
    drawn = {text.get_text() for text in ax.get_legend().get_texts()}
    assert set(c.board["verdict"]) <= drawn and "margin 0.005" in drawn
    colours = {bars.get_label(): bars.lines[0].get_color() for bars in ax.containers}
    assert colours == {v: VERDICT_COLOURS[v] for v in set(c.board["verdict"])}
