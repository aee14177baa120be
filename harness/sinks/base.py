"""The sink interface: `start` a trial, `log` its metrics, `finish` it, `close` it
(let go of its files and connections, also after an error).

`log` gets the epoch's metrics (train_loss, val_loss, val_acc, test_loss, test_acc, lr,
epoch_s, elapsed_s, epoch) with step = the epoch, and, when the trial samples step losses,
{"train_loss_step": loss} with step = the global training step. A sink takes the keys
it knows. A trial's book (`book.py`) calls every sink the same way; a sink must not
raise for its own trouble (a lost server, a full disk) but report it once and carry on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from torch import nn

    from harness.types import TrialResult, TrialSpec


class Sink(Protocol):
    def start(self, spec: TrialSpec, model: nn.Module) -> None: ...

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def finish(self, result: TrialResult) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """Keeps everything in lists: for tests and for code that wants the raw calls."""

    def __init__(self) -> None:
        self.started: list[TrialSpec] = []
        self.logged: list[tuple[dict[str, float], int]] = []
        self.finished: list[TrialResult] = []
        self.closed = False

    def start(self, spec: TrialSpec, model: nn.Module) -> None:
        self.started.append(spec)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((dict(metrics), step))

    def finish(self, result: TrialResult) -> None:
        self.finished.append(result)

    def close(self) -> None:
        self.closed = True
