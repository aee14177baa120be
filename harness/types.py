"""What flows between the modules: a trial's point, how trials train, what an epoch
measured, and a trial's result. A leaf: it imports nothing of harness, so every module
can import it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DIVERGE_ABOVE = 100.0  # default bound: a mean epoch train loss above it is divergence
INTERRUPTED = "interrupted"
RETRYABLE = "retryable"  # a fault of the machine (a full disk), not of the trial: it runs again
IMAGE_SHAPE = (1, 28, 28)  # one MNIST digit: channels, height, width


@dataclass(frozen=True)
class TrialSpec:
    """What to train: one point of the search, as the study's trial `number`."""

    number: int  # Optuna's trial number
    run: str  # readable, sortable run name, e.g. 0007-adam-lr0.01-bs64-s0
    params: dict[str, Any]  # every hyperparameter of the table, searched or not
    seed: int  # seeds the weights and the batch order


@dataclass(frozen=True)
class Training:
    """How every trial of a sweep trains and which epoch is its best."""

    epochs: int
    model: str = "lenet"
    eval_batch_size: int = 1000
    metric: str = "val_acc"  # the objective: its best epoch is the trial's best
    maximize: bool = True
    max_batches: int | None = None  # dry runs: train only this many batches per epoch
    log_every: int = 0  # also log the training loss every N steps (0: per epoch only)
    amp: bool = False  # bf16 autocast
    channels_last: bool = False  # NHWC layout for model and data
    diverge_above: float = DIVERGE_ABOVE  # a higher mean train loss is divergence


@dataclass(frozen=True)
class EpochMetrics:
    """What a trainer measured for one member in one epoch."""

    train_loss: float  # mean over the epoch's samples
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    seen: int  # training samples
    steps: int  # optimizer steps
    train_s: float  # seconds of training (evaluation apart)
    epoch_s: float  # seconds of the whole epoch, evaluation included
    step_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)


@dataclass(frozen=True)
class TrialResult:
    spec: TrialSpec
    state: str  # COMPLETE | FAIL | PRUNED (Optuna's names)
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    error: str = ""  # why it failed: 'diverged: ...', an exception, 'interrupted'
    duration_s: float = 0.0  # wall time of the whole trial
    samples_per_s: float = 0.0  # training samples per second of training time
    best_epoch: int | None = None  # epoch (1-based) with the best objective
    stop: OSError | None = None  # a full disk: the sweep records this result, then stops
    metric: str = "val_acc"  # the objective its best epoch was chosen on

    @property
    def value(self) -> float | None:
        """The objective at the best epoch."""
        return self.best.get(self.metric)

    @property
    def best(self) -> dict[str, float]:
        """The metrics of the best epoch (the checkpoint's); empty when there is none."""
        return {} if self.best_epoch is None else self.history[self.best_epoch - 1]

    @property
    def interrupted(self) -> bool:
        return self.error == INTERRUPTED
