"""Where a sweep's time goes, when the environment variable HARNESS_PROFILE names a file:

    HARNESS_PROFILE=/tmp/profile.json python -m harness sweep experiments/grid.yaml

Each named region's own time (wall, without the regions it calls: TensorBoard's
histograms are not also counted as its scalars), how often it ran, a few counters (the
population's fused steps and its members' steps, for its occupancy) and moments (when
the trials start and end: the first claim, the last result recorded), written as JSON
when the process exits. Time on
the main thread is the training path's; time on other threads (a population's
bookkeeper, which finishes and records members while the next epoch trains) is counted
apart, its regions named "off the path: ...". Unset, nothing is wrapped and nothing
costs anything.

The regions are functions wrapped by name at the sweep's start (`install`), so that the
code they time carries no timing calls and this list is the one place that says what is
measured. A profiler such as cProfile would cost more than most of what it measures
here (the bookkeeping is many small Python calls), and it sees no result of a process
that leaves without Python's teardown (harness.__main__).
"""

from __future__ import annotations

import atexit
import functools
import importlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

ENV = "HARNESS_PROFILE"

# region -> the functions whose own time is its: (module, attribute path)
REGIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "fused compute": (("harness.trainers.fused", "FusedTrainer.epoch"),
                      ("harness.trainers.single", "SingleTrainer.epoch")),
    "population regroup": (("harness.trainers.fused", "FusedTrainer._regroup"),
                           ("harness.trainers.fused", "FusedTrainer.stop")),
    "best weights copied": (("harness.trainers.fused", "FusedTrainer.weights"),
                            ("harness.trainers.single", "SingleTrainer.weights")),
    "tensorboard scalars": (("harness.sinks.tensorboard", "TensorBoardSink.log"),),
    "tensorboard histograms": (("harness.sinks.tensorboard", "model_histograms"),
                               ("harness.sinks.tensorboard", "histograms")),
    "tensorboard images": (("harness.sinks.tensorboard", "prediction_grid"),
                           ("harness.sinks.tensorboard", "png")),
    "tensorboard runs opened and closed": (("harness.sinks.tensorboard", "TensorBoardSink.start"),
                                           ("harness.sinks.tensorboard",
                                            "TensorBoardSink.finish")),
    "checkpoints": (("harness.book", "_save_checkpoint"),
                    ("harness.record", "Recorder._settle_files")),
    "pruner (report, should_prune)": (("optuna.trial._trial", "Trial.report"),
                                      ("optuna.trial._trial", "Trial.should_prune")),
    "study writes": (("harness.record", "Recorder.store"),),
    "csv appends": (("harness.reporting.bookkeeping", "ResultFiles.append"),),
    "progress": (("harness.sinks.progress", "ProgressSink.recorded"),
                 ("harness.sinks.progress", "ProgressSink.log"),
                 ("harness.sinks.progress", "ProgressSink.start")),
    "claims and optuna": (("harness.study.claims", "Search.next_points"),),
    "tables and rebuilds while running": (("harness.reporting.bookkeeping",
                                           "Views.after_trial"),),
    "finished members (the rest)": (("harness.bookkeeper", "Bookkeeper._settle"),),
}


class _Profile:
    """Own time per region: entering a region pauses the one it was called from (on
    the same thread)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.started = time.time()
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.counters: dict[str, float] = {}
        self.moments: dict[str, float] = {}
        self.stacks: dict[int, list[list[Any]]] = {}  # per thread: [region, since]
        self.main = threading.main_thread().ident
        self.lock = threading.Lock()

    def enter(self, region: str) -> None:
        now = time.perf_counter()
        thread = threading.get_ident()
        if thread != self.main:
            region = f"off the path: {region}"
        stack = self.stacks.setdefault(thread, [])
        if stack:
            self._add(stack[-1][0], now - stack[-1][1])
        stack.append([region, now])
        with self.lock:
            self.calls[region] = self.calls.get(region, 0) + 1

    def leave(self) -> None:
        now = time.perf_counter()
        stack = self.stacks[threading.get_ident()]
        region, since = stack.pop()
        self._add(region, now - since)
        if stack:
            stack[-1][1] = now

    def _add(self, region: str, seconds: float) -> None:
        with self.lock:
            self.seconds[region] = self.seconds.get(region, 0.0) + seconds

    def write(self) -> None:
        with self.lock:
            report = {"pid": os.getpid(), "started": self.started, "ended": time.time(),
                      "seconds": dict(self.seconds), "calls": dict(self.calls),
                      "counters": dict(self.counters), "moments": dict(self.moments)}
        with open(self.path, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)


_profile: _Profile | None = None


def install(child: bool = False) -> None:
    """Wrap the regions, once per process, when HARNESS_PROFILE is set; the report is
    written at exit (a --workers child's to PATH.<pid>)."""
    global _profile
    path = os.environ.get(ENV)
    if not path or _profile is not None:
        return
    _profile = _Profile(f"{path}.{os.getpid()}" if child else path)
    for region, targets in REGIONS.items():
        for module, attribute in targets:
            _wrap(region, module, attribute)
    atexit.register(_profile.write)


def count(name: str, value: float) -> None:
    """Add to a counter (a no-op unless profiling)."""
    if _profile is not None:
        _profile.counters[name] = _profile.counters.get(name, 0.0) + value


def mark(name: str, first: bool = False) -> None:
    """Note the moment of `name` (its first time only when `first`)."""
    if _profile is not None and not (first and name in _profile.moments):
        _profile.moments[name] = time.time()


def set_value(name: str, value: float) -> None:
    """A counter that is set, not added to (the population size)."""
    if _profile is not None:
        _profile.counters[name] = value


def occupancy(counters: dict[str, float]) -> float:
    """Mean live members / population size over the fused steps (nan: none ran). A
    sweep's populations (one per fusable key) share its places: each fused step counts
    the members of all of them, so a grid of four optimizers can fill its K places."""
    steps, size = counters.get("fused_steps", 0.0), counters.get("population", 0.0)
    if not steps or not size:
        return math.nan
    return counters.get("member_steps", 0.0) / (steps * size)


def _wrap(region: str, module_name: str, attribute: str) -> None:
    """Replace module.attribute (a function, or a class's method) by a timed one."""
    try:
        owner: Any = importlib.import_module(module_name)
    except ImportError:  # not in this version of the code
        return
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    real = getattr(owner, name, None) if owner is not None else None
    if real is None or getattr(real, "timed_region", None):
        return  # not in this version of the code, or wrapped already
    setattr(owner, name, _timed(region, real))


def _timed(region: str, real: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(real)
    def timed(*args: Any, **kwargs: Any) -> Any:
        profile = _profile
        if profile is None:
            return real(*args, **kwargs)
        profile.enter(region)
        try:
            return real(*args, **kwargs)
        finally:
            profile.leave()

    timed.timed_region = region  # type: ignore[attr-defined]
    return timed
