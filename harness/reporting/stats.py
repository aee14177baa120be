"""The statistics behind the comparison tables, as the field does them: Welch's t-test,
Holm's correction for testing many rows against one, Student's t intervals kept inside
a metric's range, and readable bins for continuous hyperparameters. Pure numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import stdtr, stdtrit  # Student's t; scipy.stats costs 1 s to import

ALPHA = 0.05  # significance level of every test against the leader
LOG_STEPS = ((1.0, 3.0), (1.0, 2.0, 5.0), (1.0,))  # edges per decade: usual, finer, coarser
MIN_BINS, MAX_BINS = 3, 8


def metric_range(metric: str) -> tuple[float, float]:
    """Where a metric's values can lie: accuracies in [0, 1], losses in [0, inf)."""
    if metric.endswith("_acc"):
        return 0.0, 1.0
    if metric.endswith("_loss"):
        return 0.0, math.inf
    return -math.inf, math.inf


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Welch's unequal-variance t statistic of mean(a) - mean(b) and its two-sided
    p-value; identical samples give (0, 1)."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    diff = float(np.mean(a) - np.mean(b))
    if se == 0:
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = diff / se
    return t, float(2 * stdtr(df, -abs(t)))


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
    interval never leaves [0, 1]). One value has no interval: (NaN, NaN)."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = float(np.mean(values))
    half = float(stdtrit(n - 1, 0.975) * np.std(values, ddof=1) / math.sqrt(n))
    return max(mean - half, bounds[0]), min(mean + half, bounds[1])


def labels(values: Sequence[object]) -> dict[object, str]:
    """A short label per distinct value, no two alike: '%g' unless that merges two
    values (0.00131 and 0.001312), then the shortest exact form."""
    distinct = list(dict.fromkeys(values))
    short = {v: f"{v:g}" if isinstance(v, float) else str(v) for v in distinct}
    if len(set(short.values())) < len(short):
        short = {v: repr(v) if isinstance(v, float) else str(v) for v in distinct}
    return short


def bins(values: pd.Series, log: bool) -> pd.Series:
    """Each value's bin as an ordered categorical labelled '[0.001, 0.003)' (the last
    bin closed) with readable edges: 1-3-10 per decade on a log scale (1-2-5 when that
    gives too few bins, powers of ten when too many), 1-2-5 steps on a linear one.
    Values <= 0 on a log scale, and a lone value, keep their own label; NaN stays NaN."""
    numbers = values.astype(float)
    binned = (numbers > 0) if log else numbers.notna()
    edges = _edges(numbers[binned], log)
    if len(edges) < 2:
        binned[:] = False
    text = _distinct_texts(edges)
    names = [f"[{lo}, {hi})" for lo, hi in zip(text[:-1], text[1:], strict=False)]
    names[-1:] = [f"{name[:-1]}]" for name in names[-1:]]
    label = pd.Series(None, index=values.index, dtype=object)
    if binned.any():
        at = np.searchsorted(edges, numbers[binned], side="right") - 1
        label[binned] = np.array(names, dtype=object)[np.clip(at, 0, len(names) - 1)]
    rest = numbers[~binned & numbers.notna()]
    own = labels(sorted(rest.unique()))
    label[rest.index] = rest.map(own)
    present = set(label.dropna())
    categories = [c for c in [*own.values(), *names] if c in present]
    return pd.Series(pd.Categorical(label, categories=categories, ordered=True),
                     index=values.index)


def _distinct_texts(edges: np.ndarray) -> list[str]:
    """The edges as text, with as few significant digits (6 or more) as keep them apart:
    edges of a narrow range (1000.001 to 1000.0045) differ only in their 7th digit."""
    for digits in range(6, 18):
        text = [f"{edge:.{digits}g}" for edge in edges]
        if len(set(text)) == len(text):
            return text
    return [repr(float(edge)) for edge in edges]


def _edges(numbers: pd.Series, log: bool) -> np.ndarray:
    if numbers.empty or numbers.min() == numbers.max():
        return np.array([])
    low, high = float(numbers.min()), float(numbers.max())
    if not log:
        return _linear_edges(low, high)
    coarse, fine, decades = (_log_edges(low, high, steps) for steps in LOG_STEPS)
    if len(coarse) - 1 < MIN_BINS:
        return fine
    return coarse if len(coarse) - 1 <= MAX_BINS else decades


def _log_edges(low: float, high: float, steps: tuple[float, ...]) -> np.ndarray:
    """The edges s * 10^k from the last one <= low to the first one >= high."""
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    candidates = np.unique([float(f"{s * 10.0**k:.12g}") for k in decades for s in steps])
    start = np.searchsorted(candidates, low, side="right") - 1
    stop = np.searchsorted(candidates, high, side="left")
    return candidates[start:stop + 1]


def _linear_edges(low: float, high: float) -> np.ndarray:
    """Edges every 1, 2 or 5 times a power of ten, about five bins."""
    raw = (high - low) / 5
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step)
    count = math.ceil(high / step) - first
    return np.array([float(f"{(first + i) * step:.12g}") for i in range(count + 1)])
