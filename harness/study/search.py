"""The search strategies: which points a sweep runs.

A strategy hands out the next points that need running as claims (started Optuna
trials), `next_points(k)` at a time: `GridSearch` every point of the grid exactly once;
`RaceGrid` a grid's points only while their configuration is still in a race (race.py);
`OptunaSearch` (sampling.py) points the sampler proposes until n_trials configurations
exist, each once per seed (seeds added to a sweep later run for the configurations it
already has), then its confirmation. What every strategy shares, the claim itself, is
claims.py's `Search`.

    search = make_search(config, study, storage, lock)
    claims = search.next_points(4)  # up to 4 started trials; [] when nothing is left
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from harness.config import Config
from harness.study import race
from harness.study.claims import Lock, Point, Search, needs_rerun
from harness.study.sampling import OptunaSearch


def grid_points(config: Config) -> list[Point]:
    """Every combination of the space's values, in config order, once per seed."""
    space = config.search.space
    names = list(space)
    points = []
    for index, combo in enumerate(itertools.product(*(space[n] for n in names))):
        params = dict(zip(names, combo, strict=True))
        for seed in config.search.seeds:
            points.append(Point(_key(params, seed), index, params, seed))
    return points


def total_points(config: Config) -> int:
    """The most points the sweep runs (a race or a small space may run fewer)."""
    if config.search.method == "grid":
        return len(grid_points(config))
    confirm = config.search.confirm
    extra = confirm.top * len(confirm.seeds) if confirm is not None else 0
    return config.search.n_trials * len(config.search.seeds) + extra


class GridSearch(Search):
    """Every point of the grid exactly once, in config order; one that was interrupted
    (or failed by a fault of the machine) runs again."""

    def __init__(self, config: Config, study: optuna.Study,
                 storage: optuna.storages.BaseStorage, lock: Lock = nullcontext) -> None:
        super().__init__(config, study, storage, lock)
        self.points = grid_points(config)
        # What the study says, kept up to date by looking only at what can have changed
        # (the trials added since, and those that were not finished): the cost of a
        # claim stays flat however many trials the study has.
        self.latest: dict[str, FrozenTrial] = {}  # each point's newest attempt
        self.looked = 0  # trials[:looked] are in `latest`
        self.unfinished: set[int] = set()  # among those, the ones still running or queued
        self.settled = 0  # points[:settled] have a result for good

    def _next_point(self, trials: list[FrozenTrial],
                    fits: Callable[[dict[str, Any]], bool] | None) -> Point | None:
        self._look(trials)
        while self.settled < len(self.points) and self._final(self.points[self.settled]):
            self.settled += 1
        for point in self.points[self.settled:]:
            latest = self.latest.get(point.key)
            if (latest is None or self._due(latest)) and (
                    fits is None or fits(self._full(point.params))):
                return point
        return None

    def _look(self, trials: list[FrozenTrial]) -> None:
        """Bring `latest` up to date. A study's trial numbers are 0, 1, 2, ... in order,
        and a finished trial never changes again."""
        if trials and trials[-1].number != len(trials) - 1:  # not so: look at them all
            self.latest, self.looked, self.unfinished, self.settled = {}, 0, set(), 0
        for number in [*sorted(self.unfinished), *range(self.looked, len(trials))]:
            trial = trials[number]
            key = trial.user_attrs.get("point")
            if key is not None and (key not in self.latest
                                    or self.latest[key].number <= number):
                self.latest[key] = trial
            if trial.state.is_finished():
                self.unfinished.discard(number)
            else:
                self.unfinished.add(number)
        self.looked = len(trials)

    def _final(self, point: Point) -> bool:
        """The point's newest attempt is a result that will never run again."""
        latest = self.latest.get(point.key)
        return latest is not None and latest.state.is_finished() and not needs_rerun(latest)


class RaceGrid(GridSearch):
    """A grid raced (search.race): every configuration runs its first seeds, then more
    only while it may still be the best (race.py), round by round: each seed for every
    configuration still in before the next seed. The points that are due are the race's
    standing, replayed from the study's results at every claim."""

    def __init__(self, config: Config, study: optuna.Study,
                 storage: optuna.storages.BaseStorage, lock: Lock = nullcontext) -> None:
        super().__init__(config, study, storage, lock)
        self.position = {seed: p for p, seed in enumerate(config.search.seeds)}
        self.points.sort(key=lambda point: (self.position[point.seed], point.index))
        self.configurations = sorted({point.index for point in self.points})
        self.shown: tuple[int, int, bool] | None = None  # the standing last said

    def _next_point(self, trials: list[FrozenTrial],
                    fits: Callable[[dict[str, Any]], bool] | None) -> Point | None:
        self._look(trials)
        seeds = len(self.config.search.seeds)
        results: dict[int, list[float | None]] = {i: [None] * seeds for i in self.configurations}
        for point in self.points:
            results[point.index][self.position[point.seed]] = race.result(
                self.latest.get(point.key))
        objective = self.config.objective
        now = race.standing(results, seeds, self.config.search.race,  # type: ignore[arg-type]
                            objective.maximize, objective.margin)
        if (now.allowed, len(now.still_in), now.over) != self.shown:
            self.shown = (now.allowed, len(now.still_in), now.over)
            ran = sum(v is not None for row in results.values() for v in row)
            self.say(race.summary(now, len(self.configurations), seeds, ran))
        for point in self.points:
            latest = self.latest.get(point.key)
            if (latest is None or self._due(latest)) and now.due(
                    point.index, self.position[point.seed]) and (
                    fits is None or fits(self._full(point.params))):
                return point
        return None


def make_search(config: Config, study: optuna.Study, storage: optuna.storages.BaseStorage,
                lock: Lock = nullcontext) -> Search:
    """The strategy search.method names (a grid raced when search.race is set)."""
    kind: type[Search] = OptunaSearch
    if config.search.method == "grid":
        kind = GridSearch if config.search.race is None else RaceGrid
    return kind(config, study, storage, lock)


def _key(params: dict[str, Any], seed: int) -> str:
    return json.dumps({"params": params, "seed": seed}, sort_keys=True)
