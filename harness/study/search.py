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
from harness.study.claims import Lock, Point, Search


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

    def _next_point(self, trials: list[FrozenTrial], latest: dict[str, FrozenTrial],
                    fits: Callable[[dict[str, Any]], bool] | None) -> Point | None:
        for point in self.points:
            if (point.key not in latest or self._due(latest[point.key])) and (
                    fits is None or fits(self._full(point.params))):
                return point
        return None


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

    def _next_point(self, trials: list[FrozenTrial], latest: dict[str, FrozenTrial],
                    fits: Callable[[dict[str, Any]], bool] | None) -> Point | None:
        for trial in latest.values():
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
