"""Run trials: trial books fed by a trainer, epoch by epoch, until every book is done.

A trial never raises for a problem of its own: divergence and exceptions become a FAIL
result with the reason, so the sweep goes on. Ctrl-C becomes a FAIL result marked
`interrupted`, which the caller records before it stops. A sticky CUDA error is no
problem of a trial's: every trial after would fail alike, so it raises MachineFault,
which carries the results (retryable) for the caller to record before it stops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from harness.book import EpochCallback, TrialBook, Weights
from harness.data import Dataset
from harness.errors import MachineFault, sticky_cuda
from harness.sinks.base import Sink
from harness.trainers.single import SingleTrainer
from harness.types import EpochMetrics, Training, TrialResult, TrialSpec


class Trainer(Protocol):
    """Computes for its members, named by their specs; knows no book, sink or study."""

    def module(self, member: TrialSpec) -> nn.Module | None: ...

    def epoch(self, members: Sequence[TrialSpec]) -> list[EpochMetrics]: ...

    def weights(self, member: TrialSpec) -> Weights: ...

    def stop(self, members: Sequence[TrialSpec]) -> None: ...


def run_trial(
    spec: TrialSpec,
    training: Training,
    data: Dataset,
    sinks: Sequence[Sink] = (),
    checkpoint: Path | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrialResult:
    """Train and evaluate one configuration; the best weights go to `checkpoint`."""
    book = TrialBook(spec, training, sinks, checkpoint, on_epoch)
    [result] = run_books([book], lambda: SingleTrainer(spec, training, data), data.device)
    return result


def run_books(books: Sequence[TrialBook], make_trainer: Callable[[], Trainer],
              device: torch.device) -> list[TrialResult]:
    """Advance every running book one epoch at a time with one trainer."""
    try:
        trainer = make_trainer()
        for book in books:
            book.start(trainer.module(book.spec))
        while running := [book for book in books if book.running]:
            measured = trainer.epoch([book.spec for book in running])
            for book, metrics in zip(running, measured, strict=True):
                try:
                    book.record(metrics, lambda spec=book.spec: trainer.weights(spec))
                except Exception as err:  # its own bookkeeping (a pruner, a lost lease)
                    book.fail(err)  # ends this member only; the others go on
            trainer.stop([book.spec for book in running if not book.running])
    except KeyboardInterrupt:
        for book in books:
            if book.running:
                book.interrupt()
    except Exception as err:  # a failing trial is a result, not the end of the sweep
        if sticky_cuda(err) is not None:  # ... unless the device can compute no more
            raise MachineFault(err, [book.abandon(err) for book in books]) from err
        for book in books:
            if book.running:
                book.fail(err)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # after an out-of-memory error, for the next trial
    return [book.finish() for book in books]
