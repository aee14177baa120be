"""Results directories read back, for `compare` and `report`: each directory's files,
checked against the study beside them, and several directories as sweeps side by side.

    sweep = read_sweeps([Path("results/a"), Path("results/b")])
    for line in sweep.notes: print(line)   # a file rebuilt, trials still running

trials.csv and history.csv are what a reader sees, but the study is the truth: a file
cut by a crash, or one that disagrees with the study.db beside it, is rebuilt from the
study (under the sweep's lock, as a running sweep rebuilds it). Without a study, a
damaged file is bad input naming the file and the line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState

from harness.errors import ConfigError
from harness.files import file_lock
from harness.reporting import tables
from harness.reporting.directory import finished_trials, write_results
from harness.study.owner import is_dead_here
from harness.study.storage import open_storage

EXAMPLE = "give the directory a sweep wrote, such as results/quickstart"


@dataclass(frozen=True)
class SavedSweep:
    name: str  # the title: the config's name, or the sweeps' labels
    trials: pd.DataFrame  # with a `sweep` column (each directory's label) when several
    history: pd.DataFrame  # likewise
    spec: tables.Spec
    notes: list[str] = field(default_factory=list)  # said once on stderr: files rebuilt
    running: int = 0  # trials the study shows running now (a sweep not finished)


def read_sweep(out: Path) -> SavedSweep:
    """A finished or running sweep's files, for compare and report; results written by
    earlier versions too (a best_test_acc column and no validation)."""
    config = _config(out)
    notes = _repair(out, config.get("name"))
    study = _study(out, config.get("name"))  # after the repair: what it stands on now
    try:
        trials = pd.read_csv(out / "trials.csv", dtype={"error": str})
        history = pd.read_csv(out / "history.csv")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise ConfigError(f"{out}: its results files cannot be read ({reason}); "
                          f"{EXAMPLE}") from None
    trials["error"] = trials["error"].astype(object).fillna("")
    running, dead = _running(study)
    if dead:
        notes.append(f"{out}: {dead} trial{_s(dead)} cut off (the process that ran "
                     f"{'it' if dead == 1 else 'them'} died); the sweep's command runs "
                     f"{'it' if dead == 1 else 'them'} again")
    return SavedSweep(config.get("name", out.name), trials, history,
                      tables.Spec.from_config(config), notes, running)


def read_sweeps(dirs: list[Path]) -> SavedSweep:
    """Several sweeps as one comparison: every directory stays its own sweep, labelled
    by its path's last parts (as many as make the labels unique), never pooled."""
    sweeps = [read_sweep(d) for d in dirs]
    if len(sweeps) == 1:
        return sweeps[0]
    labels = sweep_labels(dirs)
    objectives = {(s.spec.metric, s.spec.maximize) for s in sweeps}
    if len(objectives) > 1:
        shown = ", ".join(f"{label}: {_objective(s.spec)}"
                          for label, s in zip(labels, sweeps, strict=True))
        raise ConfigError(f"compare: the sweeps select on different objectives ({shown}); "
                          "compare sweeps with the same objective")
    return SavedSweep(" vs ".join(labels),
                      pd.concat([s.trials.assign(sweep=lab) for lab, s in
                                 zip(labels, sweeps, strict=True)], ignore_index=True),
                      pd.concat([s.history.assign(sweep=lab) for lab, s in
                                 zip(labels, sweeps, strict=True)], ignore_index=True),
                      tables.merge_specs([s.spec for s in sweeps]),
                      [note for s in sweeps for note in s.notes],
                      sum(s.running for s in sweeps))


def sweep_labels(dirs: list[Path]) -> list[str]:
    """'quick' and 'other', or 'a/quick' and 'b/quick' when two end alike."""
    paths = [d.resolve() for d in dirs]
    for path in paths:
        if paths.count(path) > 1:
            raise ConfigError(f"compare: {path} is given twice; name each results "
                              "directory once")
    depth = [1] * len(paths)
    while True:
        labels = [str(p) if k >= len(p.parts) else "/".join(p.parts[-k:])
                  for p, k in zip(paths, depth, strict=True)]
        clashes = [i for i, label in enumerate(labels) if labels.count(label) > 1]
        if not clashes:
            return labels
        for i in clashes:
            depth[i] += 1


def _objective(spec: tables.Spec) -> str:
    """'maximize val_acc'."""
    return f"{'maximize' if spec.maximize else 'minimize'} {spec.metric}"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _config(out: Path) -> dict[str, Any]:
    """The sweep's config.yaml, or a line that says what the directory is instead."""
    if not out.is_dir():
        what = "does not exist" if not out.exists() else "is a file, not a directory"
        raise ConfigError(f"{out}: {what}; {EXAMPLE}")
    if not any(out.iterdir()):
        raise ConfigError(f"{out}: an empty directory, no sweep in it; {EXAMPLE}")
    if not (out / "config.yaml").is_file():
        raise ConfigError(f"{out}: holds no sweep (no config.yaml); {EXAMPLE}")
    try:
        config = yaml.safe_load((out / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{out}/config.yaml: cannot be read ({type(err).__name__}); "
                          f"{EXAMPLE}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{out}/config.yaml: not a harness config; {EXAMPLE}")
    if not (out / "trials.csv").exists() and not (out / "study.db").exists():
        raise ConfigError(f"{out}: a sweep that has not started (no trials.csv or "
                          "study.db yet); run it with harness sweep")
    return config


def _study(out: Path, name: Any) -> list[FrozenTrial] | None:
    """The trials of the study beside the files (study.db), or None when there is none
    (a sweep on a shared storage keeps its study elsewhere)."""
    database = out / "study.db"
    if not database.is_file() or not isinstance(name, str):
        return None
    try:
        with open_storage(f"sqlite:///{database}") as storage:
            return optuna.load_study(study_name=name, storage=storage).get_trials(
                deepcopy=False)
    except (ConfigError, KeyError):  # not a study of this name: the files are all there is
        return None


def _repair(out: Path, name: Any) -> list[str]:
    """Rebuild trials.csv and history.csv from the study when one is damaged or
    disagrees with it; without a study, a damaged file is bad input. The notes to say.
    The study is read under the sweep's own lock, as a running sweep writes the files:
    a trial it records meanwhile is in both or in neither."""
    if not (out / "study.db").is_file():
        problem = _damage(out)
        if problem:
            raise ConfigError(f"{problem}; no study.db beside it to rebuild it from: run "
                              "the sweep's command again, or harness export from its "
                              "storage")
        return []
    with file_lock(out / ".lock"):
        study = _study(out, name)
        if study is None:  # not this config's study: the files are all there is
            problem = _damage(out)
            if problem:
                raise ConfigError(f"{problem}; the study.db beside it is not this sweep's")
            return []
        problem = _damage(out) or _disagreement(out, study)
        if not problem:
            return []
        write_results(out, study, _model(out))
    return [f"{problem}; rebuilt trials.csv and history.csv from {out / 'study.db'}"]


def _damage(out: Path) -> str:
    """The first problem of the two files: missing, a cut line, a row of the wrong
    length; '' when both are whole."""
    for name, needed in (("trials.csv", {"run", "state"}), ("history.csv", {"run", "epoch"})):
        path = out / name
        try:
            text = path.read_text()
        except FileNotFoundError:
            return f"{path}: missing"
        except (OSError, UnicodeDecodeError) as err:
            return f"{path}: cannot be read ({type(err).__name__})"
        lines = text.splitlines()
        if not lines:
            return f"{path}: empty"
        if not text.endswith("\n"):
            return f"{path}: line {len(lines)} is cut short (a crash while it was written)"
        header = next(csv.reader([lines[0]]))
        if not needed <= set(header):  # not a file a sweep wrote (of any version)
            return f"{path}: line 1 is not {name}'s header"
        width = len(header)
        for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if len(row) != width:
                return f"{path}: line {number} has {len(row)} fields, not {width}"
    return ""


def _disagreement(out: Path, study: list[FrozenTrial]) -> str:
    """How trials.csv differs from the study's finished trials; '' when it does not."""
    expected = [(t.number, t.state.name) for t in finished_trials(study)]
    try:
        saved = pd.read_csv(out / "trials.csv", usecols=["trial", "state"])
    except (ValueError, pd.errors.ParserError):
        return f"{out / 'trials.csv'}: not the columns a sweep writes"
    found = list(zip(saved["trial"].tolist(), saved["state"].tolist(), strict=True))
    if sorted(found) == sorted(expected):
        return ""
    return (f"{out / 'trials.csv'}: {len(found)} trial{_s(len(found))}, but the study "
            f"beside it has {len(expected)} finished")


def _running(study: list[FrozenTrial] | None) -> tuple[int, int]:
    """Trials of the study running now, and those whose process on this machine died
    (their points run again when the sweep's command runs)."""
    if study is None:
        return 0, 0
    running = [t for t in study if t.state == TrialState.RUNNING and "point" in t.user_attrs]
    dead = sum(is_dead_here(t.user_attrs.get("owner", "")) for t in running)
    return len(running) - dead, dead


def _model(out: Path) -> dict[str, int]:
    """The model's totals for trials.csv's params and mult_adds columns, as the sweep
    wrote them in model_summary.csv."""
    try:
        table = pd.read_csv(out / "model_summary.csv")
        return {"params": int(table["params"].sum()),
                "mult_adds": int(table["mult_adds"].sum())}
    except (OSError, KeyError, ValueError):
        return {}
