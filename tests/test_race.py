"""Racing (search.race): seeds only where the answer is still open. A trainer of known
outcomes stands in for training, so each configuration's results are drawn around a
mean the test knows; real processes for kill -9, --workers and --population."""

import math
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import ROOT, count_trials, small_config

from harness.config import RaceConfig
from harness.parse import parse_config
from harness.study import race
from harness.study.race import NO_VALUE, standing

# lr -> the mean of its configuration's val_acc; two equal leaders, one a little worse,
# one far worse. Each seed's result is the mean plus that seed's known deviation.
MEANS = {0.1: 0.95, 0.2: 0.95, 0.3: 0.90, 0.4: 0.50}
DEVIATIONS = [0.01, -0.01, 0.005, -0.005, 0.01, -0.01, 0.003, -0.003]
SEEDS = list(range(len(DEVIATIONS)))

KNOWN_OUTCOMES = f"""
import sys, time
import harness.trainers.fused, harness.trainers.single
from harness.types import EpochMetrics

MEANS, DEVIATIONS = {MEANS!r}, {DEVIATIONS!r}
PAUSE = float(sys.argv.pop(1))

def metrics(spec):
    value = MEANS[spec.params["lr"]] + DEVIATIONS[spec.seed]
    return EpochMetrics(train_loss=0.1, val_loss=1 - value, val_acc=value, test_loss=1 - value,
                        test_acc=value, seen=1, steps=1, train_s=PAUSE, epoch_s=PAUSE)

def epoch(self, members):
    time.sleep(PAUSE)
    return [metrics(spec) for spec in members]

harness.trainers.single.SingleTrainer.epoch = epoch
harness.trainers.fused.FusedTrainer.epoch = epoch
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def raced_config(**search):
    return small_config(name="race", train={"epochs": 1}, search={
        "space": {"lr": list(MEANS), "batch_size": [32], "optimizer": ["sgd"]},
        "seeds": SEEDS, "race": {"first": 2, "alpha": 0.05}, **search},
        logging={"tensorboard": False, "visdom": False})


def known(tmp_path, write_config, *flags, pause=0.0, wait=True):
    """The sweep with the trainer of known outcomes, in a process of its own group."""
    (tmp_path / "known.py").write_text(KNOWN_OUTCOMES)
    config = str(write_config(raced_config()))
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "known.py"), str(pause), "sweep", config, "--out", "r",
         *flags], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    if wait:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        return out, err
    return process


def seeds_run(tmp_path):
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert not trials.duplicated(["lr", "seed"]).any()
    return {lr: sorted(rows.seed) for lr, rows in trials.groupby("lr")}


EXPECTED = {0.1: SEEDS, 0.2: SEEDS, 0.3: [0, 1], 0.4: [0, 1]}


def test_the_worse_stop_at_their_first_seeds_and_the_equal_leaders_get_every_seed(
        tmp_path, write_config):
    out, err = known(tmp_path, write_config)
    assert seeds_run(tmp_path) == EXPECTED
    # The answer says so: the leader, its equal undetermined, the two dropped ones worse.
    # The race's own test is one comparison at a time; the table's verdicts are Holm-
    # corrected over every row, so a row raced out at 2 seeds may stay undetermined there.
    board = pd.read_csv(tmp_path / "r" / "tables" / "leaderboard.csv").set_index("lr")
    assert board["verdict"][[0.1, 0.2, 0.4]].tolist() == ["leader", "undetermined", "worse"]
    assert board["verdict"][0.3] in ("worse", "undetermined")
    assert out.startswith("Leader: optimizer=sgd, lr=0.1, batch_size=32: val_acc 0.9500")
    assert "The race stopped 2 of 4 configurations early (2 worse), after 2 or more of 8 " \
        "seeds" in out.replace("\n  ", " ")
    assert "harness: race: 0 trials so far, at most 32; 4 configurations still in" in err
    assert "harness: race: 8 trials so far, at most 32; 2 configurations still in" in err
    assert "harness: race: over after 20 trials of at most 32; 2 configurations left in" in err
    assert "lr=0.2, batch_size=32 (0.9500, no difference seen)" in out.replace("\n  ", " ")
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "Raced: 4 configurations, the first 2 seeds each and up to 8; 2 stopped early " \
        "(after 2: 2), 2 ran every seed." in md
    assert "- rank 3, optimizer=sgd, lr=0.3, batch_size=32: stopped after 2 of 8 seeds, " \
        "the race found it worse (one-sided Welch test against the leader at its alpha); " \
        "its verdict here: " in md


def test_a_race_killed_mid_way_goes_on_where_it_was(tmp_path, write_config):
    process = known(tmp_path, write_config, "--quiet", pause=0.15, wait=False)
    deadline = time.monotonic() + 120
    # once the race has decided its first round and runs the second
    while count_trials(tmp_path / "r" / "study.db", "COMPLETE") < 10:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    known(tmp_path, write_config, "--quiet")
    assert seeds_run(tmp_path) == EXPECTED


@pytest.mark.parametrize("flags", [["--workers", "2"], ["--population", "4"]])
def test_workers_and_populations_run_the_same_race(tmp_path, write_config, flags):
    known(tmp_path, write_config, "--quiet", *flags)
    assert seeds_run(tmp_path) == EXPECTED


RACE = RaceConfig(first=2, alpha=0.05)


def test_standing_waits_for_a_round_before_deciding_it():
    results = {0: [0.95, None, None, None], 1: [0.5, 0.51, None, None]}
    now = standing(results, 4, RACE, maximize=True, margin=0.005)
    assert now.allowed == 2 and now.still_in == {0, 1} and not now.over
    assert now.due(0, 1) and now.due(1, 1) and not now.due(0, 2)


def test_standing_drops_the_worse_and_one_whose_seeds_all_failed():
    results = {0: [0.95, 0.96, None, None], 1: [0.50, 0.52, None, None],
               2: [NO_VALUE, NO_VALUE, None, None], 3: [0.94, 0.97, None, None]}
    now = standing(results, 4, RACE, maximize=True, margin=0.005)
    assert now.out == {1: (2, "worse"), 2: (2, "failed")}
    assert now.still_in == {0, 3} and now.allowed == 3
    assert now.due(0, 2) and now.due(3, 2) and not now.due(1, 2)
    assert race.summary(now, 4, 4, 8) == ("race: 8 trials so far, at most 16; "
                                          "2 configurations still in")


def test_standing_is_replayed_round_by_round_so_out_stays_out():
    # After round 2 configuration 1 is worse; later the leader's mean falls, but a
    # configuration once out never comes back in: each round reads its own seeds.
    results = {0: [0.95, 0.96, 0.60, None], 1: [0.50, 0.52, None, None],
               2: [0.93, 0.94, 0.92, None]}
    now = standing(results, 4, RACE, maximize=True, margin=0.005)
    assert now.out[1] == (2, "worse") and 1 not in now.still_in
    assert now.allowed == 4


def test_minimizing_races_the_other_way():
    results = {0: [0.10, 0.11], 1: [0.50, 0.52]}
    now = standing(results, 2, RACE, maximize=False, margin=None)
    assert now.out == {1: (2, "worse")} and now.over


def test_a_race_of_a_minimized_loss_is_never_equivalent_without_a_margin():
    results = {0: [0.100, 0.101, None], 1: [0.1001, 0.1002, None]}
    now = standing(results, 3, RACE, maximize=False, margin=None)
    assert now.still_in == {0, 1}


@pytest.mark.parametrize("search, expected", [
    ({"seeds": [0, 1]}, "search.seeds: a race needs at least 3 seeds, not 2"),
    ({"race": {"first": 1}}, "search.race.first: 1 is too small; use an integer >= 2"),
    ({"race": {"first": 8}}, "search.race.first: 8 leaves none of the 8 seeds of "
                             "search.seeds to race for; use at most 7, or add seeds"),
    ({"race": {"alpha": 0.7}}, "search.race.alpha: 0.7 is not valid; use a number in "
                               "(0, 0.5], such as 0.05"),
    ({"race": {"alpha": 0}}, "search.race.alpha: 0.0 is not valid"),
])
def test_bad_races_are_one_line_each(search, expected):
    from harness.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config(raced_config(**search))
    assert len(info.value.lines) == 1 and info.value.lines[0].startswith(expected)


def test_race_true_is_the_defaults_and_a_negative_margin_is_refused():
    from harness.errors import ConfigError

    config = parse_config(raced_config(race=True))
    assert config.search.race == RaceConfig(first=2, alpha=0.05)
    with pytest.raises(ConfigError, match=r"^objective.margin: -0.1 is not valid; use a "
                       r"number >= 0"):
        parse_config(small_config(objective={"margin": -0.1}))
    assert math.isclose(parse_config(small_config()).objective.margin, 0.005)
    assert parse_config(small_config(objective={"metric": "val_loss"})).objective.margin \
        is None


@pytest.fixture
def known_outcomes(monkeypatch):
    """The trainer of known outcomes, in this process."""
    import harness.trainers.single
    from harness.types import EpochMetrics

    def epoch(self, members):
        out = []
        for spec in members:
            value = MEANS[spec.params["lr"]] + DEVIATIONS[spec.seed]
            out.append(EpochMetrics(train_loss=0.1, val_loss=1 - value, val_acc=value,
                                    test_loss=1 - value, test_acc=value, seen=1, steps=1,
                                    train_s=0.0, epoch_s=0.0))
        return out

    monkeypatch.setattr(harness.trainers.single.SingleTrainer, "epoch", epoch)


def confirmed_config(**search):
    return small_config(name="confirm", train={"epochs": 1}, search={
        "method": "optuna", "sampler": "random", "n_trials": 4, "seeds": [0],
        "space": {"lr": list(MEANS), "batch_size": [32], "optimizer": ["sgd"]},
        "confirm": {"top": 2, "seeds": [1, 2, 3]}, **search},
        logging={"tensorboard": False, "visdom": False})


def test_a_confirmed_search_runs_its_top_on_fresh_seeds_and_ranks_on_them(tmp_path,
                                                                           known_outcomes):
    from harness.sweep import SweepOptions, run_sweep

    outcome = run_sweep(parse_config(confirmed_config()), SweepOptions(out=tmp_path / "r",
                                                                       progress=False))
    trials = outcome.trials
    assert len(trials) == 4 + 2 * 3  # the search, then exactly top x seeds
    confirmation = trials[trials.seed.isin([1, 2, 3])]
    assert sorted(confirmation.lr.unique()) == [0.1, 0.2]  # the search's best two
    board = pd.read_csv(tmp_path / "r" / "tables" / "leaderboard.csv")
    assert sorted(board.lr) == [0.1, 0.2] and (board.n == 3).all()
    means = {lr: sum(MEANS[lr] + DEVIATIONS[s] for s in (1, 2, 3)) / 3 for lr in (0.1, 0.2)}
    assert board.set_index("lr")["mean"].to_dict() == pytest.approx(means)
    assert board.set_index("lr")["search_value"].to_dict() == pytest.approx(
        {lr: MEANS[lr] + DEVIATIONS[0] for lr in (0.1, 0.2)})
    assert "Ranked on the confirmation seeds [1, 2, 3] alone" in (
        tmp_path / "r" / "summary.md").read_text()
    again = run_sweep(parse_config(confirmed_config()), SweepOptions(out=tmp_path / "r",
                                                                     progress=False))
    assert again.ran == 0


def test_a_confirmation_is_raced_when_race_is_set(tmp_path, known_outcomes):
    from harness.sweep import SweepOptions, run_sweep

    raw = confirmed_config(confirm={"top": 3, "seeds": [1, 2, 3, 4, 5, 6, 7]},
                           race={"first": 2})
    run_sweep(parse_config(raw), SweepOptions(out=tmp_path / "r", progress=False))
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    confirmed = trials[trials.seed > 0].groupby("lr").seed.apply(sorted).to_dict()
    assert confirmed == {0.1: list(range(1, 8)), 0.2: list(range(1, 8)), 0.3: [1, 2]}


@pytest.mark.parametrize("search, expected", [
    ({"confirm": {"top": 0, "seeds": [1]}}, "search.confirm.top: 0 is too small"),
    ({"confirm": {"top": 2, "seeds": [0, 1]}}, "search.confirm.seeds: [0] also searched"),
    ({"method": "grid", "n_trials": 20, "sampler": "tpe"}, "search.confirm: only for method "
                                                           "optuna"),
    ({"race": {"first": 2}, "confirm": None}, "search.race: with method optuna a race runs "
                                              "the confirmation"),
])
def test_bad_confirmations_are_one_line_each(search, expected):
    from harness.errors import ConfigError

    raw = confirmed_config(**search)
    if search.get("method") == "grid":
        del raw["search"]["n_trials"], raw["search"]["sampler"]
    if "confirm" in search and search["confirm"] is None:
        del raw["search"]["confirm"]
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert len(info.value.lines) == 1 and info.value.lines[0].startswith(expected)


def test_more_seeds_let_an_undetermined_race_go_on(tmp_path, known_outcomes):
    from harness.sweep import SweepOptions, run_sweep

    options = SweepOptions(out=tmp_path / "r", progress=False)
    run_sweep(parse_config(raced_config(seeds=SEEDS[:4])), options)
    assert seeds_run(tmp_path) == {0.1: SEEDS[:4], 0.2: SEEDS[:4], 0.3: [0, 1], 0.4: [0, 1]}
    outcome = run_sweep(parse_config(raced_config()), options)  # all 8 seeds now
    assert seeds_run(tmp_path) == EXPECTED and outcome.ran == 8


def test_a_race_takes_new_seeds_only_at_the_end_and_needs_three(tmp_path, known_outcomes):
    from harness.errors import ConfigError
    from harness.sweep import SweepOptions, run_sweep

    options = SweepOptions(out=tmp_path / "r", progress=False)
    run_sweep(parse_config(raced_config(seeds=[0, 1, 2])), options)
    # A seed inserted before the others would replay the race on other seeds.
    with pytest.raises(ConfigError, match=r"search.seeds differs: \[0, 1, 2\] in the sweep, "
                       r"\[5, 0, 1, 2\] now\); only search.seeds \(a race's: at the end\)"):
        run_sweep(parse_config(raced_config(seeds=[5, 0, 1, 2])), options)
    # No search.seeds: train.seed alone, too few to race.
    raw = raced_config()
    del raw["search"]["seeds"]
    with pytest.raises(ConfigError, match=r"^search.seeds: a race needs at least 3 seeds, "
                       "not 1"):
        parse_config(raw)
