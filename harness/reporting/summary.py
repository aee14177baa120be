"""The comparison as sections (heading, caption, table, notes), rendered once for
summary.md, the terminal (`compare`) and report.html, so all say the same."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import pandas as pd

from harness import stats
from harness.reporting import answer, slices, tables
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
    repeats: int = 0  # rows set aside: a (configuration, seed) that ran more than once
    running: int = 0  # trials still running: the comparison of a sweep not finished
    confirmed: bool = False  # ranked on the confirmation seeds of an Optuna search


def build(trials: pd.DataFrame, spec: Spec, importance: pd.DataFrame | None = None,
          running: int = 0) -> Comparison:
    """Every table once. A confirmed Optuna search is ranked on its confirmation seeds
    alone, its search's mean beside as search_value; the other tables read all trials."""
    trials, repeats = tables.once_per_seed(trials, spec)
    ranked, searched = _confirmation(trials, spec)
    configs = tables.configurations(ranked, spec)
    board = tables.leaderboard(ranked, spec, configs)
    if searched is not None:
        board = _with_search_value(board, searched, spec)
    return Comparison(trials, spec, configs, board, tables.by_optimizer(ranked, spec, board),
                      slices.marginals(trials, spec), tables.failures(trials, spec),
                      slices.pivots(trials, spec), importance, repeats, running,
                      confirmed=searched is not None)


def _confirmation(trials: pd.DataFrame, spec: Spec
                  ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The trials to rank, and the search's trials when a confirmation ranks instead
    (None before any confirmation trial has run, or without one)."""
    if not spec.confirm:
        return trials, None
    confirming = trials["seed"].isin(spec.confirm)
    if not confirming.any():
        return trials, None
    return trials[confirming], trials[~confirming]


def _with_search_value(board: pd.DataFrame, searched: pd.DataFrame, spec: Spec
                       ) -> pd.DataFrame:
    """search_value: each confirmed configuration's mean over the search's own seeds."""
    keys = tables.config_columns(board, spec)
    means = tables.configurations(searched, spec)[[*keys, "mean"]].rename(
        columns={"mean": "search_value"})
    merged = board.merge(means, on=keys, how="left")
    columns = list(board.columns)
    columns.insert(columns.index("mean") + 1, "search_value")
    return merged[columns]


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


def still_running(running: int) -> str:
    """What the trial counts add for a sweep that is not finished."""
    if not running:
        return ""
    return (f"; {running} more still running: the sweep is not finished, and these "
            "tables are how it stands now")


def headline(c: Comparison) -> list[str]:
    """The warning, the trial counts and a one-line answer."""
    lines = [w for w in (warning(c.spec),) if w] + [tables.state_counts(c.trials)
                                                     + still_running(c.running)]
    if c.repeats:
        lines.append(f"{c.repeats} repeated run{'' if c.repeats == 1 else 's'} of a "
                     "(configuration, seed) set aside: each counts once, by its first run.")
    keys = tables.config_columns(c.trials, c.spec)
    return lines + answer.answer(c.trials, c.board, keys, c.spec)


def sections(c: Comparison) -> list[Section]:
    """Every table of the comparison, in reading order."""
    metric = c.spec.metric
    keys = tables.config_columns(c.trials, c.spec)
    notes = (*answer.race_notes(c.trials, c.board, keys, c.spec, MAX_NOTES),
             *failed_notes(c))
    caption = " ".join([*answer.confirm_note(c.spec, c.confirmed),
                        leaderboard_caption(c.spec, c.board)])
    parts = [Section("Leaderboard", c.board, caption, notes),
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
    margin = (f"within {spec.margin:g} of the leader by Welch's two one-sided tests "
              f"(p_tost < {spec.alpha:g}), also when significantly worse"
              if spec.margin else "never here: the objective has no margin "
              "(objective.margin), the difference that does not matter")
    tests = (f"verdict: leader (rank 1); worse: p_holm < {spec.alpha:g}, where "
             "p_vs_leader is Welch's t-test against rank 1 and p_holm the same "
             f"Holm-adjusted over the {rows} tested; equivalent: {margin}; undetermined: "
             "neither, and seeds_to_decide is about how many seeds per configuration a "
             f"two-sample t-test needs to tell a difference of this size apart (80% power "
             f"at {spec.alpha:g}). Tests need 2 or more seeds on both sides." if tested
             else "Verdicts (Welch's t-test against rank 1, Holm-adjusted; TOST within the "
             "margin) need 2 or more seeds on both sides: every row but the leader is "
             "undetermined here.")
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
    lines = [f"- rank {row['rank']}, {answer.setting(row, keys)}: {_lost(row)}; ranked on the "
             f"{row['n']} that completed" for _, row in partial.iterrows()]
    lines += [f"- not ranked, {answer.setting(row, keys)}: {_lost(row)}; none completed "
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
