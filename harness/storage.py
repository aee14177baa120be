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
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import yaml

from harness.config import Config, ConfigError, identity, parse_config
from harness.search import make_pruner, make_sampler

HEARTBEAT_S = 10  # a worker's trial says it is alive this often (database storages)
GRACE_S = 60  # a trial silent for this long is failed by the other workers, and rerun
OWNED = ("config.yaml", "study.db", "trials.csv", "history.csv", "summary.md", "tables",
         "model_summary.csv", "tb", "checkpoints", "report.html", ".lock")
GROWS = "only search.seeds and search.n_trials may grow"  # what a resumed config may change


def prepare_out(out: Path) -> None:
    """Create the results directory, or say why it cannot be."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out: cannot write results to {out} ({err.strerror}); choose "
                          "a directory you can write to") from None


def check_resumable(out: Path, config: Config, fresh: bool) -> None:
    """Refuse to mix two configs' results in one directory."""
    path = out / "config.yaml"
    if fresh or not path.exists():
        return
    try:
        old = identity(parse_config(yaml.safe_load(path.read_text())))
    except (ConfigError, yaml.YAMLError):
        old = {}
    change = refused_change(old, identity(config))
    if change:
        raise ConfigError(
            f"{out} holds a sweep of another config ({change}); {GROWS}: rerun with "
            "--fresh to discard it, or pass --out DIR for a new results directory")


def refused_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """'' when the config `new` continues the sweep `old` made: the same, or with seeds
    added to search.seeds or a larger search.n_trials. Else the first field that
    differs, with its value in the sweep and in the new config."""
    grown = copy.deepcopy(old)
    before, after = grown.get("search"), new.get("search", {})
    if isinstance(before, dict):
        if set(before.get("seeds", [])) <= set(after.get("seeds", [])):
            before["seeds"] = after.get("seeds")
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


def open_study(config: Config, storage: optuna.storages.BaseStorage) -> optuna.Study:
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
    if stored is not None and (change := refused_change(stored, identity(config))):
        raise ConfigError(f"study {config.name!r} in the storage was made by another "
                          f"config ({change}); {GROWS}: rerun with --fresh to discard it")
    if stored != identity(config):  # a new study, or one given more seeds or trials
        study.set_user_attr("config", identity(config))
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
