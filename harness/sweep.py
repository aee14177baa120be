"""One sweep end to end: results directory, data, study, then claim -> run -> record.

    outcome = run_sweep(config, SweepOptions(out=Path("results/lenet-grid")))

Bad input (a config that does not match the results directory, a device or data set
that cannot be had, a storage that cannot be opened) raises ConfigError or DataError
before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch

from harness import stop, timings
from harness.book import EpochCallback
from harness.config import Config, dump_config
from harness.data import Dataset, load_dataset
from harness.device import resolve_device, setup_device
from harness.errors import ConfigError
from harness.files import atomic_write_csv, atomic_write_text, file_lock
from harness.groups import Claimer, Lanes, check_setup, population_size, run_claims
from harness.label import make_label
from harness.models import build_model, example_input, model_summary, summary_totals
from harness.record import Recorder, pruning, settle_leftovers
from harness.reporting.bookkeeping import ResultFiles, Views, final_tables, rebuild, saying
from harness.sinks.factory import SweepSinks, live_view
from harness.sinks.tensorboard import setup_tensorboard, write_experiment
from harness.study import workers
from harness.study.claims import Claim, Search
from harness.study.locks import claim_lock
from harness.study.owner import Lease
from harness.study.search import make_search, total_points
from harness.study.storage import check_resumable, discard, open_storage, open_study, prepare_out
from harness.trainers.fused import fusable_key
from harness.types import Training, TrialResult

DRY_RUN_BATCHES = 2  # a dry run trains this many batches of one epoch per trial


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C: what was done is saved; the interrupted trial runs again on resume."""


@dataclass(frozen=True)
class SweepOptions:
    out: Path | None = None  # the results directory; None: results/<name>
    storage: str | None = None  # an Optuna storage URL; None: SQLite in out/study.db
    device: str | None = None  # overrides train.device
    fresh: bool = False  # discard earlier results in out and in the storage
    dry_run: bool = False  # every point for a few batches, in memory
    progress: bool = True  # progress bar and one line per finished trial on stderr
    visdom: str | None = None  # "off", or a server URL overriding logging.visdom
    workers: int = 1  # processes pulling points from the study (this one included)
    child: bool = False  # a --workers child: no bar (only trial lines), no final tables
    population: int | str | None = None  # overrides train.population: auto, off or N
    # A --workers child's shared count (a multiprocessing.Value) of the trials the
    # children recorded, added to as each is recorded: a child killed later still counts.
    counter: Any = None


@dataclass
class SweepOutcome:
    out: Path
    trials: pd.DataFrame  # trials.csv as a table
    ran: int  # trials this process ran
    model: dict[str, int]  # params and mult_adds
    visdom: str = ""  # the live view's URL, when it ran


def run_sweep(config: Config, options: SweepOptions) -> SweepOutcome:
    """Run or resume the sweep; raise SweepInterrupted on Ctrl-C after saving."""
    if options.dry_run:
        return _dry_run(config, options)
    out = options.out or Path("results") / config.name
    check_resumable(out, config, options.fresh, options.storage)
    device = resolve_device(options.device or config.train.device)
    setup_device(device)
    data = load_dataset(config.data, device)
    prepare_out(out)
    with open_storage(options.storage or f"sqlite:///{out / 'study.db'}") as storage:
        if options.fresh:
            discard(out, storage, config.name)
        open_study(config, storage)  # the last check: a study another config made
        atomic_write_text(out / "config.yaml", dump_config(config))
        make_label(out, config.name)
        if options.workers == 1:
            return _run(config, out, storage, data, options)
        return _run_with_workers(config, out, storage, data, device, options)


def _run_with_workers(config: Config, out: Path, storage: optuna.storages.BaseStorage,
                      data: Dataset, device: torch.device, options: SweepOptions
                      ) -> SweepOutcome:
    """This process and options.workers - 1 children claim trials from one study."""
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.engine.dispose()  # no database connection may cross a fork
    torch.set_num_threads(workers.threads_per_worker(options.workers))
    _check_stop()  # no children that would only stop again
    children = workers.spawn(run_sweep, config, dataclasses.replace(options, out=out),
                             options.workers - 1, device)
    show = options.progress
    try:
        outcome = _run(config, out, storage, data, options)
    except BaseException:
        children.tell_stop()  # at once: they claim nothing new
        children.wait()
        study = open_study(config, storage)  # the children's interrupted trials too
        model = summary_totals(model_summary(build_model(config.model),
                                             example_input(config.model)))
        rebuild(ResultFiles(out, model), study, show)
        raise
    with saying(f"waiting for the other {options.workers - 1} workers' trials", show):
        children.wait()  # every trial still running, however long it takes
    study = open_study(config, storage)
    outcome.trials = rebuild(ResultFiles(out, outcome.model), study, show)
    _check_stop()  # stopped while waiting: the children saved their trials
    final_tables(out, outcome.trials, study, config.name, config.objective.maximize, show,
                 importance=True)
    outcome.ran += children.ran.value
    return outcome


def _check_stop() -> None:
    if stop.requested():
        raise SweepInterrupted


def _run(config: Config, out: Path, storage: optuna.storages.BaseStorage, data: Dataset,
         options: SweepOptions, max_batches: int | None = None) -> SweepOutcome:
    """Claim, run and record trials until none is left."""
    timings.install(options.child)  # HARNESS_PROFILE: where the time goes
    if config.logging.tensorboard is not None:
        setup_tensorboard()
    model = _write_model_summary(config, out, data, options.progress and not options.child)
    study = open_study(config, storage)
    search = make_search(config, study, storage,
                         lambda: claim_lock(storage, config.name, out))
    training = training_settings(config, max_batches)
    books = ResultFiles(out, model)
    rebuild(books, study, show=False)  # agrees with the study, whatever a crash left
    settle_leftovers(out, study.get_trials(deepcopy=False))  # and so do the checkpoints
    say = options.progress and not options.child
    sinks = SweepSinks(config, out, data, live_view(config, options.visdom, out, say),
                       books.count_done, total_points(config), lines=options.progress,
                       bar=say)
    recorder = Recorder(study, storage, data, books, sinks.progress, options.progress)
    maximize = config.objective.maximize
    views = Views(out, books, study, config.name, maximize, sinks.refresh)
    show = options.progress and not options.child
    size = population_size(options.population or config.train.population, data.device)
    timings.set_value("population", size)
    check_setup(search.default_spec(), training, data, size)
    tally = _Tally(recorder, views, options.counter)

    def prune(trial: optuna.Trial, lease: Lease) -> EpochCallback:
        return pruning(trial, config.objective.metric, lease)

    try:
        _run_trials(search, size, show, tally, lambda: (
            training, data, storage, sinks.for_trial, out / "checkpoints", prune))
        sinks.progress.close()  # the bar goes before the ending says anything
        table = rebuild(books, study, show)
        sinks.refresh(table, maximize)
    finally:
        sinks.close()
    # With --workers the parent writes them once its children are done; a resume with
    # nothing to do keeps those it has.
    alone = options.workers == 1 and not options.child
    if alone and (tally.ran or not (out / "summary.md").exists()):
        # a dry run checks the path; it measures nothing
        final_tables(out, table, study, config.name, maximize, show,
                     importance=max_batches is None)
    return SweepOutcome(out=out, trials=table, ran=tally.ran, model=model,
                        visdom=sinks.live_url())


def _run_trials(search: Search, size: int, show: bool, tally: _Tally,
                setting: Callable[[], tuple[Any, ...]]) -> None:
    """One trial at a time, or populations whose freed places are filled again; each
    result recorded as it comes. `setting`: what running a trial takes (groups.py)."""
    timings.mark("trials_start")
    try:
        _run_each(search, size, show, tally, setting)
    finally:
        timings.mark("trials_end")


def _run_each(search: Search, size: int, show: bool, tally: _Tally,
              setting: Callable[[], tuple[Any, ...]]) -> None:
    if size == 1:
        for claims in _batches(search, size, show):
            for claim, result, lease in run_claims(claims, *setting()):
                tally.record(claim, result, lease)
            tally.raise_stops()
        return
    lanes = Lanes(size, *setting(), _claimer(search, show))
    try:
        lanes.run(tally.record)
    except KeyboardInterrupt:  # every trial that ran is recorded
        tally.interrupted = True
    tally.raise_stops()


def _batches(search: Search, size: int, show: bool) -> Iterator[list[Claim]]:
    """Claims, up to `size` that can train together, until none is left; then the
    machine faults of this run, once more."""
    retried = False
    while True:
        _check_stop()  # Ctrl-C or SIGTERM between two batches, or at start-up
        claims = search.claim(size, fusable_key, show)
        if claims:
            yield claims
        elif retried:
            return
        else:
            search.retry_now()
            retried = True


def _claimer(search: Search, show: bool) -> Claimer:
    """The populations' claims (harness.groups.Claimer). While nothing trains here
    (`idle`): a stop requested ends the sweep, trials of other processes are waited
    for, and when nothing is left, the machine faults of this run run once more before
    the end."""
    retried = False

    def claim(k: int, like: Hashable | None, idle: bool) -> list[Claim]:
        nonlocal retried
        if idle:
            _check_stop()
        claims = search.claim(k, fusable_key, show, like=like, wait=idle)
        if not claims and idle and not retried:
            search.retry_now()
            retried = True
            claims = search.claim(k, fusable_key, show)
        return claims

    return claim


@dataclass
class _Tally:
    """Records each result as it comes (on the population's bookkeeping thread, or
    here), counts them, and notes what stops the sweep."""

    recorder: Recorder
    views: Views
    counter: Any  # a --workers child's shared count, or None
    ran: int = 0
    interrupted: bool = False
    full: OSError | None = None

    def record(self, claim: Claim, result: TrialResult, lease: Lease) -> None:
        recorded = self.recorder.record(claim, result, lease)
        self.ran += recorded
        if self.counter is not None and recorded:
            with self.counter.get_lock():
                self.counter.value += recorded
        self.interrupted |= result.interrupted
        self.full = self.full or result.stop
        self.views.after_trial()

    def raise_stops(self) -> None:
        """Once what ran is recorded: stop the sweep if Ctrl-C came or a disk filled up."""
        if self.interrupted:
            self.views.after_trial(force=True)
            raise SweepInterrupted
        if self.full is not None:
            raise self.full


def training_settings(config: Config, max_batches: int | None = None) -> Training:
    """How every trial of the sweep trains; a dry run trains max_batches of one epoch."""
    tensorboard = config.logging.tensorboard
    return Training(
        epochs=1 if max_batches else config.train.epochs, model=config.model,
        eval_batch_size=config.train.eval_batch_size, metric=config.objective.metric,
        maximize=config.objective.maximize, max_batches=max_batches,
        log_every=tensorboard.log_every if tensorboard else 0, amp=config.train.amp,
        channels_last=config.train.channels_last,
        # A dry run's mean of two batches is the start of training, where a loss far
        # above the epoch's mean is common: only a non-finite loss is divergence there.
        diverge_above=math.inf if max_batches else config.train.diverge_above)


def _write_model_summary(config: Config, out: Path, data: Dataset, show: bool
                         ) -> dict[str, int]:
    """model_summary.csv and, once per sweep, TensorBoard's experiment and graph."""
    model = build_model(config.model)
    table = model_summary(model, example_input(config.model))
    atomic_write_csv(out / "model_summary.csv", table)
    if show:
        print(f"{config.model}: {table['params'].sum():,} parameters, "
              f"{table['mult_adds'].sum():,} mult-adds per sample (model_summary.csv)",
              file=sys.stderr)
    if config.logging.tensorboard is not None:
        with file_lock(out / ".lock"):
            text = "```\n" + table.to_string(index=False) + "\n```"
            write_experiment(out / "tb", config, model.to(data.device), text)
    return summary_totals(table)


def _dry_run(config: Config, options: SweepOptions) -> SweepOutcome:
    """Every point for DRY_RUN_BATCHES batches of one epoch, in an in-memory study:
    checks the whole path (data, model, optimizers, results files) in seconds. The
    files go to --out when given, else to a temporary directory that is removed."""
    if options.out is not None and (options.out / "config.yaml").exists():
        raise ConfigError(f"--out: {options.out} holds a sweep; a dry run needs a new or "
                          "empty directory")
    if options.out is not None:
        prepare_out(options.out)  # the same one line as a sweep for an unwritable --out
    device = resolve_device(options.device or config.train.device)
    setup_device(device)
    data = load_dataset(config.data, device)
    with _dry_out(options.out) as out, open_storage(":memory:") as storage:
        atomic_write_text(out / "config.yaml", dump_config(config))
        make_label(out, config.name)
        return _run(config, out, storage, data, dataclasses.replace(options, visdom="off"),
                    DRY_RUN_BATCHES)


@contextmanager
def _dry_out(out: Path | None) -> Iterator[Path]:
    if out is not None:
        yield out
        return
    tmp = Path(tempfile.mkdtemp(prefix="harness-dry-run-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
