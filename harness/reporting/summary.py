"""The comparison as sections (heading, caption, table, notes), rendered once for
summary.md, the terminal (`compare`) and report.html, so all say the same."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import pandas as pd

from harness.reporting import slices, stats, tables
from harness.reporting.tables import Spec

MAX_NOTES = 20  # configurations listed under the leaderboard, then a count
WIDTH = 100  # of the terminal's prose
MISSING = "\u2013"  # an en dash: not measured (one seed has no std or interval)


@dataclass(frozen=True)
class Comparison:
    """Every table of one comparison, computed once for all the places that show it."""
    trials: pd.DataFrame
    spec: Spec
    configs: pd.DataFrame  # every configuration, ranked or not
    board: pd.DataFrame  # the leaderboard
    by_optimizer: pd.DataFrame
    marginals: pd.DataFrame
    failures: pd.DataFrame
    pivots: list[slices.Pivot]
    importance: pd.DataFrame | None = None  # importance.py's, at a sweep's end


def build(trials: pd.DataFrame, spec: Spec,
          importance: pd.DataFrame | None = None) -> Comparison:
    configs = tables.configurations(trials, spec)
    board = tables.leaderboard(trials, spec, configs)
    return Comparison(trials, spec, configs, board, tables.by_optimizer(trials, spec, board),
                      slices.marginals(trials, spec), tables.failures(trials, spec),
                      slices.pivots(trials, spec), importance)


@dataclass(frozen=True)
class Section:
    heading: str
    table: pd.DataFrame
    caption: str = ""  # what the table shows and over what
    notes: tuple[str, ...] = ()  # lines under the table
    index: bool = False  # pivots: the lr labels are the index


def warning(spec: Spec) -> str | None:
    """Said first wherever results are shown when selection used the test set."""
    if not spec.test_selected:
        return None
    return (f"Selected on the test set: objective.metric is {spec.metric}, so every "
            "trial's best epoch, its checkpoint and this ranking were chosen on the test "
            "data, and the test numbers here are optimistic. Select on val_acc (the "
            "default) and report test once.")


def headline(c: Comparison) -> list[str]:
    """The warning, the trial counts and a one-line answer."""
    lines = [w for w in (warning(c.spec),) if w] + [tables.state_counts(c.trials)]
    if c.board.empty:
        return lines
    best = c.board.iloc[0]
    spread = (f"95% CI {best['ci95_low']:.4f} to {best['ci95_high']:.4f}"
              if best["n"] > 1 else "one seed, so no confidence interval: add seeds "
              "to search.seeds to see whether the lead is bigger than seed noise")
    failed = f"; {best['n_failed']} more failed" if best["n_failed"] else ""
    keys = tables.config_columns(c.trials, c.spec)
    return lines + [f"Best configuration: {setting(best, keys)}: {best['mean']:.4f} "
                    f"(n={best['n']}{failed}, {spread})."]


def sections(c: Comparison) -> list[Section]:
    """Every table of the comparison, in reading order."""
    metric = c.spec.metric
    parts = [Section("Leaderboard", c.board, leaderboard_caption(c.spec, c.board),
                     failed_notes(c)),
             Section("Best per optimizer", c.by_optimizer,
                     "The best configuration of each optimizer; optimizer_failed and "
                     "optimizer_pruned count all of its trials that failed or were pruned."),
             Section("By hyperparameter value", c.marginals,
                     f"{metric} by each value of a hyperparameter, averaged over what "
                     "`over` names; ranges are binned (n trials per bin); best is the best "
                     "trial."),
             Section("Failed and pruned trials", c.failures,
                     "ranked is False where no seed of the configuration completed: it is "
                     "not on the leaderboard.")]
    if c.importance is not None:
        method = c.importance["method"].iloc[0] if "method" in c.importance else "fANOVA"
        parts.append(Section(f"Hyperparameter importance ({method})", c.importance))
    for pivot in c.pivots:
        parts.append(Section(f"{pivot.title}: {metric} by lr (rows) and batch size "
                             "(columns)", pivot.cells, f"Mean over {pivot.over}; failed or "
                             "pruned where no seed completed.", index=True))
    return [s for s in parts if not s.table.empty or s.notes]


def leaderboard_caption(spec: Spec, board: pd.DataFrame) -> str:
    low, high = stats.metric_range(spec.metric)
    kept = (f", clipped to [{low:g}, {high:g}]" if math.isfinite(high)
            else f", kept >= {low:g}" if math.isfinite(low) else "")
    tested = int(board["p_vs_leader"].notna().sum()) if "p_vs_leader" in board else 0
    rows = f"{tested} row{'' if tested == 1 else 's'}"
    tests = ("p_vs_leader: Welch's t-test against rank 1; p_holm: Holm-adjusted over the "
             f"{rows} tested; tied_with_leader: p_holm >= {stats.ALPHA}. Blank where "
             "either side has fewer than 2 seeds." if tested else "p_vs_leader, p_holm "
             "and tied_with_leader (Welch's t-test against rank 1, Holm-adjusted) need 2 "
             "or more seeds on both sides: none here.")
    return (f"Ranked by the mean {spec.metric} ({'max' if spec.maximize else 'min'}imized) "
            "over each configuration's COMPLETE seeds (n); n_failed and n_pruned count "
            f"the others. ci95: Student's t interval of the mean{kept}; none for one seed. "
            + tests)


def failed_notes(c: Comparison) -> tuple[str, ...]:
    """Under the leaderboard: configurations ranked on fewer seeds than they ran, and
    those not ranked at all because none of their seeds completed."""
    if c.failures.empty:
        return ()
    keys = tables.config_columns(c.trials, c.spec)
    reasons = c.failures.groupby(keys, dropna=False)["reason"].agg(
        lambda r: "; ".join(dict.fromkeys(r))).reset_index()
    board = c.board
    partial = board[(board["n_failed"] > 0) | (board["n_pruned"] > 0)].merge(
        reasons, on=keys, how="left")
    unranked = c.configs[c.configs["n"] == 0].merge(reasons, on=keys, how="left")
    # Each sweep writes its own table; a comparison of several writes none.
    listed = ("tables/failures.csv" if c.trials.get("sweep", pd.Series()).nunique() <= 1
              else "its sweep's tables/failures.csv")
    lines = [f"- rank {row['rank']}, {setting(row, keys)}: {_lost(row)}; ranked on the "
             f"{row['n']} that completed" for _, row in partial.iterrows()]
    lines += [f"- not ranked, {setting(row, keys)}: {_lost(row)}; none completed "
              f"({listed})" for _, row in unranked.iterrows()]
    if len(lines) > MAX_NOTES:
        lines = lines[:MAX_NOTES] + [f"- and {len(lines) - MAX_NOTES} more in {listed}"]
    first = ("No configuration has a COMPLETE seed, so none is ranked." if board.empty
             else "Configurations with seeds that did not complete:")
    return (first, *lines) if lines else ()


def _lost(row: pd.Series) -> str:
    """'2 of 3 seeds failed (diverged: train loss is nan)'."""
    ran = row["n"] + row["n_failed"] + row["n_pruned"]
    parts = [f"{row[f'n_{s}']} of {ran} seeds {s}" for s in ("failed", "pruned")
             if row[f"n_{s}"]]
    reasons = [r for r in str(row["reason"]).split("; ") if r != "pruned"]
    return ", ".join(parts) + (f" ({'; '.join(reasons)})" if reasons else "")


def setting(row: pd.Series, keys: list[str]) -> str:
    """'optimizer=adam, lr=0.01, batch_size=64'."""
    return ", ".join(f"{k}={stats.labels([row[k]])[row[k]]}" for k in keys)


def display(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text: hyperparameters as unique labels, numbers to 4 significant
    digits, missing values as a dash."""
    out = tables.as_text(frame).astype(object)
    for column in out.columns:
        out[column] = [MISSING if _missing(v) else f"{v:.4g}" if isinstance(v, float)
                       else str(v) for v in out[column]]
    return out


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def markdown(c: Comparison, title: str) -> str:
    """summary.md: the answer first, then every table with its caption."""
    parts = [f"# {title}", ""]
    for line in headline(c):
        parts += [f"> **{line}**" if line == warning(c.spec) else line, ""]
    for section in sections(c):
        parts += [f"## {section.heading}", ""]
        if not section.table.empty:
            parts += [section.caption, ""] if section.caption else []
            parts += [display(section.table).to_markdown(index=section.index,
                                                         disable_numparse=True), ""]
        parts += ["\n".join(section.notes), ""] if section.notes else []
    return "\n".join(parts)


def text(c: Comparison, title: str) -> str:
    """The terminal's comparison: the same sections, plain text."""
    lines = [title, *[w for line in headline(c) for w in textwrap.wrap(line, WIDTH)]]
    with pd.option_context("display.width", 200, "display.max_columns", 40,
                           "display.max_colwidth", 80):
        for section in sections(c):
            lines += ["", section.heading]
            if not section.table.empty:
                lines += textwrap.wrap(section.caption, WIDTH)
                lines.append(display(section.table).to_string(index=section.index))
            lines += section.notes
    return "\n".join(lines)
