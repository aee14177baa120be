"""Tables from hand-made trials tables, against references computed with scipy and
statsmodels in the test."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import ttost_ind

from harness.reporting import bins, slices, summary, tables
from harness.reporting.directory import write_tables
from harness.reporting.tables import Spec
from harness.stats import welch as stats_welch

MINIMIZE = Spec(maximize=False)


def trial(run, optimizer, lr, bs, seed, value, state="COMPLETE", error="", **extra):
    return {"trial": len(run), "run": run, "state": state, "optimizer": optimizer, "lr": lr,
            "batch_size": bs, "momentum": 0.9, "weight_decay": 0.0, "seed": seed,
            "value": value if state == "COMPLETE" else math.nan, "best_epoch": 2,
            "duration_s": 1.0, "val_acc": value, "test_acc": value, "final_test_loss": 0.1,
            "error": error,
            **extra}


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
    low, high = stats.t.interval(0.95, 2, loc=0.92, scale=0.02 / math.sqrt(3))
    assert board.loc[0, "ci95_low"] == pytest.approx(low)
    assert board.loc[0, "ci95_high"] == pytest.approx(high)
    assert math.isnan(board.loc[2, "ci95_low"])  # one seed: no interval
    assert "momentum" not in board.columns  # the same everywhere: not a column
    assert board["test_acc_mean"].tolist() == pytest.approx([0.92, 0.82, 0.70])


def test_the_leaderboard_has_the_contracts_columns(trials):
    board = tables.leaderboard(trials)
    assert board.columns.tolist() == [
        "rank", "optimizer", "lr", "batch_size", "n", "n_failed", "n_pruned", "mean", "std",
        "ci95_low", "ci95_high", "test_acc_mean", "test_acc_std", "p_vs_leader", "p_holm",
        "p_tost", "verdict", "seeds_to_decide", "best_epoch", "duration_s"]


def test_minimizing_ranks_the_other_way(trials):
    assert tables.leaderboard(trials, MINIMIZE)["mean"].tolist() == pytest.approx(
        [0.70, 0.82, 0.92])


def test_marginals_best_follows_the_direction(trials):
    def best(spec):
        table = slices.marginals(trials, spec).set_index(["hparam", "value"])
        return table.loc[("optimizer", "sgd"), "best"]
    assert best(Spec()) == pytest.approx(0.84) and best(MINIMIZE) == pytest.approx(0.70)


def test_by_optimizer_keeps_each_optimizers_best_and_counts_its_losses(trials):
    best = tables.by_optimizer(trials)
    assert best[["optimizer", "mean"]].values.tolist() == [["adam", pytest.approx(0.92)],
                                                           ["sgd", pytest.approx(0.82)]]
    assert best[["optimizer_trials", "optimizer_failed", "optimizer_pruned"]].values.tolist(
        ) == [[4, 0, 1], [6, 2, 0]]


def test_an_optimizer_with_no_completed_trial_is_listed_not_dropped(trials):
    pruned = pd.DataFrame([trial("r0", "rmsprop", 0.01, 64, 0, None, "PRUNED")])
    best = tables.by_optimizer(pd.concat([trials, pruned], ignore_index=True))
    last = best.iloc[-1]
    assert last["optimizer"] == "rmsprop" and pd.isna(last["rank"])
    assert last["optimizer_pruned"] == 1 and math.isnan(last["mean"])


def test_pivots_are_lr_by_batch_size_per_optimizer_with_failed_cells(trials):
    pivots = {p.name: p for p in slices.pivots(trials)}
    assert sorted(pivots) == ["adam", "sgd"]
    sgd = pivots["sgd"]
    assert sgd.mean.loc["0.1", "64"] == pytest.approx(0.82)
    assert sgd.mean.loc["0.1", "256"] == pytest.approx(0.70)
    assert list(sgd.mean.columns) == ["64", "256"]
    assert sgd.cells.loc["1", "64"] == "failed"  # diverged: shown, not dropped
    assert pivots["adam"].cells.loc["0.1", "256"] == "pruned"
    assert sgd.over == "seeds"


def test_marginals_average_over_everything_else_and_say_so(trials):
    table = slices.marginals(trials).set_index(["hparam", "value"])
    assert table.loc[("optimizer", "sgd"), "n"] == 4
    assert table.loc[("optimizer", "sgd"), "mean"] == pytest.approx((0.8 + 0.84 + 0.82 + 0.7) / 4)
    assert table.loc[("batch_size", "64"), "mean"] == pytest.approx((0.9 + 0.92 + 0.94 + 2.46) / 6)
    assert table.loc[("optimizer", "sgd"), "over"] == "seeds, lr, batch_size"
    diverged = table.loc[("lr", "1")]  # every seed failed: a row with n = 0, not a gap
    assert diverged["n"] == 0 and diverged["n_failed"] == 2 and math.isnan(diverged["mean"])


def test_welch_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(0.9, 0.02, rng.integers(2, 8)), rng.normal(0.88, 0.05, rng.integers(2, 8))
        t, p = stats_welch(a, b)
        expected = stats.ttest_ind(a, b, equal_var=False)
        assert t == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)


SEEDS = {("adam", 0.01): [0.95, 0.96, 0.94, 0.955], ("adam", 0.1): [0.93, 0.95, 0.94],
         ("sgd", 0.01): [0.90, 0.93, 0.91, 0.92], ("sgd", 0.1): [0.946, 0.948, 0.95],
         ("rmsprop", 0.01): [0.80, 0.85, 0.90], ("rmsprop", 0.1): [0.5]}


def test_p_values_are_welch_against_rank_1_and_holm_adjusted_like_statsmodels():
    rows = [trial(f"{o}{lr}-{s}", o, lr, 64, s, v)
            for (o, lr), values in SEEDS.items() for s, v in enumerate(values)]
    board = tables.leaderboard(pd.DataFrame(rows))
    leader = SEEDS[tuple(board.loc[0, ["optimizer", "lr"]])]
    assert board.loc[0, ["optimizer", "lr"]].tolist() == ["adam", 0.01]
    assert pd.isna(board.loc[0, "p_vs_leader"]) and pd.isna(board.loc[0, "p_holm"])
    tested = board[board["n"] >= 2].iloc[1:]
    expected = [stats.ttest_ind(SEEDS[(o, lr)], leader, equal_var=False).pvalue
                for o, lr in tested[["optimizer", "lr"]].values]
    assert tested["p_vs_leader"].tolist() == pytest.approx(expected)
    reject, holm, _, _ = multipletests(expected, alpha=0.05, method="holm")
    assert tested["p_holm"].tolist() == pytest.approx(holm.tolist())
    assert (tested["p_holm"] >= tested["p_vs_leader"]).all()
    assert (tested["p_holm"] > tested["p_vs_leader"]).any()  # the correction did something
    # worse where Holm rejects, unless shown equivalent (TOST, statsmodels, margin 0.005)
    tost = [ttost_ind(SEEDS[(o, lr)], leader, -0.005, 0.005, usevar="unequal")[0]
            for o, lr in tested[["optimizer", "lr"]].values]
    assert tested["p_tost"].tolist() == pytest.approx(tost)
    expected_verdicts = ["equivalent" if p < 0.05 else "worse" if r else "undetermined"
                         for p, r in zip(tost, reject, strict=True)]
    assert tested["verdict"].tolist() == expected_verdicts
    assert set(expected_verdicts) >= {"worse", "undetermined"}
    for row in tested[tested["verdict"] == "undetermined"].itertuples():
        a, b = np.array(SEEDS[(row.optimizer, row.lr)]), np.array(leader)
        pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                           / (len(a) + len(b) - 2))
        n = TTestIndPower().solve_power(effect_size=abs(a.mean() - b.mean()) / pooled,
                                        alpha=0.05, power=0.8, ratio=1)
        assert row.seeds_to_decide == math.ceil(n)
    assert tested.loc[tested["verdict"] != "undetermined", "seeds_to_decide"].isna().all()
    one_seed = board[board["n"] == 1].iloc[0]  # too few seeds to test: blank, undetermined
    assert pd.isna(one_seed["p_vs_leader"]) and one_seed["verdict"] == "undetermined"
    assert pd.isna(one_seed["seeds_to_decide"])


def test_the_leader_is_never_tested_against_itself_and_one_seed_leader_tests_none(trials):
    board = tables.leaderboard(trials)
    assert pd.isna(board.loc[0, "p_vs_leader"]) and board.loc[0, "verdict"] == "leader"
    lone = pd.concat([trials, pd.DataFrame([trial("x0", "adam", 0.3, 64, 0, 0.99)])])
    board = tables.leaderboard(lone)
    assert board.loc[0, "n"] == 1 and board["p_vs_leader"].isna().all()


def test_accuracy_intervals_stay_inside_0_and_1():
    rows = [trial("lo0", "sgd", 0.1, 64, 0, 0.02), trial("lo1", "sgd", 0.1, 64, 1, 0.30),
            trial("hi0", "adam", 0.1, 64, 0, 0.999), trial("hi1", "adam", 0.1, 64, 1, 0.90)]
    board = tables.leaderboard(pd.DataFrame(rows), Spec(metric="val_acc"))
    for _, row in board.iterrows():
        values = [r["value"] for r in rows if r["optimizer"] == row["optimizer"]]
        low, high = stats.t.interval(0.95, 1, loc=np.mean(values),
                                     scale=stats.sem(values))
        assert low < 0 or high > 1  # the t interval leaves the range...
        assert row["ci95_low"] == pytest.approx(max(low, 0))  # ...the table's does not
        assert row["ci95_high"] == pytest.approx(min(high, 1))
    losses = tables.leaderboard(pd.DataFrame(rows), Spec(maximize=False, metric="val_loss"))
    assert (losses["ci95_low"] >= 0).all() and (losses["ci95_high"] > 1).any()
    caption = summary.leaderboard_caption(Spec(metric="val_acc"), board)
    assert "clipped to [0, 1]" in caption


def test_continuous_hyperparameters_are_binned_with_unique_labels():
    rng = np.random.default_rng(0)
    lrs = np.exp(rng.uniform(np.log(1e-4), np.log(0.3), 30))
    assert len(set(lrs)) == 30
    rows = [trial(f"t{i}", ["sgd", "adam"][i % 2], lr, [32, 64][i // 2 % 2], 0,
                  0.9 - abs(np.log10(lr) + 2) / 10)
            for i, lr in enumerate(lrs)]
    rows[0]["state"], rows[0]["value"] = "FAIL", math.nan
    frame = pd.DataFrame(rows)
    for spec in (Spec(continuous={"lr": True}), Spec()):  # from the config, or guessed
        lr = slices.marginals(frame, spec).query("hparam == 'lr'")
        assert lr["value"].is_unique and 3 <= len(lr) <= 8
        assert lr["n"].sum() + lr["n_failed"].sum() == 30
        assert all(v.startswith("[") for v in lr["value"])
        assert lr["over"].str.contains("in each bin").all()
        for pivot in slices.pivots(frame, spec):
            assert pivot.cells.index.is_unique and pivot.mean.index.is_unique
            assert len(pivot.cells) <= 8 and "in each bin" in pivot.over
            assert pivot.cells.stack().str.contains(r"n=\d").any()
    board = tables.leaderboard(frame, Spec(continuous={"lr": True}))
    assert len(board) == 29  # the leaderboard never pools different lrs
    shown = summary.display(board)["lr"]
    assert shown.is_unique


def test_bins_of_a_narrow_range_keep_their_labels_apart():
    """Edges that differ only past the 6th significant digit still label bins apart."""
    values = pd.Series([1000.001, 1000.002, 1000.003, 1000.0045])
    labelled = bins.bins(values, False)
    assert labelled.cat.categories.is_unique and len(labelled.cat.categories) >= 2
    assert labelled.notna().all()
    lows = [float(c[1:].split(",")[0]) for c in labelled]
    assert all(low <= v for low, v in zip(lows, values, strict=True))


def test_bins_are_readable_and_log_spaced_for_lr():
    values = pd.Series([1e-4, 2e-4, 5e-4, 0.002, 0.05, 0.3])
    labels = bins.bins(values, log=True)
    assert labels.tolist() == ["[0.0001, 0.0003)", "[0.0001, 0.0003)", "[0.0003, 0.001)",
                               "[0.001, 0.003)", "[0.03, 0.1)", "[0.1, 0.3]"]
    assert list(labels.cat.categories) == sorted(set(labels), key=lambda s: float(s[1:-1]
                                                                                  .split(",")[0]))


def test_hyperparameters_that_print_alike_get_exact_labels():
    rows = [trial("a", "sgd", 0.00131, 64, 0, 0.9), trial("b", "sgd", 0.001312, 64, 0, 0.8)]
    frame = pd.DataFrame(rows)
    pivot = slices.pivots(frame)[0]
    assert pivot.cells.index.tolist() == ["0.00131", "0.001312"]
    assert slices.marginals(frame)["value"].is_unique


def test_searched_pivots_split_by_every_other_discrete_hyperparameter(trials):
    extra = trials.assign(momentum=[0.5, 0.9] * 5)
    pivots = slices.pivots(extra, Spec(searched=("lr", "momentum")))
    assert [p.title for p in pivots] == ["adam, momentum=0.5", "adam, momentum=0.9",
                                         "sgd, momentum=0.5", "sgd, momentum=0.9"]
    assert all(p.over == "seeds" for p in pivots)
    continuous = slices.pivots(extra, Spec(continuous={"momentum": False}))
    assert [p.title for p in continuous] == ["adam", "sgd"]
    assert continuous[0].over == "seeds, momentum"  # averaged over, and it says so


def test_failures_group_by_configuration_state_and_reason(trials):
    table = tables.failures(trials)
    assert table[["state", "reason", "count"]].values.tolist() == [
        ["FAIL", "diverged: train loss is nan", 2], ["PRUNED", "pruned", 1]]
    assert table.iloc[0]["runs"] == "d0, d1"
    assert not table["ranked"].any()


def test_a_configuration_that_always_diverges_is_only_in_failures(tmp_path, trials):
    partly = pd.DataFrame([trial("s3", "sgd", 0.1, 64, 3, None, "FAIL",
                                 "diverged: train loss is inf at epoch 1")])
    write_tables(tmp_path, pd.concat([trials, partly], ignore_index=True), True, "demo")
    board = pd.read_csv(tmp_path / "tables" / "leaderboard.csv")
    failures = pd.read_csv(tmp_path / "tables" / "failures.csv")
    assert 1.0 not in board["lr"].tolist()  # lr 1.0 diverged on every seed
    assert failures.query("lr == 1.0")[["count", "ranked"]].values.tolist() == [[2, False]]
    sgd = board.query("optimizer == 'sgd' and lr == 0.1 and batch_size == 64").iloc[0]
    assert sgd["n"] == 3 and sgd["n_failed"] == 1
    text = (tmp_path / "summary.md").read_text()
    table_end = text.index("\n\n", text.index("| rank"))
    notes = text[table_end:text.index("## Best per optimizer")]
    assert ("rank 2, optimizer=sgd, lr=0.1, batch_size=64: 1 of 4 seeds failed "
            "(diverged: train loss is inf); ranked on the 3 that completed") in notes
    assert "not ranked, optimizer=sgd, lr=1, batch_size=64: 2 of 2 seeds failed" in notes


def test_write_tables_replaces_tables_of_earlier_versions(tmp_path, trials):
    (tmp_path / "tables").mkdir()
    for stale in ("seeds.csv", "pivot_rmsprop.csv", "importance.csv"):
        (tmp_path / "tables" / stale).write_text("x\n1\n")
    write_tables(tmp_path, trials, True, "demo")
    names = {p.name for p in (tmp_path / "tables").iterdir()}
    assert names == {"leaderboard.csv", "by_optimizer.csv", "marginals.csv", "failures.csv",
                     "pivot_adam.csv", "pivot_sgd.csv", "importance.csv"}
    pivot = pd.read_csv(tmp_path / "tables" / "pivot_sgd.csv", dtype=str)
    assert pivot.columns.tolist() == ["lr", "64", "256", "averaged_over"]
    assert pivot["64"].tolist() == ["0.8200", "failed"]


def test_summary_markdown_answers_first(trials):
    text = summary.markdown(summary.build(trials, Spec()), "demo")
    assert text.startswith("# demo\n\n10 trials: 7 COMPLETE, 2 FAIL, 1 PRUNED")
    assert "Leader: optimizer=adam, lr=0.01, batch_size=64: val_acc 0.9200 (95% CI" in text
    for heading in ("## Leaderboard", "## Failed and pruned", "## sgd: val_acc by lr",
                    "## By hyperparameter value"):
        assert heading in text
    assert "Welch's t-test against rank 1" in text and "Holm-adjusted over the 1 row" in text
    assert "Selected on the test set" not in text


def test_selection_on_the_test_set_is_said_first(trials):
    text = summary.markdown(summary.build(trials, Spec(metric="test_acc")), "demo")
    assert text.splitlines()[2].startswith("> **Selected on the test set: objective.metric "
                                           "is test_acc")
    loss = summary.build(trials, Spec(maximize=False, metric="test_loss"))
    assert "Selected on the test set" in summary.text(loss, "d")


def test_one_seed_has_no_spread_and_the_summary_says_so(trials):
    one_seed = trials[trials["seed"] == 0]
    board = tables.leaderboard(one_seed)
    assert (board["n"] == 1).all() and board["std"].isna().all()
    answer = summary.markdown(summary.build(one_seed, Spec()), "demo").splitlines()[4]
    assert answer.startswith("Leader: optimizer=adam, lr=0.01, batch_size=64")
    assert "one seed: no interval, and no verdict" in answer and "nan" not in answer


def test_results_of_earlier_versions_show_their_best_test_acc(trials):
    old = trials.drop(columns="test_acc").assign(best_test_acc=trials["test_acc"])
    board = tables.leaderboard(old, Spec(metric="test_acc"))
    assert "best_test_acc_mean" in board.columns and "test_acc_mean" not in board.columns
    assert "best_test_acc" in tables.top_trials(old).columns
    assert "test_acc" in tables.top_trials(trials).columns
    assert "## Leaderboard" in summary.markdown(summary.build(old, Spec(metric="test_acc")), "old")


def test_specs_are_read_from_config_yaml():
    config = {"objective": {"metric": "val_loss", "direction": "minimize"},
              "search": {"space": {"lr": {"low": 1e-4, "high": 0.1, "log": True},
                                   "momentum": {"low": 0.5, "high": 0.99},
                                   "optimizer": ["sgd", "adam"]}}}
    spec = Spec.from_config(config)
    assert spec == Spec(False, "val_loss", ("lr", "momentum", "optimizer"),
                        {"lr": True, "momentum": False})
    assert Spec.from_config({}).metric == "test_acc"  # what earlier versions selected on


def many(n, failed=(), maximize=True):
    """n trials with distinct values; those in `failed` FAIL."""
    rng = np.random.default_rng(n)
    return pd.DataFrame([trial(f"{i:04d}", "sgd", 0.001 * (i + 1), 64, 0, v,
                               "FAIL" if i in failed else "COMPLETE")
                         for i, v in enumerate(rng.permutation(n) / n)])


def test_up_to_20_trials_every_curve_is_drawn():
    assert tables.curve_split(many(20), True, "val_acc") is None


@pytest.mark.parametrize("maximize", [True, False])
def test_past_20_trials_the_top_10_by_the_objective_are_drawn_failed_last(maximize):
    trials = many(30, failed={3, 4})
    split = tables.curve_split(trials, maximize, "val_acc")
    complete = trials[trials.state == "COMPLETE"].sort_values("value", ascending=not maximize)
    assert split.top["run"].tolist() == complete["run"].head(10).tolist()
    assert sorted(split.others["run"]) == sorted(set(trials.run) - set(split.top.run))
    assert split.note() == ("top 10 of 30 trials by val_acc; the band is the other 20: "
                            "median and quartiles per epoch")
    few_complete = tables.curve_split(many(30, failed=set(range(25))), maximize, "val_acc")
    assert few_complete.top["state"].tolist() == ["COMPLETE"] * 5 + ["FAIL"] * 5


def test_the_band_is_numpys_quartiles_per_epoch_without_diverged_values():
    rng = np.random.default_rng(0)
    history = pd.DataFrame([{"run": f"r{i}", "epoch": e, "val_acc": rng.uniform()}
                            for i in range(12) for e in (1, 2, 3) if i < 9 or e < 3])
    history.loc[history.run == "r0", "val_acc"] = [np.inf, np.nan, 0.5]  # diverged
    others = pd.DataFrame({"run": [f"r{i}" for i in range(11)]})  # r11: a top trial
    band = tables.band(history, others, "val_acc").set_index("epoch")
    mine = history[history.run.isin(others.run) & np.isfinite(history.val_acc)]
    for epoch, rows in mine.groupby("epoch"):
        q1, median, q3 = np.quantile(rows.val_acc, [0.25, 0.5, 0.75])
        assert band.loc[epoch, ["q1", "median", "q3"]].tolist() == pytest.approx(
            [q1, median, q3])
    assert band["n"].tolist() == [10, 10, 9]


def test_compared_sweeps_have_a_band_each():
    trials = pd.concat([many(15).assign(sweep="a"), many(15).assign(sweep="b")])
    history = trials[["sweep", "run"]].assign(epoch=1, val_acc=trials["value"])
    split = tables.curve_split(trials, True, "val_acc")
    assert sorted(split.sweeps) == ["a", "b"]
    band = tables.band(history, split.others, "val_acc")
    for sweep, rows in split.others.groupby("sweep"):
        assert band.loc[band.sweep == sweep, "median"].item() == pytest.approx(
            rows["value"].median())
    counts = split.others.groupby("sweep").size()
    assert ", ".join(f"{s}: {counts[s]}" for s in split.sweeps) in split.note()


def test_a_configuration_and_seed_trained_again_counts_once():
    # What an Optuna search of earlier versions left: trials 0, 1, 3 and 5 are the same
    # point (sgd lr 0.1, seed 0) with the same numbers, trials 2 and 4 the other one.
    rows = [trial(f"{i:04d}-sgd", "sgd", lr, 64, 0, value) | {"trial": i}
            for i, (lr, value) in enumerate([(0.1, 0.185), (0.1, 0.185), (0.01, 0.1),
                                             (0.1, 0.185), (0.01, 0.1), (0.1, 0.185)])]
    c = summary.build(pd.DataFrame(rows), Spec())
    assert c.repeats == 4  # three of one point, one of the other
    assert c.board["n"].tolist() == [1, 1]
    assert c.board["std"].isna().all() and c.board["p_vs_leader"].isna().all()
    assert "4 repeated runs of a (configuration, seed) set aside" in summary.markdown(c, "t")
    top = tables.top_trials(pd.DataFrame(rows), 5)
    assert top["run"].tolist() == ["0000-sgd", "0002-sgd"]


def test_seeds_that_agree_have_no_spread_at_all():
    rows = [trial(f"a{s}", "adam", 0.01, 64, s, 0.1) for s in range(3)]  # np.std: 1.7e-17
    board = tables.leaderboard(pd.DataFrame(rows))
    assert board.loc[0, "std"] == 0.0
    assert board.loc[0, "ci95_low"] == board.loc[0, "ci95_high"] == 0.1


def test_the_top_trials_show_best_epoch_as_a_whole_number_beside_failed_rows(trials):
    trials.loc[trials.state != "COMPLETE", "best_epoch"] = math.nan  # as trials.csv has it
    top = tables.top_trials(trials, 10)
    assert str(top["best_epoch"].dtype) == "Int64"
    assert "2.0" not in top.to_string() and top["best_epoch"].isna().sum() == 3
