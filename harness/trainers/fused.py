"""The trainer of a sweep's population: the Trainer protocol over PopulationTrainer, one
member per trial, for trials that share the optimizer and the batch size.

    trainer = FusedTrainer(specs, training, data)
    metrics = trainer.epoch(specs)                 # one EpochMetrics per spec, in order
    LeNet().load_state_dict(trainer.weights(specs[0]))

A population that runs out of device memory is split in two and its members trained
again from their seeds up to where they were (the same draws give the same weights, up
to rounding), down to populations of one; only then does the error reach the trials.
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
from harness.lenet import LeNet
from harness.trainers.population import Member, PopulationEval, PopulationTrainer
from harness.types import EpochMetrics, Training, TrialSpec

FUSED_KEYS = (OPTIMIZER, BATCH_SIZE)  # what the members of one population share
Trained = tuple[float, int, list[tuple[int, float]]]  # train loss, samples, step losses


def fusable_key(params: dict[str, Any]) -> tuple[Any, ...]:
    """Trials with the same key can train as one population (model, epochs, amp and
    channels_last are the same for the whole sweep)."""
    return tuple(params[name] for name in FUSED_KEYS)


class _Part:
    """One PopulationTrainer and the trial numbers of its members, in order."""

    def __init__(self, specs: Sequence[TrialSpec], training: Training, device: torch.device
                 ) -> None:
        first = specs[0].params
        self.numbers = [spec.number for spec in specs]
        members = [Member(spec.seed, spec.params[LR], spec.params[MOMENTUM],
                          spec.params[WEIGHT_DECAY]) for spec in specs]
        self.trainer = PopulationTrainer(members, first[OPTIMIZER], first[BATCH_SIZE],
                                         device, amp=training.amp)
        self.done = 0  # epochs trained


class FusedTrainer:
    def __init__(self, specs: Sequence[TrialSpec], training: Training, data: Dataset) -> None:
        if len({fusable_key(spec.params) for spec in specs}) != 1:
            raise ValueError("a population's trials must share "
                             + " and ".join(FUSED_KEYS))
        self.specs = {spec.number: spec for spec in specs}
        self.training, self.data = training, data
        self.parts = [_Part(specs, training, data.device)]
        self.epochs_done = 0
        self.modules: dict[int, nn.Module] = {}  # members' LeNets for the sinks

    def module(self, member: TrialSpec) -> nn.Module:
        """A LeNet holding the member's weights, copied in after every epoch on the
        device (no host sync): what sinks read for weight histograms and prediction
        images. It has no gradients: the population's are never kept per parameter."""
        model = self.modules.get(member.number)
        if model is None:
            with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten
                model = LeNet()
            model = model.to(self.data.device).requires_grad_(False)
            self.modules[member.number] = model
            self._copy_into(member.number, model)
        return model

    def epoch(self, members: Sequence[TrialSpec]) -> list[EpochMetrics]:
        """Train every active member one epoch, then evaluate all on validation and
        test, one pass each; the times are the population's."""
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
        self.epochs_done += 1
        for number, model in self.modules.items():
            self._copy_into(number, model)
        epoch_s = time.perf_counter() - t0
        batch_size = self.parts[0].trainer.batch_size
        out = []
        for member in members:
            loss, seen, step_losses = measured[member.number]
            val_loss, val_acc, test_loss, test_acc = evals[member.number]
            out.append(EpochMetrics(
                train_loss=loss, val_loss=val_loss, val_acc=val_acc, test_loss=test_loss,
                test_acc=test_acc, seen=seen, steps=-(-seen // batch_size), train_s=train_s,
                epoch_s=epoch_s, step_losses=step_losses))
        return out

    def weights(self, member: TrialSpec) -> dict[str, Tensor]:
        """The member's plain LeNet state_dict, on the CPU."""
        part, k = self._find(member.number)
        return part.trainer.state_dicts([k])[0]

    def stop(self, members: Sequence[TrialSpec]) -> None:
        """Mask these members out: no more updates."""
        for member in members:
            part, k = self._find(member.number)
            part.trainer.stop([k])

    def _train(self, part: _Part, wanted: list[int]) -> dict[int, Trained]:
        """One epoch of this part: (train loss, samples, step losses) per wanted member.
        A part made by a split first catches up with the epochs done. On out of memory,
        its wanted members go on in two smaller parts."""
        data, training = self.data, self.training
        try:
            while part.done < self.epochs_done:
                part.trainer.epoch(data.x_train, data.y_train, training.max_batches)
                part.done += 1
            stats = part.trainer.epoch(data.x_train, data.y_train, training.max_batches,
                                       training.log_every)
            part.done += 1
        except torch.OutOfMemoryError:
            if len(part.numbers) == 1:
                raise
            stats = None
        if stats is None:  # out of the except: the failed step's tensors are freed first
            return self._split(part, [n for n in part.numbers if n in wanted])
        return {n: (stats.train_loss[k], stats.seen, stats.step_losses[k])
                for k, n in enumerate(part.numbers) if n in wanted}

    def _split(self, part: _Part, live: list[int]) -> dict[int, Trained]:
        """Replace `part` with two halves of its live members, trained anew; the ones
        that stopped before are done (their books too): their modules go."""
        self.parts.remove(part)
        for number in part.numbers:
            if number not in live:
                self.modules.pop(number, None)
        del part
        if self.data.device.type == "cuda":
            torch.cuda.empty_cache()
        half = max(1, len(live) // 2)
        measured: dict[int, Trained] = {}
        for numbers in (live[:half], live[half:]):
            if numbers:
                new = _Part([self.specs[n] for n in numbers], self.training, self.data.device)
                self.parts.append(new)
                measured |= self._train(new, numbers)
        return measured

    def _evaluate(self, part: _Part, x: Tensor, y: Tensor) -> PopulationEval:
        if len(x) == 0:  # a turned-off validation split, as the single trainer says it
            nan = [math.nan] * part.trainer.k
            return PopulationEval(nan, nan)
        return part.trainer.evaluate(x, y, self.training.eval_batch_size)

    @torch.no_grad()
    def _copy_into(self, number: int, model: nn.Module) -> None:
        part, k = self._find(number)
        rows = part.trainer.net.params
        for name, param in model.named_parameters():
            param.copy_(rows[name][k])

    def _find(self, number: int) -> tuple[_Part, int]:
        for part in self.parts:
            if number in part.numbers:
                return part, part.numbers.index(number)
        raise KeyError(f"trial {number} is not a member of this population")
