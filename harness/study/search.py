"""The search strategies: which points a sweep runs.

A strategy hands out the next points that need running as claims (started Optuna
trials), `next_points(k)` at a time: `GridSearch` every point of the grid exactly once;
`OptunaSearch` points the sampler proposes until n_trials configurations exist, each once
per seed (seeds added to a sweep later run for the configurations it already has). What
every strategy shares, the claim itself, is claims.py's `Search`.

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
from harness.study.claims import Lock, Point, Search, latest_attempts, needs_rerun


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
    if config.search.method == "grid":
        return len(grid_points(config))
    return config.search.n_trials * len(config.search.seeds)


def make_sampler(config: Config, seed: int) -> optuna.samplers.BaseSampler:
    if config.search.method == "optuna" and config.search.sampler == "tpe":
        # constant_liar: a trial running in another process counts as a poor result, so
        # TPE proposes elsewhere instead of next to it.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def claim_seed(config: Config, number: int) -> int:
    """The sampler's seed for trial `number`. Trial numbers are unique in a study, so no
    two claims draw alike, whichever process makes them, and a resumed sweep does not
    replay the draws it made before. One process on a new study proposes the same points
    every time; with several, which trials have finished when each is proposed (and so
    what TPE has learnt) depends on timing, and the points differ from run to run."""
    return config.train.seed + number


def make_pruner(config: Config) -> optuna.pruners.BasePruner:
    if config.search.method != "optuna" or config.search.pruner == "none":
        return optuna.pruners.NopPruner()
    if config.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.train.epochs)


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


class OptunaSearch(Search):
    """Points the sampler proposes until n_trials configurations exist, each once per
    seed; seeds added to search.seeds later run for the configurations it has. Which
    point comes is the sampler's choice: `fits` is not asked."""

    def _before_ask(self, trials: int) -> None:
        self.study.sampler = make_sampler(self.config, claim_seed(self.config, trials))

    def _name(self, trial: optuna.Trial, params: dict[str, Any]) -> None:
        """Make a freshly sampled trial the first seed of a new configuration, and queue
        its other seeds. That takes several writes: `point`, the attribute that makes a
        trial a claim, goes last, so a process killed before it leaves a trial that is no
        point (retired as its dead owner's, then ignored); one killed after it leaves
        seeds unqueued, which `_added_seed` finds."""
        point = Point(f"c{trial.number}", trial.number, params, self.config.search.seeds[0])
        for key, value in self._attrs(point).items():
            trial.set_user_attr(key, value)
        for seed in self.config.search.seeds[1:]:
            repeat = Point(f"c{trial.number}-s{seed}", trial.number, params, seed)
            self.study.enqueue_trial(params, user_attrs=self._attrs(repeat, owner=""))

    def _next_point(self, trials: list[FrozenTrial],
                    fits: Callable[[dict[str, Any]], bool] | None) -> Point | None:
        for trial in latest_attempts(trials).values():
            if self._due(trial):
                return Point(trial.user_attrs["point"], trial.user_attrs["index"],
                             dict(trial.params), trial.user_attrs["seed"])
        added = self._added_seed(trials)
        if added is not None:
            return added
        configurations = {t.user_attrs["index"] for t in trials if "point" in t.user_attrs}
        if len(configurations) < self.config.search.n_trials:
            return Point("", -1, {}, self.config.search.seeds[0])
        return None

    def _added_seed(self, trials: list[FrozenTrial]) -> Point | None:
        """A seed of search.seeds that a configuration sampled earlier has not run: the
        seed was added when the sweep was resumed."""
        seeds: dict[int, set[int]] = {}
        params: dict[int, dict[str, Any]] = {}
        for trial in trials:
            if "point" in trial.user_attrs:
                index = trial.user_attrs["index"]
                seeds.setdefault(index, set()).add(trial.user_attrs["seed"])
                if trial.params:  # a queued trial has none yet
                    params[index] = dict(trial.params)
        for index in sorted(params):
            for seed in self.config.search.seeds:
                if seed not in seeds[index]:
                    return Point(f"c{index}-s{seed}", index, params[index], seed)
        return None


def make_search(config: Config, study: optuna.Study, storage: optuna.storages.BaseStorage,
                lock: Lock = nullcontext) -> Search:
    """The strategy search.method names, on `study`."""
    kind = GridSearch if config.search.method == "grid" else OptunaSearch
    return kind(config, study, storage, lock)


def _key(params: dict[str, Any], seed: int) -> str:
    return json.dumps({"params": params, "seed": seed}, sort_keys=True)
