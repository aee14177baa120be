"""A sweep's trials, one at a time or in populations: how many train together, which
claims go together, and how they run. Each member of a population is still a whole
trial: its own book, Optuna trial, pruning, checkpoint, sinks and heartbeat.

    size = population_size(config.train.population, device)
    if size == 1:  # one trial at a time, as always
        for claim, result, lease in run_claims(search.claim(1), ...): record(...)
    else:  # populations whose freed places are filled again
        Lanes(size, training, data, storage, sinks, checkpoints, pruning, claim).run(record)

Populations: `size` places (K). Claims go into the population of their fusable key (the
optimizer and the batch size), one population per key, all advanced one epoch each per
round. When members stop (complete, pruned, diverged, failed), their places are claimed
again at the round's end: first for the keys that train (a grid gives its next point of
the same key, which joins that population at its next epoch, from its own seed), then
for any key (the optuna method asks the sampler, whose points may have any key: a point
of a key with no population starts one). Each member counts its own epochs.

Why a point of another key trains at once in a population of its own rather than
waiting for one of its key: a point that waits is a RUNNING trial that gives no result
(TPE's constant liar counts it as a poor one) and holds a place the GPU does not use;
the price is one population's launches more per round, which waiting would pay too, as
the population it waits for drains. So every place is in use while there are points.

Finished members are finished and recorded on the bookkeeper's thread (bookkeeper.py)
while the next epoch trains; each keeps its heartbeat until its result is recorded.
Ctrl-C interrupts every member (each recorded, to run again on resume); a sticky CUDA
error records every running member retryable and raises MachineFault; a full disk met
by a result interrupts the others and the sweep stops with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import optuna
import torch

from harness import stop, timings, train
from harness.book import EpochCallback, TrialBook, attempt_checkpoint
from harness.bookkeeper import Bookkeeper, Record, Seat
from harness.config import POPULATION_AUTO, POPULATION_OFF
from harness.data import Dataset
from harness.errors import MachineFault, SetupError, describe, sticky_cuda
from harness.hyperparams import LR, OPTIMIZER, build_optimizer
from harness.models import build_model
from harness.sinks.base import Sink
from harness.study.claims import Claim
from harness.study.owner import Lease, heartbeat
from harness.trainers.fused import FusedTrainer, fusable_key
from harness.trainers.population import Member, PopulationTrainer
from harness.trial import run_trial
from harness.types import INTERRUPTED, Training, TrialResult, TrialSpec

# `auto` on CUDA. The README's table (one H200, LeNet, batch 64): 32 trials at once give
# 76x the trials per hour of one at a time and 128 give 85x; 32 keeps an Optuna search
# adaptive (each population is sampled knowing the results of the ones before). On a
# CPU a population gains little over one at a time (benchmarks/README.md): `auto` is off.
CUDA_POPULATION = 32


def population_size(setting: int | str, device: torch.device) -> int:
    """The most trials trained together: train.population (or --population) resolved."""
    if setting == POPULATION_OFF:
        return 1
    if setting == POPULATION_AUTO:
        return CUDA_POPULATION if device.type == "cuda" else 1
    return int(setting)


def check_setup(spec: TrialSpec, training: Training, data: Dataset, size: int) -> None:
    """One step of the sweep's model and optimizer on two samples, an evaluation, and
    (when the sweep trains populations) a population of two evaluated, on the sweep's
    device, before any trial is claimed. A fault that would fail every trial the same
    way (a device that cannot train, a model that cannot be built) stops the sweep here
    as a SetupError, and no trial is recorded as its result. The global random state is
    left as it was."""
    device = data.device
    x, y = data.x_train[:2], data.y_train[:2]
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_model(training.model).to(device)
            if training.channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = build_optimizer(model.parameters(), spec.params,
                                        fused=device.type == "cuda")
            train.train_epoch(model, optimizer, x, y, len(x), torch.Generator(),
                              amp=training.amp, should_stop=lambda: False)
            train.evaluate(model, x, y, len(x), training.amp)
            if size > 1:
                pair = [Member(seed, spec.params[LR]) for seed in (0, 1)]
                PopulationTrainer(pair, spec.params[OPTIMIZER], len(x), device,
                                  amp=training.amp).evaluate(x, y, len(x))
    except Exception as err:
        raise SetupError(f"the sweep cannot train {training.model} on {device} "
                         f"({describe(err)}); nothing was run or recorded: fix this and "
                         "run the same command") from err


Pruning = Callable[[optuna.Trial, Lease], EpochCallback]


def run_claims(claims: Sequence[Claim], training: Training, data: Dataset,
               storage: optuna.storages.BaseStorage, sinks: Callable[[], list[Sink]],
               checkpoints: Path, pruning: Pruning
               ) -> Iterator[tuple[Claim, TrialResult, Lease]]:
    """Run the claims one at a time (no population), yielding every result with its
    claim's lease. After one that was interrupted or hit a full disk, the others come
    back interrupted: their points run again on resume. A sticky CUDA error: the
    result (retryable) is yielded, then MachineFault raised."""
    halted = False
    with ExitStack() as beats:  # every claim is alive until its result is yielded
        leases = {claim.trial_id: beats.enter_context(heartbeat(storage, claim.trial_id))
                  for claim in claims}
        for claim in claims:
            lease = leases[claim.trial_id]
            if halted:
                yield claim, TrialResult(claim.spec, "FAIL", error=INTERRUPTED,
                                         metric=training.metric), lease
                continue
            try:
                result = run_trial(claim.spec, training, data, sinks(),
                                   attempt_checkpoint(checkpoints, claim.spec),
                                   pruning(claim.trial, lease))
            except MachineFault as fault:
                yield from ((claim, r, lease) for r in fault.results)
                raise
            yield claim, result, lease
            halted = result.interrupted or result.stop is not None


# (k, key wanted or None, idle) -> up to k claims; idle: nothing trains here, so wait
# for other processes' trials, and [] means the sweep is done
Claimer = Callable[[int, Hashable | None, bool], list[Claim]]


def claims_ahead(device: torch.device) -> bool:
    """Whether to claim the places a round will free while it trains. On a GPU the
    claims (Optuna's writes, TPE's sampling) then run while the main thread waits for
    the device, which they would otherwise leave idle. On the CPU the claiming thread
    would take the cores from training, and claims made ahead would be interrupted with
    the round by a Ctrl-C, recorded with it to run again."""
    return device.type == "cuda"


class Lane:
    """The population of one fusable key and its members."""

    def __init__(self, trainer: FusedTrainer) -> None:
        self.trainer = trainer
        self.seats: dict[int, Seat] = {}


class Lanes:
    """`size` places, in one population per fusable key, filled again as they free
    (see the module's docstring)."""

    def __init__(self, size: int, training: Training, data: Dataset,
                 storage: optuna.storages.BaseStorage, sinks: Callable[[], list[Sink]],
                 checkpoints: Path, pruning: Pruning, claim: Claimer) -> None:
        self.size, self.training, self.data, self.storage = size, training, data, storage
        self.sinks, self.checkpoints, self.pruning, self.claim = sinks, checkpoints, pruning, claim
        self.lanes: dict[Hashable, Lane] = {}
        self.keeper: Bookkeeper  # while `run` runs
        self.ahead: ThreadPoolExecutor  # claims made while a round trains
        self.early: Future[list[Seat]] | None = None  # ... those of this round
        self.spent: set[Hashable] = set()  # keys with no point left for now
        self.dry = False  # no point of any key left for now

    @property
    def seats(self) -> list[Seat]:
        return [seat for lane in self.lanes.values() for seat in lane.seats.values()]

    def run(self, record: Record) -> None:
        """Claim, train and record until no claim is left (see the module's docstring).
        Ctrl-C, MachineFault and any other error end every running member, have it
        recorded, and are raised again."""
        with Bookkeeper(record) as keeper, ThreadPoolExecutor(1, "claims") as ahead:
            self.keeper, self.ahead = keeper, ahead
            try:
                self._loop(keeper)
            except KeyboardInterrupt:
                self._end(keeper, lambda seat: seat.book.interrupt())
                raise
            except MachineFault as fault:
                keeper.fault = fault.__cause__  # nothing more touches the device
                self._end(keeper, lambda seat: None)
                raise
            except Exception as err:  # the sweep stops: its trials are recorded failed
                self._end(keeper, lambda seat, error=err: seat.book.fail(error))
                raise
        keeper.check()

    def _loop(self, keeper: Bookkeeper) -> None:
        self._fill(idle=True)
        while self.lanes:
            self.early = self._claim_ahead()
            self._round(keeper)
            early, self.early = self.early, None
            self._place(early.result() if early is not None else [])
            keeper.check()
            if keeper.full is not None:  # the sweep stops: the others run again
                self._end(keeper, lambda seat: seat.book.interrupt())
                return
            self._fill(idle=False)
            if not self.lanes:
                keeper.wait()  # a finished trial is recorded before the end is decided
                self._fill(idle=True)

    def _claim_ahead(self) -> Future[list[Seat]] | None:
        """The places that free at this round's end for sure (members at their last
        epoch) are claimed while the round trains, on a thread of their own (on CUDA:
        `claims_ahead`)."""
        due = sum(len(seat.book.history) == self.training.epochs - 1 for seat in self.seats)
        if not due or self.dry or stop.requested() or not claims_ahead(self.data.device):
            return None
        return self.ahead.submit(self._claim_free, due, False, self._keys())

    def _round(self, keeper: Bookkeeper) -> None:
        """Every population one epoch; the members that stop go to the bookkeeper."""
        live = len(self.seats)
        for key, lane in list(self.lanes.items()):
            steps = lane.trainer.steps_per_epoch
            timings.count("fused_steps", steps)
            timings.count("member_steps", steps * live)
            timings.count("trained_member_steps", steps * len(lane.seats))
            self._epoch(lane)
            done = [seat for seat in lane.seats.values() if not seat.book.running]
            if done:
                lane.trainer.stop([seat.claim.spec for seat in done])
            for seat in done:
                del lane.seats[seat.claim.spec.number]
                keeper.finish(seat)
            if not lane.seats:
                del self.lanes[key]

    def _epoch(self, lane: Lane) -> None:
        """One epoch of a population, each member's book told; a fault of the population
        (not of one member's) fails its members, unless it is the device's."""
        seats = list(lane.seats.values())
        try:
            measured = lane.trainer.epoch([seat.claim.spec for seat in seats])
        except Exception as err:
            if sticky_cuda(err) is not None:
                raise MachineFault(err) from err
            for seat in seats:
                seat.book.fail(err)
            if self.data.device.type == "cuda":
                torch.cuda.empty_cache()  # after an out-of-memory error, for the others
            return
        for seat, metrics in zip(seats, measured, strict=True):
            try:
                seat.book.record(metrics, lambda spec=seat.claim.spec: lane.trainer.weights(spec))
            except Exception as err:  # its own bookkeeping (a pruner, a lost lease)
                seat.book.fail(err)  # ends this member only; the others go on

    def _fill(self, idle: bool) -> None:
        """Claim the free places now (`_claim_free`) and seat the claims."""
        if idle:
            self.spent, self.dry = set(), False
        if stop.requested() and not idle:
            return  # a stop: the next step raises it; nothing more is claimed
        self._place(self._claim_free(self.size - len(self.seats), idle, self._keys()))

    def _keys(self) -> list[Hashable]:
        """The keys that train, the most members first."""
        return sorted(self.lanes, key=lambda key: -len(self.lanes[key].seats))

    def _claim_free(self, free: int, idle: bool, keys: list[Hashable]) -> list[Seat]:
        """Up to `free` claims, seated (heartbeats on): for the keys that train first,
        then for any key, until full or nothing is left. A key that came back short, or
        any key coming back empty, is not asked again while trials train here (a grid
        has no new point of it then; a point due again later is found once nothing
        trains)."""
        seats: list[Seat] = []
        for key in keys:
            if free > 0 and key not in self.spent:
                got = self.claim(free, key, False)
                self.spent |= {key} if len(got) < free else set()
                free -= len(got)
                seats += [self._seat(claim) for claim in got]
        while free > 0 and not self.dry:
            got = self.claim(free, None, idle and not keys and not seats)
            self.dry = not got
            free -= len(got)
            seats += [self._seat(claim) for claim in got]
        return seats

    def _place(self, seats: Sequence[Seat]) -> None:
        """Each claim into the population of its key (one made when none trains), its
        book started there."""
        groups: dict[Hashable, list[Seat]] = {}
        for seat in seats:
            groups.setdefault(fusable_key(seat.claim.spec.params), []).append(seat)
        for key, group in groups.items():
            try:
                lane = self._lane(key, [seat.claim.spec for seat in group])
            except Exception as err:  # the population cannot be made: its trials fail
                if sticky_cuda(err) is not None:
                    raise MachineFault(err) from err
                for seat in group:
                    seat.book.fail(err)
                    self.keeper.finish(seat)
                continue
            for seat in group:
                lane.seats[seat.claim.spec.number] = seat
                seat.book.start(lane.trainer.module(seat.claim.spec))

    def _seat(self, claim: Claim) -> Seat:
        """A claim's heartbeat started, and its book."""
        beat = contextlib.ExitStack()
        lease = beat.enter_context(heartbeat(self.storage, claim.trial_id))
        book = TrialBook(claim.spec, self.training, self.sinks(),
                         attempt_checkpoint(self.checkpoints, claim.spec),
                         self.pruning(claim.trial, lease))
        return Seat(claim, book, lease, beat)

    def _lane(self, key: Hashable, specs: list[TrialSpec]) -> Lane:
        """The population of `key`, which these trials join at its next epoch."""
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(FusedTrainer(specs, self.training, self.data))
        else:
            lane.trainer.join(specs)
        return lane

    def _end(self, keeper: Bookkeeper, end: Callable[[Seat], Any]) -> None:
        """End every member still training, and the claims made ahead (`end` says how),
        and have each recorded."""
        seats = self.seats
        early, self.early = self.early, None
        if early is not None:
            with contextlib.suppress(Exception):  # its error is not the one to raise
                seats += early.result()
        for seat in seats:
            end(seat)
            keeper.finish(seat)
        self.lanes.clear()
