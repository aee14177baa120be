"""Ctrl-C and SIGTERM as a request to stop, honoured at safe points.

An exception raised from a signal handler lands in whatever Python runs at that moment,
including callbacks that swallow it (a weakref callback prints "Exception ignored" and
the sweep goes on), and a signal that arrives before a handler is installed ends the
process with no message. So the handler only sets a flag, installed as the first thing
`python -m harness` does, and the sweep checks it where stopping loses nothing: between
batches, epochs and trials, and between the steps of its start-up. A second Ctrl-C
stops at once, for a user who will not wait for the batch to end.

Commands other than a sweep have no safe points: `immediate()` makes both signals raise
KeyboardInterrupt as Python's own Ctrl-C does. Imports nothing heavy: it runs before
torch is loaded.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

_requested = False
_immediate = False
_interrupts = 0  # Ctrl-Cs so far: the second one stops at once
_children: set[int] = set()  # worker processes told at once when this one is asked


class Stopped(KeyboardInterrupt):
    """Raised at a safe point once a stop was requested; a KeyboardInterrupt, so every
    path that handles Ctrl-C handles it."""


def install() -> None:
    """From now on SIGINT and SIGTERM set the flag (this process and, with fork, its
    children; a spawned child calls this itself)."""
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def immediate() -> None:
    """Signals raise KeyboardInterrupt at once (commands with nothing to save); one that
    came already is raised now."""
    global _immediate
    _immediate = True
    check()


def requested() -> bool:
    """Whether Ctrl-C or SIGTERM came: cheap enough to ask between batches."""
    return _requested


def check() -> None:
    """A safe point: raise Stopped if a stop was requested."""
    if _requested:
        raise Stopped


def request() -> None:
    """Ask this process to stop at its next safe point (what the handler does)."""
    global _requested
    _requested = True


def forward(pids: list[int]) -> None:
    """Pass a stop on to these child processes from the handler itself, so they claim
    nothing new even while this process finishes its batch (SIGTERM to the parent alone)."""
    _children.update(pids)


def forget(pids: list[int]) -> None:
    """The children have exited: their ids may be reused."""
    _children.difference_update(pids)


def reset() -> None:
    """Forget a request: a process that goes on after handling one (tests)."""
    global _requested, _immediate, _interrupts
    _requested = _immediate = False
    _interrupts = 0


def _handle(signum: int, frame: FrameType | None) -> None:
    global _interrupts
    request()
    for pid in list(_children):
        try:
            os.kill(pid, signal.SIGTERM)  # only sets their flag: never hurries them
        except OSError:
            pass  # already gone
    _interrupts += signum == signal.SIGINT
    if _immediate or _interrupts > 1:
        raise KeyboardInterrupt
