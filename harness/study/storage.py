"""Where a sweep keeps its state: the results directory and the Optuna storage.

Opening a storage (SQLite in WAL mode by default, any Optuna URL with --storage), the
study (created once, refused when another config made it), and --fresh. A config may
continue a sweep when it only adds seeds to search.seeds or raises search.n_trials: the
points it adds run, and those already run are kept.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import yaml

from harness.config import Config, identity
from harness.errors import ConfigError, first_line
from harness.parse import parse_config
from harness.study.locks import database_lock, sqlite_file
from harness.study.sampling import make_pruner, make_sampler

# Database storages shared by machines: a worker's trial says it is alive every
# HEARTBEAT_S; one silent for GRACE_S is failed by the other workers and run again, and
# its own worker stops it one heartbeat before that (owner.Lease). Every machine of a
# study must use the same values; the environment overrides them (tests, or machines
# that pause longer than a minute).
HEARTBEAT_S = 10
GRACE_S = 60
OWNED = ("config.yaml", "study.db", "trials.csv", "history.csv", "summary.md", "tables",
         "model_summary.csv", "tb", "checkpoints", "report.html", ".lock", "sweep.txt")
SCHEMA_TRIES = 4  # how often to open a new shared database whose tables others are making
# What a resumed config may change (a race's seeds only at their end).
GROWS = "only search.seeds (a race's: at the end) and search.n_trials may grow"


def prepare_out(out: Path) -> None:
    """Create the results directory, or say why it cannot be."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A probe of its own, without a name: workers check one directory at once.
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ConfigError(f"--out: cannot write results to {out} ({err.strerror}); choose "
                          "a directory you can write to") from None


def shared(url: str | None) -> bool:
    """A storage other than SQLite: several machines may hold trials of its studies."""
    return url is not None and url != ":memory:" and not url.startswith("sqlite")


def check_fresh(named: str | None, url: str | None, study: str) -> None:
    """--fresh deletes the study. In a shared storage that is every machine's trials, so
    the command must name the study (--fresh=NAME) rather than just say --fresh."""
    if named is None or (not named and not shared(url)):
        return
    if not named:
        raise ConfigError(f"--fresh: the storage {url!r} is shared, and --fresh deletes "
                          f"study {study!r} with every machine's trials in it; to do that, "
                          f"name it: --fresh={study}")
    if named != study:
        raise ConfigError(f"--fresh={named}: this config's study is {study!r}; name it "
                          f"(--fresh={study}) to delete it and start over")


def check_resumable(out: Path, config: Config, fresh: bool, url: str | None = None) -> None:
    """Refuse to mix two configs' results in one directory, or two studies' (the files
    are rebuilt from the sweep's storage, which must be the one that wrote them)."""
    path = out / "config.yaml"
    if shared(url) and (out / "study.db").exists():
        raise ConfigError(f"--out: {out} holds a sweep with its own study.db; a sweep on "
                          "the shared --storage writes its results from that storage: "
                          "pass another --out")
    if fresh or not path.exists():
        return
    if url is None and not (out / "study.db").exists() and (out / "trials.csv").exists():
        raise ConfigError(f"--out: {out} holds the results of a sweep whose study is "
                          "elsewhere (no study.db beside them): pass its --storage, or "
                          "another --out")
    try:
        old = identity(parse_config(yaml.safe_load(path.read_text())))
    except (ConfigError, yaml.YAMLError):
        old = {}
    change = refused_change(old, identity(config))
    if change:
        fix = "pass --out DIR" if shared(url) else "rerun with --fresh to discard it, or " \
                                                   "pass --out DIR"
        raise ConfigError(f"{out} holds a sweep of another config ({change}); {GROWS}: "
                          f"{fix} for a new results directory")


def refused_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """'' when the config `new` continues the sweep `old` made: the same, or with seeds
    added to search.seeds or a larger search.n_trials. Else the first field that
    differs, with its value in the sweep and in the new config."""
    grown = copy.deepcopy(old)
    before, after = grown.get("search"), new.get("search", {})
    if isinstance(before, dict):
        old_seeds, new_seeds = before.get("seeds", []), after.get("seeds", [])
        # A race is replayed seed by seed in their order: new seeds go at the end.
        grows = (new_seeds[:len(old_seeds)] == old_seeds if before.get("race")
                 else set(old_seeds) <= set(new_seeds))
        if grows:
            before["seeds"] = new_seeds
        if before.get("n_trials", math.inf) <= after.get("n_trials", 0):
            before["n_trials"] = after.get("n_trials")
    if grown == new:
        return ""
    where = _first_difference(grown, new)
    if not where:
        return "the config differs"
    return f"{where} differs: {_value_at(old, where)} in the sweep, {_value_at(new, where)} now"


@contextlib.contextmanager
def open_storage(url: str) -> Iterator[optuna.storages.BaseStorage]:
    """An Optuna storage from a URL (":memory:" for dry runs), closed on the way out:
    SQLite then folds its write-ahead log back into study.db, so that the results
    directory holds one self-contained file."""
    storage = _connect(url)
    try:
        yield storage
    finally:
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.remove_session()
            storage.engine.dispose()


def _connect(url: str) -> optuna.storages.BaseStorage:
    if url == ":memory:":
        return optuna.storages.InMemoryStorage()
    database = sqlite_file(url)
    interval, grace = heartbeat_settings()
    try:
        if not url.startswith("sqlite"):  # shared across machines: heartbeats
            return _shared_storage(url, interval, grace)
        # Processes started together would both create the tables: one at a time.
        with database_lock(database) if database else contextlib.nullcontext():
            # Worker processes share SQLite: wait for its lock rather than fail after 5 s.
            storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {
                "timeout": 120}})
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_wal)
        storage.engine.dispose()  # reconnect, so that every connection gets WAL
        return storage
    except Exception as err:  # SQLAlchemy's errors vary by database
        reason = first_line(err)
        raise ConfigError(f"--storage: cannot open {url!r} ({reason}); give an Optuna "
                          "storage URL such as sqlite:///study.db or "
                          "postgresql://user:pass@host/db") from None


def _shared_storage(url: str, interval: int, grace: int) -> optuna.storages.RDBStorage:
    """Machines started together on a new database all create Optuna's tables, and all
    but one fail (PostgreSQL: a duplicate key in pg_type): those try again, and find the
    tables made."""
    for attempt in range(SCHEMA_TRIES):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=interval,
                                              grace_period=grace)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == SCHEMA_TRIES - 1:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def heartbeat_settings() -> tuple[int, int]:
    """The heartbeat interval and grace period, in seconds: HEARTBEAT_S and GRACE_S, or
    HARNESS_HEARTBEAT_S and HARNESS_GRACE_S from the environment."""
    values = []
    for name, default in (("HARNESS_HEARTBEAT_S", HEARTBEAT_S), ("HARNESS_GRACE_S", GRACE_S)):
        text = os.environ.get(name, str(default))
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"{name}: {text!r} is not a whole number of seconds >= 1; "
                              f"unset it for the default, {default}")
        values.append(int(text))
    interval, grace = values
    if grace < 3 * interval:  # a few missed beats must not cost a live trial
        raise ConfigError(f"HARNESS_GRACE_S: {grace} is less than three heartbeats "
                          f"({interval} s each); use at least {3 * interval}")
    return interval, grace


def _sqlite_wal(connection: Any, record: Any) -> None:
    """WAL: readers never block the writer, commits are cheaper; with synchronous=NORMAL
    a killed process loses nothing committed (only a power cut could lose the last
    commits, never corrupt the file)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_study(config: Config, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The config's study, created when new; refused when another config made it. Each
    claim seeds the sampler afresh (sampling.OptunaSearch._before_ask): this one is
    never used."""
    study = optuna.create_study(
        study_name=config.name, storage=storage, direction=config.objective.direction,
        sampler=make_sampler(config, config.train.seed), pruner=make_pruner(config),
        load_if_exists=True)
    stored = study.user_attrs.get("config")
    if stored is not None and (change := refused_change(stored, identity(config))):
        engine = getattr(storage, "engine", None)
        fix = "rerun with --fresh to discard it"
        if engine is not None and engine.dialect.name != "sqlite":  # other machines' too
            fix = (f"run the study's own config (harness export --study {config.name} "
                   "writes it to config.yaml), or give this config another name, for a "
                   "study of its own")
        raise ConfigError(f"study {config.name!r} in the storage was made by another "
                          f"config ({change}); {GROWS}: {fix}")
    if stored != identity(config):  # a new study, or one given more seeds or trials
        study.set_user_attr("config", identity(config))
    if study.metric_names != [config.objective.metric]:
        # optuna-dashboard and Optuna's plots say val_acc, not "Objective 0"
        study.set_metric_names([config.objective.metric])
    return study


def discard(out: Path, storage: optuna.storages.BaseStorage, name: str) -> None:
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


def _value_at(config: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}"
                                         if path else str(key))
        return ""
    return path
