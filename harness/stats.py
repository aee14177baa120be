"""The statistics that give each configuration of a sweep its verdict against the leader,
for the comparison tables and for a racing search alike: Welch's t-test (two-sided, and
one-sided for "worse"), Holm's correction for testing many rows against one, Welch's TOST
for "equivalent within a margin", the seeds a t-test would need to decide, and Student's t
intervals kept inside a metric's range. Pure numpy and scipy.special."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import nctdtr, stdtr, stdtrit  # scipy.stats costs 1 s to import

ALPHA = 0.05  # significance level of every test against the leader
POWER = 0.8  # the chance of telling a real difference apart that seeds_to_decide asks for
MAX_SEEDS = 1_000_000  # seeds_to_decide stops here: "a million or more" is not a plan

LEADER, WORSE, EQUIVALENT, UNDETERMINED = "leader", "worse", "equivalent", "undetermined"
VERDICTS = (LEADER, WORSE, EQUIVALENT, UNDETERMINED)


@dataclass(frozen=True)
class RowVerdict:
    """One configuration against the leader; NaN where a test was not run."""
    p_vs_leader: float  # Welch's two-sided p-value
    p_holm: float  # p_vs_leader, Holm-adjusted over all rows tested
    p_tost: float  # Welch's TOST within the margin; NaN without one
    verdict: str  # one of VERDICTS
    seeds_to_decide: int | None  # per configuration, for an undetermined row only


def metric_range(metric: str) -> tuple[float, float]:
    """Where a metric's values can lie: accuracies in [0, 1], losses in [0, inf)."""
    if metric.endswith("_acc"):
        return 0.0, 1.0
    if metric.endswith("_loss"):
        return 0.0, math.inf
    return -math.inf, math.inf


def mean(values: np.ndarray) -> float:
    """The mean, exactly the value when all are equal: np.mean of three 0.1s is off by an
    ulp, and two such means of different lengths would differ with no spread to hide it."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan
    return float(values[0]) if np.all(values == values[0]) else float(np.mean(values))


def _var(values: np.ndarray) -> float:
    """The sample variance (ddof=1): exactly 0 when all values are equal (np.var's mean
    is off by an ulp, leaving 1e-34), NaN for fewer than 2."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan
    return 0.0 if np.all(values == values[0]) else float(np.var(values, ddof=1))


def std(values: np.ndarray) -> float:
    """The sample standard deviation (ddof=1): exactly 0.0 when all values are equal, so a
    table never shows 1.7e-17 for seeds that agree; NaN for fewer than 2 values."""
    return math.sqrt(_var(values))


def _welch_parts(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """mean(a) - mean(b), its standard error and the Welch–Satterthwaite degrees of
    freedom; no spread on either side gives se 0 and df inf (the normal limit)."""
    va, vb = _var(a) / len(a), _var(b) / len(b)
    se = math.sqrt(va + vb)
    diff = mean(a) - mean(b)
    if se == 0:
        return diff, 0.0, math.inf
    return diff, se, (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Welch's unequal-variance t statistic of mean(a) - mean(b) and its two-sided
    p-value; identical samples give (0, 1), samples with no spread and different means
    (inf, 0)."""
    diff, se, df = _welch_parts(a, b)
    if se == 0:
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    t = diff / se
    return t, float(2 * stdtr(df, -abs(t)))


def welch_worse(a: np.ndarray, leader: np.ndarray, maximize: bool) -> float:
    """Welch's one-sided p-value that `a` is worse than `leader` (a lower mean when
    maximizing, a higher one when minimizing). With no spread on either side: 0 when it
    is worse, 1 when better, 0.5 when the means are equal (t = 0, neither way)."""
    diff, se, df = _welch_parts(a, leader)
    gap = diff if maximize else -diff  # below 0: a is worse
    if se == 0:
        return 0.0 if gap < 0 else 1.0 if gap > 0 else 0.5
    return float(stdtr(df, gap / se))


def tost(a: np.ndarray, b: np.ndarray, margin: float | None) -> float:
    """Welch's two one-sided tests (TOST) that |mean(a) - mean(b)| < margin: the larger
    of the two p-values. No spread on either side: 0 when the difference is inside the
    margin, else 1. No margin (None or <= 0) shows no equivalence: NaN."""
    if margin is None or not margin > 0:
        return math.nan
    diff, se, df = _welch_parts(a, b)
    if se == 0:
        return 0.0 if abs(diff) < margin else 1.0
    above_low = stdtr(df, -(diff + margin) / se)  # H0: diff <= -margin
    below_high = stdtr(df, (diff - margin) / se)  # H0: diff >= margin
    return float(max(above_low, below_high))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the order given: the k-th smallest of m is
    multiplied by m - k + 1, kept from falling below the one before, and capped at 1."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    factors = len(p) - np.arange(len(p))
    adjusted = np.minimum(1.0, np.maximum.accumulate(factors * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


def t_interval(values: np.ndarray, bounds: tuple[float, float]) -> tuple[float, float]:
    """The 95% Student's t interval of the mean, clipped to `bounds` (an accuracy's
    interval never leaves [0, 1]). One value has no interval: (NaN, NaN); equal values
    have a zero-width one: (v, v)."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    middle = mean(values)
    half = float(stdtrit(n - 1, 0.975) * std(values) / math.sqrt(n))
    return max(middle - half, bounds[0]), min(middle + half, bounds[1])


def _power(n: int, d: float, alpha: float) -> float:
    """The power of a two-sided two-sample t-test with n per group at effect size d, as
    statsmodels' ttest_power computes it: P(T > crit) + P(T < -crit) for the noncentral
    T with df 2n - 2 and noncentrality d * sqrt(n / 2)."""
    df, nc = 2 * n - 2, d * math.sqrt(n / 2)
    crit = float(stdtrit(df, 1 - alpha / 2))
    return float(1 - nctdtr(df, nc, crit) + nctdtr(df, nc, -crit))


def seeds_to_decide(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA,
                    power: float = POWER) -> int | None:
    """About how many seeds per configuration a two-sided two-sample t-test would need to
    tell apart a difference of the observed size (Cohen's d over the pooled std) with the
    given power: what it costs to turn "undetermined" into an answer. None when there is
    no difference or fewer than 2 values a side; 2 when the pooled std is 0 (the fewest a
    t-test can use); MAX_SEEDS when even that many would not do."""
    if len(a) < 2 or len(b) < 2:
        return None
    diff = abs(mean(a) - mean(b))
    if diff == 0:
        return None
    pooled = math.sqrt(((len(a) - 1) * _var(a) + (len(b) - 1) * _var(b))
                       / (len(a) + len(b) - 2))
    if pooled == 0:
        return 2
    return _smallest_n(lambda n: _power(n, diff / pooled, alpha) >= power)


def _smallest_n(enough: Callable[[int], bool]) -> int:
    """The smallest n in [2, MAX_SEEDS] that is `enough` (monotone in n), by doubling then
    bisection on integers; MAX_SEEDS when none is."""
    low, high = 1, 2  # low is not enough (a t-test needs 2), high is tried
    while not enough(high):
        if high >= MAX_SEEDS:
            return MAX_SEEDS
        low, high = high, min(2 * high, MAX_SEEDS)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def verdicts(values: Sequence[np.ndarray], maximize: bool, alpha: float = ALPHA,
             margin: float | None = None) -> list[RowVerdict]:
    """Each configuration's verdict against the leader. `values`: each configuration's
    COMPLETE seeds' objective values, best mean first (index 0 is the leader). A row is
    tested when it and the leader have 2+ values: `worse` when Welch's p, Holm-adjusted
    over all rows tested, is below alpha; `equivalent` when TOST shows it within `margin`
    (even if also worse: the difference is real but smaller than what matters);
    otherwise `undetermined`, with the seeds that would decide. Untested rows are
    `undetermined` with no seed count: too few seeds to say anything. A row whose mean
    beats the leader's (`maximize` says which way) is a ValueError: the order is wrong."""
    if not values:
        return []
    _check_leader(values, maximize)
    leader = values[0]
    tested = [i for i in range(1, len(values)) if len(values[i]) >= 2 and len(leader) >= 2]
    p = {i: welch(values[i], leader)[1] for i in tested}
    adjusted = dict(zip(tested, holm([p[i] for i in tested]).tolist(), strict=True))
    rows = [RowVerdict(math.nan, math.nan, math.nan, LEADER, None)]
    for i in range(1, len(values)):
        if i not in p:
            rows.append(RowVerdict(math.nan, math.nan, math.nan, UNDETERMINED, None))
            continue
        p_tost = tost(values[i], leader, margin)
        if p_tost < alpha:
            verdict, seeds = EQUIVALENT, None
        elif adjusted[i] < alpha:
            verdict, seeds = WORSE, None
        else:
            verdict, seeds = UNDETERMINED, seeds_to_decide(values[i], leader, alpha)
        rows.append(RowVerdict(p[i], adjusted[i], p_tost, verdict, seeds))
    return rows


def _check_leader(values: Sequence[np.ndarray], maximize: bool) -> None:
    """Raise when a row's mean beats the leader's beyond rounding: two-sided tests would
    call a better row `worse`. Ties, and an ulp from another way of taking the mean, pass."""
    best = mean(values[0])
    for i, row in enumerate(values[1:], start=1):
        own = mean(row)
        if (own > best if maximize else own < best) and not math.isclose(own, best):
            raise ValueError(f"values[{i}] has mean {own!r}, better than the leader's "
                             f"{best!r}: sort the configurations best mean first")


def race_out(a: np.ndarray, leader: np.ndarray, maximize: bool, alpha: float = ALPHA,
             margin: float | None = None) -> bool:
    """Whether a racing search can stop giving `a` seeds: one-sided Welch calls it worse
    than the leader at alpha, or TOST shows it equivalent within `margin`. Each race is
    its own decision, not Holm-corrected: with 35 rivals at 2 seeds a correction would
    race out almost none. Needs 2+ values on both sides."""
    if len(a) < 2 or len(leader) < 2:
        return False
    return welch_worse(a, leader, maximize) < alpha or tost(a, leader, margin) < alpha
