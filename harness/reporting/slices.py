"""Views that average: the objective by one hyperparameter (marginals) and by lr and
batch size (pivots). Each says what it averages over; continuous hyperparameters are
binned with readable labels; configurations that failed show as failed, not as gaps."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.hyperparams import BATCH_SIZE, LOG_SCALE, LR, OPTIMIZER
from harness.reporting import bins
from harness.reporting.tables import DEFAULT, MAX_LEVELS, Spec, config_columns, counts

ROWS, COLUMNS = LR, BATCH_SIZE  # a pivot's axes


@dataclass(frozen=True)
class Pivot:
    name: str  # for the file name: pivot_<name>.csv
    title: str  # 'sgd', 'sgd, momentum=0.9', 'a/quick: adam'
    over: str  # what every cell averages over
    mean: pd.DataFrame  # the objective's mean; NaN where no trial completed
    cells: pd.DataFrame  # what a reader sees: '0.9213', '0.9100 (1 failed)', 'failed'


def axis(trials: pd.DataFrame, column: str, spec: Spec) -> tuple[pd.Series, bool]:
    """A hyperparameter's values as unique readable labels, ordered as the values;
    continuous ones (ranges, or many distinct numbers) as bins. The flag: binned."""
    values = trials[column]
    numeric = pd.api.types.is_numeric_dtype(values)
    if numeric and (column in spec.continuous or values.nunique() > MAX_LEVELS):
        return bins.bins(values, spec.continuous.get(column, column in LOG_SCALE)), True
    names = bins.labels(sorted(values.dropna().unique()))
    return pd.Series(pd.Categorical(values.map(names), categories=list(names.values()),
                                    ordered=True), index=values.index), False


def marginals(trials: pd.DataFrame, spec: Spec = DEFAULT) -> pd.DataFrame:
    """The objective by each value (or bin) of each hyperparameter that varies, over
    seeds and every other setting, which `over` names; `best` is the best trial."""
    keys = [k for k in config_columns(trials, spec) if k != "sweep"]
    varied = [k for k in keys if trials[k].nunique(dropna=False) > 1]
    sweeps = ["sweep"] if "sweep" in trials.columns else []
    rows = []
    for column in varied:
        labels, binned = axis(trials, column, spec)
        others = ", ".join(["seeds", *[k for k in varied if k != column]])
        over = others + (f"; the {column}s in each bin" if binned else "")
        for key, group in trials.groupby([*[trials[s] for s in sweeps], labels],
                                         observed=True, sort=True):
            done = group.loc[group["state"] == "COMPLETE", "value"]
            best = done.max() if spec.maximize else done.min()
            rows.append({**dict(zip(sweeps, key[:-1], strict=True)), "hparam": column,
                         "value": key[-1], **counts(group), "mean": done.mean(),
                         "std": done.std(), "best": best, "over": over})
    return pd.DataFrame(rows, columns=[*sweeps, "hparam", "value", "n", "n_failed",
                                       "n_pruned", "mean", "std", "best", "over"])


def pivots(trials: pd.DataFrame, spec: Spec = DEFAULT) -> list[Pivot]:
    """The mean objective with lr down the rows and batch size across, one pivot per
    optimizer and value of every other discrete searched hyperparameter (and sweep);
    continuous ones that are not an axis are averaged over, as `over` says."""
    keys = config_columns(trials, spec)
    rows, row_binned = axis(trials, ROWS, spec)
    columns, column_binned = axis(trials, COLUMNS, spec)
    rest = [k for k in keys if k not in (ROWS, COLUMNS)]
    split = [k for k in rest if k in ("sweep", OPTIMIZER) or not axis(trials, k, spec)[1]]
    averaged = [k for k in rest if k not in split]
    over = ", ".join(["seeds", *averaged] + [f"the {k}s in each bin" for k, b in
                                             ((ROWS, row_binned), (COLUMNS, column_binned))
                                             if b])
    out = []
    for key, group in trials.groupby(split, dropna=False, sort=True):
        setting = dict(zip(split, key if isinstance(key, tuple) else (key,), strict=True))
        mean, cells = _grid(group, rows[group.index], columns[group.index],
                            row_binned or column_binned or bool(averaged))
        out.append(Pivot(_name(setting), _title(setting), over, mean, cells))
    return out


def _grid(group: pd.DataFrame, rows: pd.Series, columns: pd.Series,
          show_n: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    mean = pd.DataFrame(index=rows.cat.categories, columns=columns.cat.categories,
                        dtype=float)
    cells = pd.DataFrame("", index=mean.index, columns=mean.columns, dtype=object)
    for (row, column), cell in group.groupby([rows, columns], observed=True):
        done = cell.loc[cell["state"] == "COMPLETE", "value"]
        mean.loc[row, column] = done.mean()
        cells.loc[row, column] = _cell(counts(cell), done.mean(), show_n)
    used_rows = cells.ne("").any(axis=1)
    used_columns = cells.ne("").any(axis=0)
    mean = mean.loc[used_rows, used_columns]
    cells = cells.loc[used_rows, used_columns]
    mean.index.name = cells.index.name = ROWS
    mean.columns.name = cells.columns.name = COLUMNS
    return mean, cells


def _cell(count: dict[str, int], mean: float, show_n: bool) -> str:
    """'0.9213', '0.9213 (n=4, 1 failed)', or 'failed' / 'pruned' where none completed."""
    if count["n"] == 0:
        return "/".join(s for s in ("failed", "pruned") if count[f"n_{s}"])
    notes = [f"n={count['n']}"] if show_n else []
    notes += [f"{count[f'n_{s}']} {s}" for s in ("failed", "pruned") if count[f"n_{s}"]]
    return f"{mean:.4f}" + (f" ({', '.join(notes)})" if notes else "")


def _title(setting: dict[str, object]) -> str:
    setting = dict(setting)
    sweep = setting.pop("sweep", None)
    parts = [str(setting.pop(OPTIMIZER, ""))]
    parts += [f"{k}={bins.labels([v])[v]}" for k, v in setting.items()]
    title = ", ".join(p for p in parts if p)
    return f"{sweep}: {title}" if sweep is not None else title


def _name(setting: dict[str, object]) -> str:
    parts = [str(setting.get("sweep", "")), str(setting.get(OPTIMIZER, ""))]
    parts += [f"{k}{v}" for k, v in setting.items() if k not in ("sweep", OPTIMIZER)]
    raw = "_".join(p for p in parts if p)
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in raw)
