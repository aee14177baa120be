"""harness/stats.py against the libraries that own each statistic (scipy.stats,
statsmodels), computed here, and the verdict rules on hand-made sweeps."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import ttost_ind

from harness import stats
from harness.stats import EQUIVALENT, LEADER, UNDETERMINED, WORSE

SEEDS = range(12)


def close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-14)


def samples(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two samples of 2..10 values with different means and spreads."""
    rng = np.random.default_rng(seed)
    a = rng.normal(rng.normal(), rng.uniform(0.01, 2.0), rng.integers(2, 11))
    b = rng.normal(rng.normal(), rng.uniform(0.01, 2.0), rng.integers(2, 11))
    return a, b


def solve_n(a: np.ndarray, b: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> int:
    """statsmodels' seeds per group for Cohen's d (pooled sample std) of a and b."""
    pooled = math.sqrt(((len(a) - 1) * np.var(a, ddof=1) + (len(b) - 1) * np.var(b, ddof=1))
                       / (len(a) + len(b) - 2))
    d = abs(np.mean(a) - np.mean(b)) / pooled
    return math.ceil(TTestIndPower().solve_power(effect_size=d, alpha=alpha, power=power,
                                                 ratio=1, alternative="two-sided"))


def power(n: int, d: float) -> float:
    return TTestIndPower().power(effect_size=d, nobs1=n, alpha=0.05, ratio=1)


# -- the tests themselves, against scipy and statsmodels

@pytest.mark.parametrize("seed", SEEDS)
def test_welch_is_scipys_two_sided_welch(seed):
    a, b = samples(seed)
    expected = scipy_stats.ttest_ind(a, b, equal_var=False)
    t, p = stats.welch(a, b)
    assert close(t, expected.statistic) and close(p, expected.pvalue)


@pytest.mark.parametrize("seed", SEEDS)
def test_welch_worse_is_scipys_one_sided_welch(seed):
    a, b = samples(seed)
    less = scipy_stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue
    greater = scipy_stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    assert close(stats.welch_worse(a, b, maximize=True), less)
    assert close(stats.welch_worse(a, b, maximize=False), greater)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("margin", [0.05, 0.5, 2.0])
def test_tost_is_statsmodels_welch_tost(seed, margin):
    a, b = samples(seed)
    expected = ttost_ind(a, b, -margin, margin, usevar="unequal")[0]
    assert close(stats.tost(a, b, margin), expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_holm_is_statsmodels_holm(seed):
    p = np.random.default_rng(seed).uniform(0, 0.2, seed + 1)
    expected = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(stats.holm(p), expected, rtol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_t_interval_is_scipys_t_interval_clipped(seed):
    values = samples(seed)[0]
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                       scale=scipy_stats.sem(values))
    assert np.allclose(stats.t_interval(values, (-math.inf, math.inf)), (low, high))
    bounds = (low + (high - low) / 4, high - (high - low) / 4)
    assert stats.t_interval(values, bounds) == bounds


@pytest.mark.parametrize("d", [0.2, 0.5, 0.8, 1.2, 2.0, 3.0])
def test_seeds_to_decide_is_statsmodels_solve_power(d):
    a = np.array([-1.0, 1.0, -1.0, 1.0]) * math.sqrt(3) / 2  # sample std 1
    b = a + d
    assert stats.seeds_to_decide(b, a) == solve_n(b, a)
    n = stats.seeds_to_decide(b, a)
    assert power(n, d) >= 0.8 and (n == 2 or power(n - 1, d) < 0.8)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("alpha", "target"), [(0.05, 0.8), (0.01, 0.9)])
def test_seeds_to_decide_on_random_samples(seed, alpha, target):
    rng = np.random.default_rng(seed)
    a, b = samples(seed + 100)
    a, b = ((x - np.mean(x)) / np.std(x, ddof=1) for x in (a, b))
    a, b = a * rng.uniform(0.5, 2.0), b * rng.uniform(0.5, 2.0)  # unequal spreads
    pooled = math.sqrt(((len(a) - 1) * np.var(a, ddof=1) + (len(b) - 1) * np.var(b, ddof=1))
                       / (len(a) + len(b) - 2))
    b = b + rng.uniform(0.2, 2.5) * pooled  # Cohen's d from 0.2 to 2.5
    assert stats.seeds_to_decide(a, b, alpha, target) == solve_n(a, b, alpha, target)


# -- edge cases

@pytest.mark.parametrize("value", [0.1, 0.3, 0.9871, 1e-7, 123.456])
@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_equal_values_have_exactly_zero_spread(value, n):
    values = np.full(n, value)
    assert stats.std(values) == 0.0
    assert stats.t_interval(values, (0.0, math.inf)) == (value, value)


def test_std_is_the_sample_std_and_nan_below_two_values():
    values = np.array([0.1, 0.4, 0.35])
    assert stats.std(values) == pytest.approx(np.std(values, ddof=1), rel=1e-15)
    assert math.isnan(stats.std(np.array([0.5])))
    assert math.isnan(stats.std(np.array([])))
    assert all(math.isnan(x) for x in stats.t_interval(np.array([0.5]), (0.0, 1.0)))


def test_metric_range():
    assert stats.metric_range("val_acc") == (0.0, 1.0)
    assert stats.metric_range("test_loss") == (0.0, math.inf)
    assert stats.metric_range("value") == (-math.inf, math.inf)


def test_no_spread_on_either_side():
    same, low, high = np.full(3, 0.1), np.full(3, 0.05), np.full(4, 0.2)
    assert stats.welch(same, np.full(4, 0.1)) == (0.0, 1.0)  # means an ulp apart in numpy
    assert stats.welch(low, high) == (-math.inf, 0.0)
    assert stats.welch_worse(low, high, maximize=True) == 0.0
    assert stats.welch_worse(low, high, maximize=False) == 1.0
    assert stats.welch_worse(high, low, maximize=False) == 0.0
    assert stats.welch_worse(same, np.full(4, 0.1), maximize=True) == 0.5
    assert stats.tost(same, np.full(4, 0.1), 0.01) == 0.0
    assert stats.tost(low, same, 0.06) == 0.0
    assert stats.tost(low, same, 0.04) == 1.0
    assert stats.seeds_to_decide(low, high) == 2
    assert stats.seeds_to_decide(same, np.full(4, 0.1)) is None


@pytest.mark.parametrize("margin", [None, 0.0, -0.1])
def test_tost_without_a_margin_is_nan(margin):
    assert math.isnan(stats.tost(np.array([0.1, 0.2]), np.array([0.1, 0.2]), margin))


def test_seeds_to_decide_needs_two_values_and_a_difference():
    assert stats.seeds_to_decide(np.array([0.5]), np.array([0.1, 0.2])) is None
    assert stats.seeds_to_decide(np.array([0.1, 0.2]), np.array([0.5])) is None
    assert stats.seeds_to_decide(np.array([0.1, 0.3]), np.array([0.3, 0.1])) is None


def test_seeds_to_decide_stops_at_max_seeds():
    a = np.array([-1.0, 1.0])
    assert stats.seeds_to_decide(a, a + 1e-4) == stats.MAX_SEEDS
    assert stats.seeds_to_decide(a, a + 0.01) < stats.MAX_SEEDS


def test_imports_neither_scipy_stats_nor_statsmodels_nor_harness():
    code = ("import sys, harness.stats; print(sorted(m for m in sys.modules if m.startswith("
            "('scipy.stats', 'statsmodels', 'pandas', 'harness.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['harness.stats']"


# -- verdicts

LEAD = np.array([0.990, 0.991, 0.989, 0.990])


def test_a_clearly_worse_row_is_worse_and_the_leader_is_the_leader():
    rows = stats.verdicts([LEAD, np.array([0.90, 0.91, 0.905])], maximize=True)
    assert rows[0].verdict == LEADER and rows[0].seeds_to_decide is None
    assert all(math.isnan(p) for p in (rows[0].p_vs_leader, rows[0].p_holm, rows[0].p_tost))
    assert rows[1].verdict == WORSE and rows[1].seeds_to_decide is None
    assert math.isnan(rows[1].p_tost)


def test_p_holm_is_holm_over_every_row_tested():
    rows_in = [LEAD, np.array([0.985, 0.99, 0.98]), np.array([0.5]),
               np.array([0.97, 0.99, 0.96]), np.array([0.95, 0.97])]
    rows = stats.verdicts(rows_in, maximize=True)
    p = [scipy_stats.ttest_ind(rows_in[i], LEAD, equal_var=False).pvalue for i in (1, 3, 4)]
    assert np.allclose([rows[i].p_vs_leader for i in (1, 3, 4)], p)
    assert np.allclose([rows[i].p_holm for i in (1, 3, 4)], multipletests(p, method="holm")[1])
    assert math.isnan(rows[2].p_vs_leader) and math.isnan(rows[2].p_holm)


def test_worse_needs_the_holm_adjusted_p_below_alpha():
    rows_in = [LEAD, np.array([0.985, 0.989, 0.983, 0.987]),
               np.array([0.985, 0.988, 0.983, 0.987]), np.array([0.984, 0.988, 0.983, 0.986])]
    rows = stats.verdicts(rows_in, maximize=True)
    assert all(r.p_vs_leader < 0.05 <= r.p_holm for r in rows[1:])
    assert [r.verdict for r in rows[1:]] == [UNDETERMINED] * 3
    assert [r.verdict for r in stats.verdicts(rows_in[:2], maximize=True)] == [LEADER, WORSE]


def test_an_equivalent_row_needs_a_margin():
    row = np.array([0.9893, 0.9903, 0.9896, 0.9900])
    with_margin = stats.verdicts([LEAD, row], maximize=True, margin=0.005)[1]
    assert with_margin.verdict == EQUIVALENT and with_margin.seeds_to_decide is None
    assert with_margin.p_tost == pytest.approx(
        ttost_ind(row, LEAD, -0.005, 0.005, usevar="unequal")[0])
    without = stats.verdicts([LEAD, row], maximize=True)[1]
    assert without.verdict == UNDETERMINED and math.isnan(without.p_tost)
    assert without.seeds_to_decide == solve_n(row, LEAD)


def test_a_row_worse_but_within_the_margin_is_equivalent():
    row = LEAD - 0.004
    row = row + np.array([0.0, 0.0002, -0.0002, 0.0001])
    result = stats.verdicts([LEAD, row], maximize=True, margin=0.01)[1]
    assert result.p_holm < 0.05 and result.p_tost < 0.05  # both tests pass
    assert result.verdict == EQUIVALENT
    assert stats.verdicts([LEAD, row], maximize=True)[1].verdict == WORSE


def test_an_undetermined_row_says_how_many_seeds_would_decide():
    row = np.array([0.985, 0.992, 0.978, 0.99])
    result = stats.verdicts([LEAD, row], maximize=True, margin=0.001)[1]
    assert result.p_holm >= 0.05 and result.p_tost >= 0.05
    assert result.verdict == UNDETERMINED
    assert result.seeds_to_decide == solve_n(row, LEAD) > 4


def test_rows_with_one_seed_are_not_tested():
    rows = stats.verdicts([LEAD, np.array([0.5]), np.array([0.90, 0.91])], maximize=True)
    assert rows[1].verdict == UNDETERMINED and rows[1].seeds_to_decide is None
    assert all(math.isnan(p) for p in (rows[1].p_vs_leader, rows[1].p_holm, rows[1].p_tost))
    assert rows[2].verdict == WORSE
    alone = stats.verdicts([np.array([0.99]), np.array([0.5, 0.51]), LEAD - 0.5],
                           maximize=True, margin=1.0)
    assert [r.verdict for r in alone] == [LEADER, UNDETERMINED, UNDETERMINED]
    assert all(math.isnan(r.p_vs_leader) and r.seeds_to_decide is None for r in alone)


def test_minimize_ranks_the_lowest_mean_first():
    lead = np.array([0.030, 0.031, 0.029])
    rows = stats.verdicts([lead, np.array([0.2, 0.21, 0.19])], maximize=False)
    assert [r.verdict for r in rows] == [LEADER, WORSE]
    with pytest.raises(ValueError, match=r"values\[1\]"):
        stats.verdicts([lead, np.array([0.01, 0.011])], maximize=False)
    with pytest.raises(ValueError, match="best mean first"):
        stats.verdicts([lead, np.array([0.2, 0.21])], maximize=True)


def test_ties_and_rounding_are_not_out_of_order():
    lead = np.full(3, 0.1)  # np.mean puts this an ulp above 0.1
    rows = stats.verdicts([lead, np.full(4, 0.1), np.array([0.1, 0.1 + 1e-17, 0.1])],
                          maximize=True, margin=0.01)
    assert [r.verdict for r in rows] == [LEADER, EQUIVALENT, EQUIVALENT]
    assert stats.verdicts([], maximize=True) == []


# -- racing

def test_race_out_when_one_sided_welch_calls_it_worse_without_holm():
    row = np.array([0.986, 0.99, 0.984, 0.987])
    one_sided = scipy_stats.ttest_ind(row, LEAD, equal_var=False, alternative="less").pvalue
    assert 0.025 < one_sided < 0.05  # two-sided it would not be worse
    assert stats.race_out(row, LEAD, maximize=True)
    assert stats.verdicts([LEAD, row], maximize=True)[1].verdict == UNDETERMINED
    assert not stats.race_out(row, LEAD, maximize=True, alpha=0.025)
    assert not stats.race_out(row, LEAD, maximize=False)  # lower loss is better


def test_race_out_when_equivalent_within_the_margin():
    row = np.array([0.9893, 0.9903, 0.9896, 0.9900])
    assert stats.race_out(row, LEAD, maximize=True, margin=0.005)
    assert not stats.race_out(row, LEAD, maximize=True)
    assert not stats.race_out(row, LEAD, maximize=True, margin=0.0001)


def test_race_out_needs_two_values_a_side():
    assert not stats.race_out(np.array([0.1]), LEAD, maximize=True, margin=1.0)
    assert not stats.race_out(LEAD - 0.5, np.array([0.99]), maximize=True, margin=1.0)
    assert stats.race_out(LEAD - 0.5, LEAD, maximize=True)
