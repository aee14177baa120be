"""One trial's bookkeeping, apart from the computing: its history, the best epoch and
its weights, the divergence verdict, pruning, the checkpoint and the sinks.

A trainer measures epochs; a book decides what they mean. A trainer of one member and a
trainer of K members feed their books the same way:

    book.start(model)
    while book.running:
        book.record(metrics_of_the_epoch, weights=lambda: current_state_dict)
    result = book.finish()

A book never raises for a problem of its trial: divergence and exceptions become a FAIL
result with the reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from harness.errors import describe, no_space, retryable, warn
from harness.files import atomic_torch_save
from harness.hyperparams import LR
from harness.sinks.base import Sink
from harness.types import INTERRUPTED, RETRYABLE, EpochMetrics, Training, TrialResult, TrialSpec

# Called after every epoch with its metrics; returns True to prune the trial.
EpochCallback = Callable[[dict[str, float]], bool]
Weights = dict[str, torch.Tensor]


class TrialBook:
    def __init__(self, spec: TrialSpec, training: Training, sinks: Sequence[Sink] = (),
                 checkpoint: Path | None = None, on_epoch: EpochCallback | None = None
                 ) -> None:
        self.spec, self.training, self.sinks = spec, training, sinks
        self.checkpoint, self.on_epoch = checkpoint, on_epoch
        self.history: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.best_state: Weights | None = None
        self.state: str | None = None  # None while it runs
        self.error = ""
        self.full: OSError | None = None  # a full disk: the trial runs again
        self.started = time.perf_counter()
        self.train_time = 0.0
        self.train_samples = 0
        self.steps = 0

    @property
    def running(self) -> bool:
        return self.state is None

    def start(self, model: nn.Module | None) -> None:
        for sink in self.sinks:
            sink.start(self.spec, model)

    def record(self, measured: EpochMetrics, weights: Callable[[], Weights]) -> None:
        """Book one epoch; `weights` gives the member's current weights when they are
        the best so far. Ends the trial when it diverged, was pruned or is done."""
        epoch = len(self.history) + 1
        self.train_time += measured.train_s
        self.train_samples += measured.seen
        for step, loss in measured.step_losses:
            for sink in self.sinks:
                sink.log({"train_loss_step": loss}, self.steps + step)
        self.steps += measured.steps
        metrics = {"epoch": epoch, "train_loss": measured.train_loss,
                   "val_loss": measured.val_loss, "val_acc": measured.val_acc,
                   "test_loss": measured.test_loss, "test_acc": measured.test_acc,
                   LR: self.spec.params[LR], "epoch_s": measured.epoch_s,
                   "elapsed_s": time.perf_counter() - self.started}
        self.history.append(metrics)
        for sink in self.sinks:
            sink.log(metrics, epoch)
        diverged = self._divergence(metrics)
        if diverged:
            self.state, self.error = "FAIL", diverged
            return
        if self._improved(metrics[self.training.metric]):
            self.best_epoch, self.best_state = epoch, weights()
        # The callback hears every epoch, the last too; but a trial that ran all its
        # epochs is complete: pruning it then would save nothing and hide a result.
        last = epoch >= self.training.epochs
        if self.on_epoch is not None and self.on_epoch(metrics) and not last:
            self.state = "PRUNED"
        elif last:
            self.state = "COMPLETE"

    def interrupt(self) -> None:
        """Ctrl-C: a FAIL marked interrupted, which runs again on resume."""
        self.state, self.error = "FAIL", INTERRUPTED

    def fail(self, err: Exception) -> None:
        """An exception: a fault of the machine (out of memory, a lost storage) is
        retryable, any other a fault of the trial."""
        self.state, self.error = "FAIL", retryable(err) or describe(err)
        self.full = no_space(err)

    def abandon(self, err: BaseException) -> TrialResult:
        """The device failed (a sticky CUDA error): a retryable FAIL, finished without
        touching the device: no checkpoint, and the sinks closed rather than told (their
        last steps, a prediction grid, would run on the device)."""
        self.state, self.error = "FAIL", retryable(err) or f"{RETRYABLE}: {describe(err)}"
        for sink in self.sinks:
            sink.close()
        return self._result()

    def finish(self) -> TrialResult:
        """Save the best weights, tell the sinks, and return the result."""
        if self.full is None and self.checkpoint is not None and self.best_state is not None:
            self.full = _save_checkpoint(self.best_state, self.checkpoint)
        if self.full is not None:
            self.state = "FAIL"
            self.error = (f"{RETRYABLE}: no space left on device writing "
                          f"{self.full.filename or 'a file'}")
        result = self._result()
        for sink in self.sinks:
            sink.finish(result)
        return result

    def _result(self) -> TrialResult:
        return TrialResult(
            spec=self.spec, state=self.state or "FAIL", history=self.history,
            error=self.error, duration_s=time.perf_counter() - self.started,
            samples_per_s=self.train_samples / self.train_time if self.train_time else 0.0,
            best_epoch=self.best_epoch, stop=self.full, metric=self.training.metric)

    def _divergence(self, metrics: dict[str, float]) -> str:
        """Why the epoch shows divergence, or '' when it does not."""
        for name in ("train_loss", "test_loss"):
            value = metrics[name]
            if not math.isfinite(value) or (name == "train_loss"
                                            and value > self.training.diverge_above):
                return (f"diverged: {name.replace('_', ' ')} is {value:.1e} "
                        f"at epoch {metrics['epoch']}")
        return ""

    def _improved(self, value: float) -> bool:
        if self.best_epoch is None:
            return True
        best = self.history[self.best_epoch - 1][self.training.metric]
        return value > best if self.training.maximize else value < best


def attempt_checkpoint(checkpoints: Path, spec: TrialSpec) -> Path:
    """Where an attempt keeps its best weights until its result is in the study; the
    recorder then makes it checkpoints/<run>.pt (`final_checkpoint`), or deletes it when
    the attempt is dropped, so <run>.pt always holds the weights of the row in
    trials.csv, whichever worker or directory ran the point."""
    return checkpoints / f".{spec.run}.t{spec.number}.pt"


def final_checkpoint(checkpoints: Path, spec: TrialSpec) -> Path:
    return checkpoints / f"{spec.run}.pt"


def _save_checkpoint(weights: Weights, path: Path) -> OSError | None:
    """Save the best weights. A full disk is returned: the trial runs again once there
    is space. Any other failure costs the checkpoint only, with one warning."""
    try:  # a population keeps them on its device until now (no sync per epoch)
        atomic_torch_save({name: t.cpu() for name, t in weights.items()}, path)
    except OSError as err:
        if no_space(err) is not None:
            return err
        warn(f"checkpoint {path} not saved ({err}); the trial's result is recorded "
             "without it")
    return None
