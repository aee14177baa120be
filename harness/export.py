"""Rebuild a results directory from a study in any storage, on any machine:

    python -m harness export --storage postgresql://user:pass@host/db --study lenet-grid --out DIR
"""

from __future__ import annotations

from pathlib import Path

import optuna

from harness.config import ConfigError, dump_config, parse_config
from harness.files import atomic_write_text
from harness.models import build_model, model_summary, summary_totals
from harness.results import importance, write_results, write_tables
from harness.storage import open_storage


def export_study(url: str, name: str, out: Path) -> int:
    """Write config.yaml, trials.csv, history.csv, tables/ and summary.md; return the
    number of trials."""
    with open_storage(url) as storage:
        return _export(storage, name, out)


def _export(storage: optuna.storages.BaseStorage, name: str, out: Path) -> int:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage))
        raise ConfigError(f"--study: no study {name!r} in the storage; it holds: "
                          f"{names or 'none'}") from None
    stored = study.user_attrs.get("config")
    if stored is None:
        raise ConfigError(f"--study: {name!r} was not made by harness (no config in it)")
    config = parse_config(stored)
    model = summary_totals(model_summary(build_model(config.model)))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(config))
    trials = write_results(out, study.get_trials(deepcopy=False), model)
    write_tables(out, trials, config.objective.direction == "maximize", config.name,
                 importance(study))
    return len(trials)
