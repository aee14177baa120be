"""Tables from a hand-made trials table, against values computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness import tables


def trial(run, optimizer, lr, bs, seed, value, state="COMPLETE", error=""):
    return {"trial": len(run), "run": run, "state": state, "optimizer": optimizer, "lr": lr,
            "batch_size": bs, "momentum": 0.9, "weight_decay": 0.0, "seed": seed,
            "value": value if state == "COMPLETE" else math.nan, "best_epoch": 2,
            "duration_s": 1.0, "val_acc": value, "test_acc": value, "final_test_loss": 0.1,
            "error": error}


@pytest.fixture
def trials():
    return pd.DataFrame([
        trial("a0", "adam", 0.01, 64, 0, 0.90), trial("a1", "adam", 0.01, 64, 1, 0.92),
        trial("a2", "adam", 0.01, 64, 2, 0.94),
        trial("s0", "sgd", 0.1, 64, 0, 0.80), trial("s1", "sgd", 0.1, 64, 1, 0.84),
        trial("s2", "sgd", 0.1, 64, 2, 0.82),
        trial("b0", "sgd", 0.1, 256, 0, 0.70),
        trial("d0", "sgd", 1.0, 64, 0, None, "FAIL", "diverged: train loss is nan at epoch 2"),
        trial("d1", "sgd", 1.0, 64, 1, None, "FAIL", "diverged: train loss is nan at epoch 1"),
        trial("p0", "adam", 0.1, 256, 0, None, "PRUNED"),
    ])


def test_leaderboard_means_stds_and_confidence_intervals(trials):
    board = tables.leaderboard(trials)
    assert board["rank"].tolist() == [1, 2, 3]
    assert board[["optimizer", "lr", "batch_size"]].values.tolist() == [
        ["adam", 0.01, 64], ["sgd", 0.1, 64], ["sgd", 0.1, 256]]
    assert board["n"].tolist() == [3, 3, 1]
    assert board["mean"].tolist() == pytest.approx([0.92, 0.82, 0.70])
    assert board["std"][:2].tolist() == pytest.approx([0.02, 0.02])
    assert math.isnan(board.loc[2, "std"])  # one seed: no spread, not a spread of 0
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t(0.975, df=2) * s / sqrt(n)
    assert board.loc[0, "ci95_low"] == pytest.approx(0.92 - half)
    assert board.loc[0, "ci95_high"] == pytest.approx(0.92 + half)
    assert math.isnan(board.loc[2, "ci95_low"])  # one seed: no interval
    assert "momentum" not in board.columns  # the same everywhere: not a column


def test_minimizing_ranks_the_other_way(trials):
    assert tables.leaderboard(trials, maximize=False)["mean"].tolist() == pytest.approx(
        [0.70, 0.82, 0.92])


def test_marginals_best_follows_the_direction(trials):
    def best(maximize):
        table = tables.marginals(trials, maximize).set_index(["hparam", "value"])
        return table.loc[("optimizer", "sgd"), "best"]
    assert best(True) == pytest.approx(0.84) and best(False) == pytest.approx(0.70)


def test_by_optimizer_keeps_each_optimizers_best(trials):
    best = tables.by_optimizer(tables.leaderboard(trials))
    assert best[["optimizer", "mean"]].values.tolist() == [["adam", pytest.approx(0.92)],
                                                           ["sgd", pytest.approx(0.82)]]


def test_pivots_are_lr_by_batch_size_per_optimizer(trials):
    pivots = tables.pivots(trials)
    assert sorted(pivots) == ["adam", "sgd"]
    sgd = pivots["sgd"]
    assert sgd.loc[0.1, 64] == pytest.approx(0.82) and sgd.loc[0.1, 256] == pytest.approx(0.70)
    assert list(sgd.columns) == [64, 256]


def test_marginals_average_over_everything_else(trials):
    table = tables.marginals(trials).set_index(["hparam", "value"])
    assert table.loc[("optimizer", "sgd"), "n"] == 4
    assert table.loc[("optimizer", "sgd"), "mean"] == pytest.approx((0.8 + 0.84 + 0.82 + 0.7) / 4)
    assert table.loc[("batch_size", 64), "mean"] == pytest.approx((0.9 + 0.92 + 0.94 + 2.46) / 6)


def test_welch_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(0.9, 0.02, rng.integers(2, 8)), rng.normal(0.88, 0.05, rng.integers(2, 8))
        t, p = tables.welch(a, b)
        expected = stats.ttest_ind(a, b, equal_var=False)
        assert t == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)


def test_seed_tests_flag_configurations_significantly_worse_than_the_leader(trials):
    seeds = tables.seed_tests(trials)
    assert seeds["n"].tolist() == [3, 3]  # one-seed configurations are not tested
    sgd = seeds.iloc[1]
    expected = stats.ttest_ind([0.80, 0.84, 0.82], [0.90, 0.92, 0.94], equal_var=False)
    assert sgd["p"] == pytest.approx(expected.pvalue) and sgd["worse"]
    assert sgd["diff"] == pytest.approx(-0.10)
    assert seeds.iloc[0]["p"] == 1.0 and not seeds.iloc[0]["worse"]


def test_failures_group_by_state_and_reason(trials):
    table = tables.failures(trials)
    assert table[["state", "reason", "count"]].values.tolist() == [
        ["FAIL", "diverged: train loss is nan", 2], ["PRUNED", "pruned", 1]]
    assert table.iloc[0]["runs"] == "d0, d1"


def test_summary_markdown_answers_first(trials):
    text = tables.summary_markdown(trials, True, "demo")
    assert text.startswith("# demo\n\n10 trials: 7 COMPLETE, 2 FAIL, 1 PRUNED")
    assert "Best configuration: optimizer=adam, lr=0.01, batch_size=64: 0.9200 (n=3" in text
    for heading in ("## Leaderboard", "## Seeds: Welch", "## Failed and pruned",
                    "## sgd: objective by lr"):
        assert heading in text


def test_one_seed_has_no_spread_and_the_summary_says_so(trials):
    one_seed = trials[trials["seed"] == 0]
    board = tables.leaderboard(one_seed)
    assert (board["n"] == 1).all() and board["std"].isna().all()
    answer = tables.summary_markdown(one_seed, True, "demo").splitlines()[4]
    assert answer.startswith("Best configuration: optimizer=adam, lr=0.01, batch_size=64")
    assert "one seed, so no confidence interval" in answer and "nan" not in answer
