"""One guard around each sink: its first error is one warning line and the sink is off
for the rest of the sweep, so that a sink's trouble (TensorBoard on a full disk, a lost
server) never costs a trial's result. Sinks made per trial share one `Switch` per kind:
the first error of any of them turns the whole kind off, with one warning."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from harness.errors import describe, warn

if TYPE_CHECKING:
    from torch import nn

    from harness.sinks.base import Sink
    from harness.types import TrialResult, TrialSpec


class Switch:
    """On until the first error of a sink it guards."""

    def __init__(self) -> None:
        self.on = True


class Guarded:
    def __init__(self, sink: Sink, switch: Switch | None = None, name: str = "") -> None:
        self.sink = sink
        self.name = name or type(sink).__name__.removesuffix("Sink").lower() or "a sink"
        self.switch = switch or Switch()
        self.closed = False

    @property
    def on(self) -> bool:
        return self.switch.on

    def start(self, spec: TrialSpec, model: nn.Module) -> None:
        self._call("start", spec, model)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._call("log", metrics, step)

    def finish(self, result: TrialResult) -> None:
        self._call("finish", result)

    def close(self) -> None:
        self._call("close")

    def _call(self, method: str, *args: Any) -> None:
        if not self.on:
            self._close()  # another trial's sink of this kind failed
            return
        try:
            getattr(self.sink, method)(*args)
        except Exception as err:  # whatever a sink raises, the trial goes on without it
            self.switch.on = False
            warn(f"{self.name} failed in {method} ({describe(err)}); it is off for the "
                 "rest of the sweep, the trials go on")
            self._close()

    def _close(self) -> None:
        """Let go of its files, if it can, once."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                getattr(self.sink, "close", lambda: None)()


def guarded(sinks: list[Sink]) -> list[Sink]:
    """Each sink behind its own guard."""
    return [sink if isinstance(sink, Guarded) else Guarded(sink) for sink in sinks]
