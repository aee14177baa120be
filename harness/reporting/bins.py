"""Readable labels for hyperparameter values and bins for continuous ones, as the
comparison tables show them (the statistics are harness/stats.py's)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

LOG_STEPS = ((1.0, 3.0), (1.0, 2.0, 5.0), (1.0,))  # edges per decade: usual, finer, coarser
MIN_BINS, MAX_BINS = 3, 8


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
