"""How a point of a sweep becomes a claim: a started Optuna trial that one process runs.

A point is one configuration (lr, batch size, optimizer, ...) with one seed. `Search`
does what every strategy shares: under the study's claim lock, it retires the trials of
dead processes, turns the strategy's next point into a started trial (enqueued with its
attributes, or sampled), and names it; a trial left RUNNING by a dead process, or
interrupted by Ctrl-C, is handed out again; every other finished trial is a result.
Which point comes next is the strategy's (search.py).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from harness import stop
from harness.config import Config, Range
from harness.hyperparams import BY_NAME, NAMES, run_name
from harness.study.owner import heartbeats_on, is_dead_here, this_process
from harness.types import INTERRUPTED, RETRYABLE, TrialSpec

DEAD = f"{INTERRUPTED}: its process died while it ran"
GIVEN_BACK = f"{INTERRUPTED}: its claim was given back"
WAIT_S = 2.0  # at the end, how often to look at trials running in other processes


@dataclass(frozen=True)
class Point:
    key: str  # identifies the point across attempts, e.g. its params and seed as JSON
    index: int  # configuration number: the run name's prefix, shared by its seeds
    params: dict[str, Any]  # searched values only
    seed: int


@dataclass(frozen=True)
class Claim:
    trial: optuna.Trial
    trial_id: int  # the storage's id of the trial
    spec: TrialSpec


Lock = Callable[[], AbstractContextManager[Any]]
Key = Callable[[dict[str, Any]], Hashable]  # which points can train together


class Search:
    """Hands out the points of one study as claims; `GridSearch` and `OptunaSearch` say
    which point is next. Claims are made under the study's claim lock (`lock`), so
    several processes share a study without running a point twice."""

    def __init__(self, config: Config, study: optuna.Study,
                 storage: optuna.storages.BaseStorage, lock: Lock = nullcontext) -> None:
        self.config, self.study, self.storage, self.lock = config, study, storage, lock
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.owner = this_process()
        # A fault of the machine (retryable) runs again once its own attempt is over:
        # those from earlier runs at once, this run's once more when nothing else is left.
        self.retry_before = datetime.now()
        # The trials other processes ran when the last look found nothing left: one may
        # still stop (its process dies) and need running here.
        self.running: list[FrozenTrial] = []
        self.handed: set[int] = set()  # the trial numbers this search handed out
        self.news: list[str] = []  # what the strategy has to say (a race's progress)
        self.said: set[str] = set()  # ... each said once

    def next_points(self, k: int, key: Key | None = None,
                    like: Hashable | None = None) -> list[Claim]:
        """Up to k points as started trials, claimed together; none when nothing is
        left. With `key`, all share the first one's key where the strategy can choose,
        and with `like` too, that key is `like` (a population's, to fill its places).
        An error part way gives back the claims made so far: their points run again."""
        claims: list[Claim] = []
        with self.lock():
            self._retire_dead()
            try:
                while len(claims) < k:
                    claim = self._claim(_fits(key, like, claims))
                    if claim is None:
                        break
                    claims.append(claim)
            except BaseException:
                self._give_back(claims)
                raise
        return claims

    def claim(self, k: int, key: Key | None = None, show: bool = False,
              like: Hashable | None = None, wait: bool = True) -> list[Claim]:
        """`next_points`; when nothing is left but trials run in other processes, wait
        for them (unless not to `wait`: this process has trials of its own to train):
        one whose process dies (or whose heartbeat stops) then runs here, so a sweep
        never ends with a point that nobody will finish."""
        shown: list[str] = []
        while not (claims := self.next_points(k, key, like)) and self.running and wait:
            if stop.requested():  # Ctrl-C: the caller stops; nothing is left to wait for
                return []
            runs = sorted(t.user_attrs.get("run", f"trial {t.number}") for t in self.running)
            if show and runs != shown:
                print(f"harness: waiting for {len(runs)} trial(s) running in other "
                      f"processes ({', '.join(runs)}); a trial whose process stops runs "
                      "here", file=sys.stderr, flush=True)
            shown = runs
            time.sleep(WAIT_S)
        for line in self.news if show else ():
            print(f"harness: {line}", file=sys.stderr, flush=True)
        self.news.clear()
        return claims

    def say(self, line: str) -> None:
        """Have `claim` print `line` once (a race's standing, the end of a small space)."""
        if line not in self.said:
            self.said.add(line)
            self.news.append(line)

    def retry_now(self) -> None:
        """The end of the sweep: machine faults met so far run once more."""
        self.retry_before = datetime.now()

    def _next_point(self, trials: list[FrozenTrial],
                    fits: Callable[[dict[str, Any]], bool] | None) -> Point | None:
        """The strategy: a point that has never run or is due to run again, or a new
        point (empty key) for the sampler to propose; None when nothing is left."""
        raise NotImplementedError

    def _before_ask(self, trials: int) -> None:
        """Set up what `study.ask()` draws from when nothing is queued."""

    def _name(self, trial: optuna.Trial, params: dict[str, Any]) -> bool:
        """Make a freshly sampled trial a point (only a sampler proposes new points);
        False when it is not one (the sampler proposed a configuration that exists)."""
        raise NotImplementedError

    def _claim(self, fits: Callable[[dict[str, Any]], bool] | None) -> Claim | None:
        """The next point as a started trial (under the lock)."""
        while True:
            trials = self.study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if not waiting:
                point = self._next_point(trials, fits)
                if point is None:
                    self.running = [t for t in trials if t.state == TrialState.RUNNING
                                    and t.user_attrs.get("owner") != self.owner]
                    return None
                if point.key:
                    self.study.enqueue_trial(point.params, user_attrs=self._attrs(point))
            self._before_ask(len(trials))  # nothing queued: the new trial is len(trials)
            trial = self.study.ask()
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(
                self.study_id, trial.number)
            if heartbeats_on(self.storage):  # from now on, its silence makes it stale
                self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            params = self._suggest(trial)
            if "point" not in trial.user_attrs:  # freshly sampled by the optuna method
                if not self._name(trial, params):
                    continue  # a configuration that has run: told, not trained again
            elif trial.user_attrs.get("owner") != self.owner:  # queued by another process
                trial.set_user_attr("owner", self.owner)
            self.handed.add(trial.number)
            return Claim(trial, trial_id, self._spec(trial, params))

    def _give_back(self, claims: list[Claim]) -> None:
        """Claims that will not run: FAIL as interrupted, so their points run again (as
        far as the storage still answers; a dead owner is retired later in any case)."""
        for claim in claims:
            with contextlib.suppress(Exception):
                self.storage.set_trial_user_attr(claim.trial_id, "error", GIVEN_BACK)
                self.storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)

    def _attrs(self, point: Point, owner: str | None = None) -> dict[str, Any]:
        """A point's attributes, `point` last (see `_name`): the claiming process is its
        owner, the run name follows from the point."""
        run = run_name(point.index, self._full(point.params), point.seed,
                       self.config.search.space)
        return {"owner": self.owner if owner is None else owner, "index": point.index,
                "seed": point.seed, "run": run, "point": point.key}

    def _due(self, trial: FrozenTrial) -> bool:
        if not needs_rerun(trial):
            return False
        start = trial.datetime_start
        return not is_retryable(trial) or start is None or start < self.retry_before

    def _retire_dead(self) -> None:
        """Mark FAIL the RUNNING trials whose process died, so their points run again."""
        if heartbeats_on(self.storage):
            optuna.storages.fail_stale_trials(self.study)  # silent workers, any machine
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = trial.user_attrs.get("owner")
            # Claims set the owner under the lock: a trial without one lost its process.
            # One of this process that this search did not hand out was left by an
            # earlier sweep in it that ended in an error.
            if owner is None or is_dead_here(owner) or (
                    owner == self.owner and trial.number not in self.handed):
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(
                    self.study_id, trial.number)
                self.storage.set_trial_user_attr(trial_id, "error", DEAD)
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)

    def _suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        params = {}
        for name, values in self.config.search.space.items():
            params[name] = _suggest(trial, name, values)
        return params

    def default_spec(self) -> TrialSpec:
        """A trial of train:'s values and seed, the first value searched of each
        hyperparameter (ranges: their low end): what a set-up check trains."""
        params = {name: BY_NAME[name].kind(values.low) if isinstance(values, Range)
                  else values[0] for name, values in self.config.search.space.items()}
        return TrialSpec(number=-1, run="set-up check", params=self._full(params),
                         seed=self.config.train.seed)

    def _full(self, params: dict[str, Any]) -> dict[str, Any]:
        """The searched values over train:'s values for every searchable parameter."""
        return {key: getattr(self.config.train, key) for key in NAMES} | params

    def _spec(self, trial: optuna.Trial, params: dict[str, Any]) -> TrialSpec:
        attrs = trial.user_attrs
        return TrialSpec(number=trial.number, run=attrs["run"], params=self._full(params),
                         seed=attrs["seed"])


def _fits(key: Key | None, like: Hashable | None, claims: list[Claim]
          ) -> Callable[[dict[str, Any]], bool] | None:
    """Whether a point's full params have the key wanted: `like`, else the first
    claim's; None: any point."""
    if key is None or (like is None and not claims):
        return None
    wanted = like if like is not None else key(claims[0].spec.params)
    return lambda params: key(params) == wanted


def latest_attempts(trials: list[FrozenTrial]) -> dict[str, FrozenTrial]:
    """The newest trial of every point: earlier attempts were interrupted and rerun."""
    latest: dict[str, FrozenTrial] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        key = trial.user_attrs.get("point")
        if key is not None:
            latest[key] = trial
    return latest


def distribution(name: str, values: tuple[Any, ...] | Range) -> BaseDistribution:
    if isinstance(values, Range):
        if BY_NAME[name].kind is int:
            return IntDistribution(int(values.low), int(values.high), log=values.log)
        return FloatDistribution(values.low, values.high, log=values.log)
    return CategoricalDistribution(values)


def _suggest(trial: optuna.Trial, name: str, values: tuple[Any, ...] | Range) -> Any:
    dist = distribution(name, values)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(name, list(values))  # type: ignore[arg-type]


def needs_rerun(trial: FrozenTrial) -> bool:
    """Interrupted, failed by a fault of the machine (retryable), or failed by the
    heartbeat check. That one leaves no error, or the empty one a completed trial's
    recording writes before it tells the study (the worker died in between): our own
    failures always record a reason."""
    error = trial.user_attrs.get("error")
    return trial.state == TrialState.FAIL and (
        not error or error.startswith((INTERRUPTED, RETRYABLE)))


def is_retryable(trial: FrozenTrial) -> bool:
    return str(trial.user_attrs.get("error")).startswith(RETRYABLE)
