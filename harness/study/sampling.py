"""The optuna method: points the sampler proposes, each configuration once per seed, and
then, with search.confirm, the search's best configurations on fresh seeds.

A (configuration, seed) is trained once: a proposal of a configuration that exists is
told that configuration's result (so the sampler learns from it) and is no point and no
configuration of its own. Once n_trials configurations exist (or every one of a small
space has run) and all of them are done, `confirm.top` of them, best first by the
search's own values, run on `confirm.seeds`, raced when search.race is set.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from harness import stats
from harness.config import Config, Range
from harness.hyperparams import BY_NAME
from harness.study import race
from harness.study.claims import Lock, Point, Search, latest_attempts, needs_rerun

# Proposals in a row of configurations that have run, after which the sampler is given
# one that has not (TPE, told each repeat's result, can keep proposing the best one).
REPEATS = 10
ENUMERABLE = 100_000  # a space with more configurations is not listed to find one


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


class OptunaSearch(Search):
    """Points the sampler proposes until n_trials configurations exist, each once per
    seed; seeds added to search.seeds later run for the configurations it has. Which
    point comes is the sampler's choice: `fits` is not asked.

    A (configuration, seed) is trained once: a proposal of a configuration that exists
    is told that configuration's result (so the sampler learns from it) and is no point
    and no configuration of its own. A sampler that keeps proposing existing ones in a
    space of few values is given one that has not run; once every configuration of the
    space has run, the search ends early and says so."""

    def __init__(self, config: Config, study: optuna.Study,
                 storage: optuna.storages.BaseStorage, lock: Lock = nullcontext) -> None:
        super().__init__(config, study, storage, lock)
        self.size = space_size(config)  # configurations in the space; None: unbounded
        self.repeats = 0  # proposals in a row of configurations that exist

    def _before_ask(self, trials: int) -> None:
        self.study.sampler = make_sampler(self.config, claim_seed(self.config, trials))

    def _name(self, trial: optuna.Trial, params: dict[str, Any]) -> bool:
        """Make a freshly sampled trial the first seed of a new configuration, and queue
        its other seeds. That takes several writes: `point`, the attribute that makes a
        trial a claim, goes last, so a process killed before it leaves a trial that is no
        point (retired as its dead owner's, then ignored); one killed after it leaves
        seeds unqueued, which `_added_seed` finds. A configuration that exists is told
        its result instead: False."""
        trials = self.study.get_trials(deepcopy=False)
        known = _configurations(trials)
        index = known.get(_params_key(params))
        if index is not None:
            self._tell_repeat(trial, index, trials, known)
            return False
        self.repeats = 0
        point = Point(f"c{trial.number}", trial.number, params, self.config.search.seeds[0])
        for key, value in self._attrs(point).items():
            trial.set_user_attr(key, value)
        for seed in self.config.search.seeds[1:]:
            repeat = Point(f"c{trial.number}-s{seed}", trial.number, params, seed)
            self.study.enqueue_trial(params, user_attrs=self._attrs(repeat, owner=""))
        return True

    def _tell_repeat(self, trial: optuna.Trial, index: int, trials: list[FrozenTrial],
                     known: dict[str, int]) -> None:
        """Tell a proposal of configuration `index` the result of its first seed (a
        failure while that one has none yet). After REPEATS such proposals in a row, the
        next trial asked is a configuration of the space that has not run."""
        trial.set_user_attr("repeat_of", index)
        first = latest_attempts(trials).get(f"c{index}")
        state = first.state if first is not None else TrialState.FAIL
        if state == TrialState.COMPLETE:
            self.study.tell(trial, first.value)  # type: ignore[union-attr]
        else:
            self.study.tell(trial, state=state if state == TrialState.PRUNED
                            else TrialState.FAIL)
        self.repeats += 1
        if self.repeats >= REPEATS:
            unvisited = self._unvisited(set(known), trial.number)
            if unvisited is not None:
                self.study.enqueue_trial(unvisited)
                self.repeats = 0

    def _unvisited(self, known: set[str], seed: int) -> dict[str, Any] | None:
        """A configuration of a space of few values that has not run, drawn from `seed`."""
        if self.size is None or self.size > ENUMERABLE:
            return None
        space = self.config.search.space
        names = list(space)
        choices = [params for combo in itertools.product(*(_values(space[n]) for n in names))
                   if _params_key(params := dict(zip(names, combo, strict=True))) not in known]
        return random.Random(seed).choice(choices) if choices else None

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
        wanted = self.config.search.n_trials
        if self.size is not None and len(configurations) >= self.size < wanted:
            seeds = len(self.config.search.seeds)
            self.say(f"all {self.size} configurations x {seeds} seed"
                     f"{'' if seeds == 1 else 's'} of the space have run; n_trials "
                     f"{wanted} cannot be reached")
        elif len(configurations) < wanted:
            return Point("", -1, {}, self.config.search.seeds[0])
        return self._confirmation(trials)

    def _confirmation(self, trials: list[FrozenTrial]) -> Point | None:
        """The next point of the confirmation: the search's top configurations on the
        fresh seeds, round by round (each seed for all before the next), raced when
        search.race is set. None until the search is done, and once this is."""
        confirm = self.config.search.confirm
        if confirm is None:
            return None
        latest = latest_attempts(trials)
        searched = [t for t in latest.values()
                    if t.user_attrs["seed"] in self.config.search.seeds]
        if any(not t.state.is_finished() or needs_rerun(t) for t in searched):
            return None  # the top is known once every search point has its result
        top = top_configurations(searched, confirm.top, self.config.objective.maximize)
        keys = {(index, p): f"c{index}-s{seed}" for index in top
                for p, seed in enumerate(confirm.seeds)}
        now = None
        if self.config.search.race is not None:
            results = {index: [race.result(latest.get(keys[index, p]))
                               for p in range(len(confirm.seeds))] for index in top}
            now = race.standing(results, len(confirm.seeds), self.config.search.race,
                                self.config.objective.maximize, self.config.objective.margin)
            ran = sum(v is not None for row in results.values() for v in row)
            self.say(race.summary(now, len(top), len(confirm.seeds), ran))
        for p, seed in enumerate(confirm.seeds):
            for index, params in top.items():
                if keys[index, p] not in latest and (now is None or now.due(index, p)):
                    return Point(keys[index, p], index, params, seed)
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


def top_configurations(searched: list[FrozenTrial], top: int, maximize: bool
                       ) -> dict[int, dict[str, Any]]:
    """The `top` configurations by the mean of their COMPLETE search values, best first
    (a tie to the earlier one): index -> params."""
    values: dict[int, list[float]] = {}
    params: dict[int, dict[str, Any]] = {}
    for trial in searched:
        index = trial.user_attrs["index"]
        if trial.params:
            params[index] = dict(trial.params)
        if trial.state == TrialState.COMPLETE:
            values.setdefault(index, []).append(trial.value)  # type: ignore[arg-type]
    sign = -1.0 if maximize else 1.0
    ranked = sorted(values, key=lambda i: (sign * stats.mean(np.array(values[i])), i))
    return {index: params[index] for index in ranked[:top]}


def space_size(config: Config) -> int | None:
    """How many configurations search.space holds; None when a float range makes them
    countless."""
    sizes = [len(_values(values)) if not _is_float_range(name, values) else None
             for name, values in config.search.space.items()]
    return None if None in sizes else math.prod(sizes)  # type: ignore[arg-type]


def _is_float_range(name: str, values: tuple[Any, ...] | Range) -> bool:
    return isinstance(values, Range) and BY_NAME[name].kind is not int


def _values(values: tuple[Any, ...] | Range) -> list[Any]:
    """A list's values, or every integer of an integer range."""
    if isinstance(values, Range):
        return list(range(int(values.low), int(values.high) + 1))
    return list(values)


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _configurations(trials: list[FrozenTrial]) -> dict[str, int]:
    """Each sampled configuration's params (as a key) -> its index."""
    return {_params_key(t.params): t.user_attrs["index"] for t in trials
            if "point" in t.user_attrs and t.params}


