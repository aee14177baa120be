"""A race (search.race): seeds spent only where the answer is still open, as irace's
F-race and SMAC3's intensifier spend them.

Every configuration runs its first `first` seeds. Then, round by round, a configuration
gets its next seed only while it may still be the best: while a one-sided Welch test
against the current leader (at `alpha`, per comparison) cannot call it worse, and TOST
does not show it equivalent within the margin. The leader gets its next seed while any
configuration is still in against it. One whose seeds so far all failed is out. The race
ends when none is left in against the leader, or those left have had every seed.

The state is never stored apart: `standing` replays the race from the finished trials
(each configuration's results by seed position), so a resume, another worker or another
machine reads the same race from the same study.

    now = standing(results, seeds=8, race=config.search.race, maximize=True, margin=0.005)
    due = [(i, p) for i, p in points if now.due(i, p)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from harness import stats
from harness.config import RaceConfig
from harness.study.claims import needs_rerun

# A finished trial with no value (failed, pruned) in `results`; None: not finished yet.
NO_VALUE = math.nan
Results = Mapping[int, Sequence[float | None]]  # configuration -> result per seed position


@dataclass(frozen=True)
class Standing:
    """Where a race stands: which configurations may run which seeds now."""
    allowed: int  # seed positions below this may run for the configurations still in
    first: int  # seed positions below this run for every configuration
    still_in: frozenset[int]  # configurations still given seeds, the leader among them
    out: dict[int, tuple[int, str]] = field(default_factory=dict)  # -> (seeds, why)
    over: bool = False  # nothing more will run

    def due(self, index: int, position: int) -> bool:
        """Whether seed `position` of configuration `index` may run now."""
        return position < self.first or (index in self.still_in and position < self.allowed)


def standing(results: Results, seeds: int, race: RaceConfig, maximize: bool,
             margin: float | None) -> Standing:
    """Replay the race round by round over the finished results: the decision after
    round r reads only seed positions below r, and is made once every configuration
    still in has finished them."""
    still_in = set(results)
    out: dict[int, tuple[int, str]] = {}
    r = race.first
    while True:
        if any(results[i][p] is None for i in still_in for p in range(r)):
            return Standing(r, race.first, frozenset(still_in), out)
        values = {i: _completed(results[i][:r]) for i in still_in}
        for i in [i for i in still_in if len(values[i]) == 0]:
            out[i] = (r, "failed")
            still_in.discard(i)
        if not still_in:
            return Standing(r, race.first, frozenset(), out, over=True)
        leader = _leader(values, still_in, maximize)
        for i in sorted(still_in - {leader}):
            why = _why_out(values[i], values[leader], maximize, race.alpha, margin)
            if why:
                out[i] = (r, why)
                still_in.discard(i)
        if len(still_in) == 1 or r >= seeds:
            return Standing(r, race.first, frozenset(still_in), out, over=True)
        r += 1


def result(trial: FrozenTrial | None) -> float | None:
    """A point's newest attempt as the race reads it: None while it has no result for
    good (not run, running, to run again), its value when COMPLETE, NO_VALUE when it
    failed or was pruned."""
    if trial is None or not trial.state.is_finished() or needs_rerun(trial):
        return None
    return trial.value if trial.state == TrialState.COMPLETE else NO_VALUE


def _completed(results: Sequence[float | None]) -> np.ndarray:
    return np.array([v for v in results if v is not None and not math.isnan(v)])


def _leader(values: dict[int, np.ndarray], still_in: set[int], maximize: bool) -> int:
    """The best mean among those still in; a tie goes to the first configuration."""
    sign = 1.0 if maximize else -1.0
    return max(sorted(still_in), key=lambda i: sign * stats.mean(values[i]))


def _why_out(a: np.ndarray, leader: np.ndarray, maximize: bool, alpha: float,
             margin: float | None) -> str:
    """'worse' or 'equivalent' when the race can stop giving `a` seeds; '' while it is
    still in (stats.race_out, said with its reason)."""
    if not stats.race_out(a, leader, maximize, alpha, margin):
        return ""
    return "equivalent" if stats.tost(a, leader, margin) < alpha else "worse"


def summary(now: Standing, configurations: int, seeds: int, trials: int) -> str:
    """The progress line of a race: 'race: 31 trials so far, at most 120; 5 configurations
    still in'."""
    most = configurations * seeds
    left = f"{len(now.still_in)} configuration{'' if len(now.still_in) == 1 else 's'}"
    if now.over:
        return f"race: over after {trials} trials of at most {most}; {left} left in"
    return f"race: {trials} trials so far, at most {most}; {left} still in"
