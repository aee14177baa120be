"""Rebuild a results directory from a study in any storage, on any machine:

    python -m harness export --storage postgresql://user:pass@host/db --study lenet-grid --out DIR

It writes only into a new directory or into one of this study's own (a worker's --out),
never over another sweep, and never creates a storage while reading one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy

from harness.config import Config, dump_config, identity
from harness.errors import ConfigError
from harness.files import atomic_write_text
from harness.models import build_model, example_input, model_summary, summary_totals
from harness.parse import load_config, parse_config
from harness.reporting.directory import write_results, write_tables
from harness.reporting.importance import importance
from harness.study.storage import open_storage


def export_study(url: str, name: str, out: Path) -> int:
    """Write config.yaml, trials.csv, history.csv, tables/ and summary.md; return the
    number of trials."""
    database = sqlite_file(url)
    if database is not None and not database.is_file():
        raise ConfigError(f"--storage: {database} does not exist; give the study.db of a "
                          "sweep, e.g. sqlite:///results/lenet-grid/study.db")
    with open_storage(url) as storage:
        return _export(storage, name, out, database)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other storages."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None  # open_storage says what is wrong with it
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _export(storage: optuna.storages.BaseStorage, name: str, out: Path,
            database: Path | None) -> int:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage))
        raise ConfigError(f"--study: no study {name!r} in the storage; it holds: "
                          f"{names or 'none'}") from None
    stored = study.user_attrs.get("config")
    if stored is None:
        raise ConfigError(f"--study: {name!r} was not made by harness (no config in it)")
    _check_out(out, stored, database)
    trials = study.get_trials(deepcopy=False)
    config = _sweep_config(stored, trials, out, database)
    model = summary_totals(model_summary(build_model(config.model),
                                        example_input(config.model)))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(config))
    table = write_results(out, trials, model)
    write_tables(out, table, config.objective.maximize, config.name,
                 importance(study))
    return len(table)


def _check_out(out: Path, stored: dict[str, Any], database: Path | None) -> None:
    """Refuse a directory that holds another sweep: its trials.csv would then disagree
    with its own study.db, runs and checkpoints."""
    own_db = out / "study.db"
    if own_db.exists() and not (database is not None and database.exists()
                                and own_db.samefile(database)):
        raise ConfigError(f"--out: {out} holds another sweep (its own study.db); export "
                          "into a new directory")
    if (out / "config.yaml").exists() and _own_config(out / "config.yaml", stored) is None:
        raise ConfigError(f"--out: {out} holds the results of another study or config "
                          f"(its config.yaml is not {stored['name']!r}'s); export into a "
                          "new directory")


def _own_config(path: Path, stored: dict[str, Any]) -> Config | None:
    """The config in `path` when it is the one that made the study, else None."""
    try:
        config = load_config(path)
    except ConfigError:
        return None
    return config if identity(config) == stored else None


def _sweep_config(stored: dict[str, Any], trials: list[optuna.trial.FrozenTrial], out: Path,
                  database: Path | None) -> Config:
    """The sweep's own config.yaml (beside its SQLite database, or in `out`) when there
    is one. Otherwise the study's, which leaves out what may differ between machines:
    the device is the one every trial ran on (auto when they differ)."""
    for place in (database.parent if database else None, out):
        if place is not None and (place / "config.yaml").exists():
            own = _own_config(place / "config.yaml", stored)
            if own is not None:
                return own
    config = parse_config(stored)
    devices = {t.user_attrs["result"].get("device") for t in trials if "result" in t.user_attrs}
    if len(devices) == 1 and None not in devices:
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, device=devices.pop()))
    return config
