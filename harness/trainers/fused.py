"""The trainer of a sweep's population: the Trainer protocol over PopulationTrainer, one
member per trial, for trials that share the optimizer and the batch size.

    trainer = FusedTrainer(specs, training, data)
    metrics = trainer.epoch(specs)                 # one EpochMetrics per spec, in order
    trainer.stop([spec])                           # pruned: it leaves at the next epoch
    trainer.join([new_spec])                       # a new trial takes its place
    LeNet().load_state_dict(trainer.weights(specs[0]))

Members leave (`stop`) and join (`join`) between epochs. At the next epoch's start the
population is made again of the members that go on, each where it was (weights,
optimizer state, batch order: PopulationTrainer.carry), and the members that join, each
as its trial alone starts; so every member counts its own epochs, and on the CPU trains
bit for bit as its trial alone, whenever it joined.

A population that runs out of device memory is split in two, each half going on from
where the epoch started, down to populations of one; only then does the error reach the
trials. Once split, no part grows past the size that fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from harness.data import Dataset
from harness.hyperparams import BATCH_SIZE, LR, MOMENTUM, OPTIMIZER, WEIGHT_DECAY
from harness.trainers.mirror import Mirror, member_module
from harness.trainers.population import Carried, Member, PopulationEval, PopulationTrainer
from harness.types import EpochMetrics, Training, TrialSpec

FUSED_KEYS = (OPTIMIZER, BATCH_SIZE)  # what the members of one population share
Trained = tuple[float, int, list[tuple[int, float]]]  # train loss, samples, step losses


def fusable_key(params: dict[str, Any]) -> tuple[Any, ...]:
    """Trials with the same key can train as one population (model, epochs, amp and
    channels_last are the same for the whole sweep)."""
    return tuple(params[name] for name in FUSED_KEYS)


def member(spec: TrialSpec) -> Member:
    return Member(spec.seed, spec.params[LR], spec.params[MOMENTUM],
                  spec.params[WEIGHT_DECAY])


class _Part:
    """One PopulationTrainer, the trial numbers of its members in order, and the mirror
    of their weights that their sinks read."""

    def __init__(self, specs: Sequence[TrialSpec], training: Training, device: torch.device,
                 carried: Carried | None = None) -> None:
        first = specs[0].params
        self.numbers = [spec.number for spec in specs]
        self.trainer = PopulationTrainer([member(spec) for spec in specs], first[OPTIMIZER],
                                         first[BATCH_SIZE], device, amp=training.amp,
                                         cuda_graph=device.type == "cuda", carried=carried)
        self.mirror = Mirror(self.trainer.net)


class FusedTrainer:
    def __init__(self, specs: Sequence[TrialSpec], training: Training, data: Dataset) -> None:
        self.key = fusable_key(specs[0].params)
        self._check(specs)
        self.specs = {spec.number: spec for spec in specs}
        self.training, self.data = training, data
        self.parts = [_Part(specs, training, data.device)]
        self.leaving: set[int] = set()  # stopped: they leave at the next epoch's start
        self.joining: list[TrialSpec] = []  # they join then
        self.cap: int | None = None  # the most members a part may have, once one split
        self.modules: dict[int, nn.Module] = {}  # members' LeNets for the sinks

    @property
    def steps_per_epoch(self) -> int:
        steps = -(-len(self.data.x_train) // self.key[1])
        return min(steps, self.training.max_batches or steps)

    def join(self, specs: Sequence[TrialSpec]) -> None:
        """New trials, each starting as its trial alone would, at the next epoch."""
        self._check(specs)
        self.specs.update({spec.number: spec for spec in specs})
        self.joining.extend(specs)

    def module(self, member: TrialSpec) -> nn.Module:
        """A LeNet holding the member's weights, refreshed after every epoch on the
        device (no host sync): what sinks read for weight histograms and prediction
        images. It has no gradients: the population's are never kept per parameter."""
        self._regroup()
        model = self.modules.get(member.number)
        if model is None:
            part, k = self._find(member.number)
            model = self.modules[member.number] = member_module(part.mirror, k)
        return model

    def epoch(self, members: Sequence[TrialSpec]) -> list[EpochMetrics]:
        """Train every member one epoch, then evaluate all on validation and test, one
        pass each; the times are the population's."""
        self._regroup()
        t0 = time.perf_counter()
        measured: dict[int, Trained] = {}
        wanted = [m.number for m in members]
        for part in [p for p in self.parts if set(p.numbers) & set(wanted)]:
            measured |= self._train(part, wanted)
        train_s = time.perf_counter() - t0
        evals = {}
        for part in [p for p in self.parts if set(p.numbers) & set(wanted)]:
            val, test = (self._evaluate(part, x, y) for x, y in (
                (self.data.x_val, self.data.y_val), (self.data.x_test, self.data.y_test)))
            for k, number in enumerate(part.numbers):
                evals[number] = (val.loss[k], val.acc[k], test.loss[k], test.acc[k])
            part.mirror.refresh(part.trainer.net)
        epoch_s = time.perf_counter() - t0
        return [self._metrics(measured[m.number], evals[m.number], train_s, epoch_s)
                for m in members]

    def weights(self, member: TrialSpec) -> dict[str, Tensor]:
        """The member's plain LeNet state_dict, copied on the device (no host sync)."""
        part, k = self._find(member.number)
        return part.trainer.net.state_dict_here(k)

    def stop(self, members: Sequence[TrialSpec]) -> None:
        """Mask these members out now (no more updates); they leave at the next epoch.
        Their LeNets keep their last weights for their sinks."""
        for spec in members:
            part, k = self._find(spec.number)
            part.trainer.stop([k])
            self.leaving.add(spec.number)
            self.modules.pop(spec.number, None)

    def _metrics(self, trained: Trained, evals: tuple[float, ...], train_s: float,
                 epoch_s: float) -> EpochMetrics:
        loss, seen, step_losses = trained
        val_loss, val_acc, test_loss, test_acc = evals
        return EpochMetrics(
            train_loss=loss, val_loss=val_loss, val_acc=val_acc, test_loss=test_loss,
            test_acc=test_acc, seen=seen, steps=-(-seen // self.key[1]), train_s=train_s,
            epoch_s=epoch_s, step_losses=step_losses)

    def _regroup(self) -> None:
        """Members leave and join: each part that changes is made again (see above),
        the joiners going into the smallest part while it has room, else a new one."""
        if not self.leaving and not self.joining:
            return
        plans = []  # [part or None, the members it keeps, the specs that join it]
        for part in self.parts:
            keep = [k for k, n in enumerate(part.numbers) if n not in self.leaving]
            if keep:
                plans.append((part, keep, []))
        joining = self.joining
        while joining:
            plan = min(plans, key=lambda p: len(p[1]) + len(p[2]), default=None)
            size = 0 if plan is None else len(plan[1]) + len(plan[2])
            room = len(joining) if self.cap is None else self.cap - size
            if plan is None or room <= 0:
                plan = (None, [], [])
                plans.append(plan)
                room = self.cap or len(joining)
            plan[2].extend(joining[:room])
            joining = joining[room:]
        self.parts = [self._remade(*plan) for plan in plans]
        self.leaving, self.joining = set(), []

    def _remade(self, part: _Part | None, keep: list[int], joining: list[TrialSpec]
                ) -> _Part:
        """`part` as it is when nothing changes, else a part of the members it keeps
        (carried over) and the joining ones."""
        if part is not None and len(keep) == len(part.numbers) and not joining:
            return part
        numbers = [] if part is None else [part.numbers[k] for k in keep]
        carried = None if part is None else part.trainer.carry(keep)
        return self._part(numbers + [spec.number for spec in joining], carried)

    def _part(self, numbers: list[int], carried: Carried | None) -> _Part:
        """A part of these members, the first ones `carried`; their LeNets for the sinks
        now show it."""
        part = _Part([self.specs[n] for n in numbers], self.training, self.data.device,
                     carried)
        for k, number in enumerate(numbers):
            if number in self.modules:
                part.mirror.point(self.modules[number], k)
        return part

    def _train(self, part: _Part, wanted: list[int]) -> dict[int, Trained]:
        """One epoch of this part: (train loss, samples, step losses) per wanted member.
        On out of memory, its wanted members go on in two smaller parts."""
        data, training = self.data, self.training
        part.trainer.mark_epoch_start()
        try:
            stats = part.trainer.epoch(data.x_train, data.y_train, training.max_batches,
                                       training.log_every)
        except torch.OutOfMemoryError:
            if len(part.numbers) == 1:
                raise
            stats = None
        if stats is None:  # out of the except: the failed step's tensors are freed first
            return self._split(part, [n for n in part.numbers if n in wanted])
        return {n: (stats.train_loss[k], stats.seen, stats.step_losses[k])
                for k, n in enumerate(part.numbers) if n in wanted}

    def _split(self, part: _Part, live: list[int]) -> dict[int, Trained]:
        """Replace `part` with two halves of its live members, each from where the epoch
        started; no part grows past a half from now on."""
        starts = {n: k for k, n in enumerate(part.numbers)}
        self.parts.remove(part)
        trainer = part.trainer
        del part
        if self.data.device.type == "cuda":
            torch.cuda.empty_cache()
        half = max(1, len(live) // 2)
        self.cap = min(self.cap or len(live), len(live) - half)
        measured: dict[int, Trained] = {}
        for numbers in (live[:half], live[half:]):
            if numbers:
                new = self._part(numbers, trainer.restart([starts[n] for n in numbers]))
                self.parts.append(new)
                measured |= self._train(new, numbers)
        return measured

    def _evaluate(self, part: _Part, x: Tensor, y: Tensor) -> PopulationEval:
        if len(x) == 0:  # a turned-off validation split, as the single trainer says it
            nan = [math.nan] * part.trainer.k
            return PopulationEval(nan, nan)
        return part.trainer.evaluate(x, y, self.training.eval_batch_size)

    def _find(self, number: int) -> tuple[_Part, int]:
        for part in self.parts:
            if number in part.numbers:
                return part, part.numbers.index(number)
        raise KeyError(f"trial {number} is not a member of this population")

    def _check(self, specs: Sequence[TrialSpec]) -> None:
        if any(fusable_key(spec.params) != self.key for spec in specs):
            raise ValueError("a population's trials must share " + " and ".join(FUSED_KEYS))
