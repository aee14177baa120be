"""The sink interface: `start` a trial, `log` its metrics per epoch, `finish` it.

`trial.py` calls every sink the same way; a sink must not raise for its own trouble
(a lost server, a full disk) but report it once and carry on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from harness.trial import TrialResult, TrialSpec


class Sink(Protocol):
    def start(self, spec: TrialSpec) -> None: ...

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def finish(self, result: TrialResult) -> None: ...


class MemorySink:
    """Keeps everything in lists: for tests and for code that wants the raw calls."""

    def __init__(self) -> None:
        self.started: list[TrialSpec] = []
        self.logged: list[tuple[dict[str, float], int]] = []
        self.finished: list[TrialResult] = []

    def start(self, spec: TrialSpec) -> None:
        self.started.append(spec)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((dict(metrics), step))

    def finish(self, result: TrialResult) -> None:
        self.finished.append(result)
