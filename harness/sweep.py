"""One sweep end to end: results directory, data, study, then claim -> run -> record.

    outcome = run_sweep(config, SweepOptions(out=Path("results/lenet-grid")))

Bad input (a config that does not match the results directory, a device or data set
that cannot be had, a storage that cannot be opened) raises ConfigError or DataError
before anything is written.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import sqlalchemy
import torch
import yaml
from optuna.trial import TrialState

from harness import workers
from harness.config import (
    Config,
    ConfigError,
    VisdomConfig,
    dump_config,
    identity,
    parse_config,
)
from harness.data import Dataset, load_dataset
from harness.files import atomic_write_csv, atomic_write_text, file_lock
from harness.locks import claim_lock
from harness.models import build_model, model_summary
from harness.owner import heartbeat
from harness.results import finished_trials, importance, write_results, write_tables
from harness.search import Search, make_pruner, make_sampler, total_points
from harness.sinks.base import Sink
from harness.sinks.progress import ProgressSink
from harness.sinks.tensorboard import TensorBoardSink, write_experiment
from harness.sinks.visdom import VisdomSink, parse_url
from harness.trial import TrialResult, resolve_device, run_trial

DRY_RUN_BATCHES = 2  # a dry run trains this many batches of one epoch per trial
EXAMPLES = 256  # test digits a trial's prediction grid picks from
HEARTBEAT_S = 10  # a worker's trial says it is alive this often (database storages)
GRACE_S = 60  # a trial silent for this long is failed by the other workers, and rerun
TABLES_EVERY_S = 5.0  # summary.md and tables/ after a trial, at most this often, and at the end
OWNED = ("config.yaml", "study.db", "trials.csv", "history.csv", "summary.md", "tables",
         "model_summary.csv", "tb", "checkpoints", "report.html", ".lock")


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


@dataclass
class SweepOutcome:
    out: Path
    trials: pd.DataFrame  # trials.csv as a table
    ran: int  # trials this process ran
    model: dict[str, int]  # params and mult_adds


def run_sweep(config: Config, options: SweepOptions) -> SweepOutcome:
    """Run or resume the sweep; raise SweepInterrupted on Ctrl-C after saving."""
    if options.dry_run:
        return _dry_run(config, options)
    out = options.out or Path("results") / config.name
    check_resumable(out, config, options.fresh)
    device = resolve_device(options.device or config.train.device)
    data = load_dataset(config.data, device)
    _writable(out)
    storage = open_storage(options.storage or f"sqlite:///{out / 'study.db'}", None)
    if options.fresh:
        _discard(out, storage, config.name)
    atomic_write_text(out / "config.yaml", dump_config(config))
    if options.workers == 1:
        return _run(config, out, storage, data, options)
    _open_study(config, storage)  # before the children, which would race to create it
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.engine.dispose()  # no database connection may cross a fork
    torch.set_num_threads(workers.threads_per_worker(options.workers))
    children = workers.spawn(config, dataclasses.replace(options, out=out),
                             options.workers - 1, device)
    try:
        outcome = _run(config, out, storage, data, options)
    except BaseException:
        workers.stop(children)
        raise
    finally:
        workers.join(children)
    study = _open_study(config, storage)
    outcome.trials = write_results(out, study.get_trials(deepcopy=False), outcome.model)
    write_tables(out, outcome.trials, config.objective.direction == "maximize", config.name,
                 importance(study))
    return outcome


def _run(config: Config, out: Path, storage: optuna.storages.BaseStorage, data: Dataset,
         options: SweepOptions, max_batches: int | None = None) -> SweepOutcome:
    """Claim, run and record trials until none is left."""
    model = _write_model_summary(config, out, data, options.progress and not options.child)
    study = _open_study(config, storage)
    search = Search(config, study, storage, max_batches)
    sinks = _Sinks(config, out, data, options, study)
    maximize = config.objective.direction == "maximize"
    ran, tables_due = 0, 0.0
    try:
        while True:
            with claim_lock(storage, config.name, out):
                claim = search.claim()
            if claim is None:
                break
            checkpoint = out / "checkpoints" / f"{claim.spec.run}.pt"
            with heartbeat(storage, claim.trial_id):
                result = run_trial(claim.spec, data, sinks.all, checkpoint,
                                   _pruning(claim.trial, config))
            _record(study, claim.trial, result, data)
            ran += 1
            table = write_results(out, study.get_trials(deepcopy=False), model)
            if time.monotonic() >= tables_due:
                write_tables(out, table, maximize, config.name)
                tables_due = time.monotonic() + TABLES_EVERY_S
            sinks.refresh(table, maximize)
            if result.interrupted:
                raise SweepInterrupted
    finally:
        sinks.close()
    table = write_results(out, study.get_trials(deepcopy=False), model)
    # With --workers the parent writes them once its children are done; a resume with
    # nothing to do keeps those it has.
    alone = options.workers == 1 and not options.child
    if alone and (ran or not (out / "summary.md").exists()):
        write_tables(out, table, maximize, config.name, importance(study))
    return SweepOutcome(out=out, trials=table, ran=ran, model=model)


class _Sinks:
    """The progress bar, TensorBoard and Visdom of one process's trials."""

    def __init__(self, config: Config, out: Path, data: Dataset, options: SweepOptions,
                 study: optuna.Study) -> None:
        def done() -> int:
            return len(finished_trials(study.get_trials(deepcopy=False)))

        self.progress = ProgressSink(total_points(config), done, lines=options.progress,
                                     bar=options.progress and not options.child)
        self.all: list[Sink] = [self.progress]
        if config.logging.tensorboard is not None:
            examples = (data.x_test[:EXAMPLES], data.y_test[:EXAMPLES])
            self.all.append(TensorBoardSink(out / "tb", config, examples))
        self.live = _visdom(config, options)
        if self.live is not None:
            self.all.append(self.live)

    def refresh(self, table: pd.DataFrame, maximize: bool) -> None:
        if self.live is not None:
            self.live.refresh(table, maximize)

    def close(self) -> None:
        self.progress.close()
        if self.live is not None:
            self.live.close()


def _visdom(config: Config, options: SweepOptions) -> VisdomSink | None:
    """The live view, from --visdom (a URL or off) or else logging.visdom."""
    if options.visdom == "off":
        return None
    settings = config.logging.visdom
    if options.visdom is not None:
        env = settings.env if settings else ""
        settings = dataclasses.replace(visdom_url(options.visdom), env=env)
    if settings is None:
        return None
    return VisdomSink(settings, config, total_points(config))


def _pruning(trial: optuna.Trial, config: Config) -> Any:
    metric = config.objective.metric

    def on_epoch(metrics: dict[str, float]) -> bool:
        trial.report(metrics[metric], int(metrics["epoch"]))
        return trial.should_prune()

    return on_epoch


def _record(study: optuna.Study, trial: optuna.Trial, result: TrialResult,
            data: Dataset) -> None:
    """Store the result in the study (the source of every results file)."""
    # One attribute, one database write; `error` apart, as resuming reads it.
    trial.set_user_attr("result", {
        "history": result.history, "hparams": result.spec.params,
        "duration_s": result.duration_s, "samples_per_s": result.samples_per_s,
        "best_epoch": result.best_epoch, "value": result.value,
        "device": str(data.device), "dataset": data.name})
    trial.set_user_attr("error", result.error)
    if result.state == "COMPLETE":
        study.tell(trial, result.value)
    else:
        study.tell(trial, state=TrialState[result.state])


def _writable(out: Path) -> None:
    """Create the results directory, or say why it cannot be."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out: cannot write results to {out} ({err.strerror}); choose "
                          "a directory you can write to") from None


def visdom_url(url: str) -> VisdomConfig:
    try:
        return parse_url(url)
    except ValueError as err:
        raise ConfigError(f"--visdom: {err}; or pass --visdom off") from None


def check_resumable(out: Path, config: Config, fresh: bool) -> None:
    """Refuse to mix two configs' results in one directory."""
    path = out / "config.yaml"
    if fresh or not path.exists():
        return
    try:
        old = identity(parse_config(yaml.safe_load(path.read_text())))
    except (ConfigError, yaml.YAMLError):
        old = {}
    new = identity(config)
    if old != new:
        where = _first_difference(old, new) or "config.yaml"
        raise ConfigError(
            f"{out} holds a sweep of another config ({where} differs); rerun with --fresh "
            "to discard it, or pass --out DIR for a new results directory")


def open_storage(url: str, out: Path | None = None) -> optuna.storages.BaseStorage:
    if url == ":memory:":
        return optuna.storages.InMemoryStorage()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    try:
        # Worker processes share SQLite: wait for its lock rather than fail after 5 s.
        if not url.startswith("sqlite"):  # shared across machines: heartbeats
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S)
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {
            "timeout": 120}})
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_wal)
        storage.engine.dispose()  # reconnect, so that every connection gets WAL
        return storage
    except Exception as err:  # SQLAlchemy's errors vary by database
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--storage: cannot open {url!r} ({reason}); give an Optuna "
                          "storage URL such as sqlite:///study.db or "
                          "postgresql://user:pass@host/db") from None


def _sqlite_wal(connection: Any, record: Any) -> None:
    """WAL: readers never block the writer, commits are cheaper; with synchronous=NORMAL
    a killed process loses nothing committed (only a power cut could lose the last
    commits, never corrupt the file)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _open_study(config: Config, storage: optuna.storages.BaseStorage) -> optuna.Study:
    n_existing = 0
    try:
        existing = optuna.load_study(study_name=config.name, storage=storage)
        n_existing = len(existing.trials)
    except KeyError:
        pass
    study = optuna.create_study(
        study_name=config.name, storage=storage, direction=config.objective.direction,
        sampler=make_sampler(config, n_existing), pruner=make_pruner(config),
        load_if_exists=True)
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", identity(config))
    elif stored != identity(config):
        where = _first_difference(stored, identity(config)) or "the config"
        raise ConfigError(f"study {config.name!r} in the storage was made by another "
                          f"config ({where} differs); rerun with --fresh to discard it")
    return study


def _write_model_summary(config: Config, out: Path, data: Dataset, show: bool
                         ) -> dict[str, int]:
    """model_summary.csv and, once per sweep, TensorBoard's experiment and graph."""
    model = build_model(config.model)
    table = model_summary(model)
    atomic_write_csv(out / "model_summary.csv", table)
    if show:
        print(f"{config.model}: {table['params'].sum():,} parameters, "
              f"{table['mult_adds'].sum():,} mult-adds per sample (model_summary.csv)",
              file=sys.stderr)
    if config.logging.tensorboard is not None:
        with file_lock(out / ".lock"):
            text = "```\n" + table.to_string(index=False) + "\n```"
            write_experiment(out / "tb", config, model.to(data.device), text)
    return {"params": int(table["params"].sum()), "mult_adds": int(table["mult_adds"].sum())}


def _discard(out: Path, storage: optuna.storages.BaseStorage, name: str) -> None:
    """--fresh: delete the study and the files a sweep writes, nothing else in `out`."""
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass
    for entry in OWNED:
        path = out / entry
        if entry == "study.db":
            continue  # the study inside was deleted; the open database file stays
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _dry_run(config: Config, options: SweepOptions) -> SweepOutcome:
    """Every point for DRY_RUN_BATCHES batches of one epoch, in an in-memory study:
    checks the whole path (data, model, optimizers, results files) in seconds. The
    files go to --out when given, else to a temporary directory that is removed."""
    if options.out is not None and (options.out / "config.yaml").exists():
        raise ConfigError(f"--out: {options.out} holds a sweep; a dry run needs a new or "
                          "empty directory")
    device = resolve_device(options.device or config.train.device)
    data = load_dataset(config.data, device)
    with _dry_out(options.out) as out:
        atomic_write_text(out / "config.yaml", dump_config(config))
        return _run(config, out, open_storage(":memory:", None), data,
                    dataclasses.replace(options, visdom="off"), DRY_RUN_BATCHES)


@contextmanager
def _dry_out(out: Path | None) -> Iterator[Path]:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        yield out
        return
    tmp = Path(tempfile.mkdtemp(prefix="harness-dry-run-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}"
                                         if path else str(key))
        return ""
    return path
