"""The answer in words: which configuration leads and how surely, which are equivalent to
it, how many are worse, which are still undetermined and how many seeds would decide
them; and what a race or a confirmation did. Said first in the terminal's ending,
summary.md and report.html (summary.headline), from the leaderboard's verdicts.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from harness import stats
from harness.config import RaceConfig
from harness.reporting import bins
from harness.reporting.tables import Spec, rerun_row
from harness.study import race

MAX_LISTED = 5  # configurations named in one line of the answer, then a count


def setting(row: pd.Series, keys: list[str]) -> str:
    """'optimizer=adam, lr=0.01, batch_size=64'."""
    return ", ".join(f"{k}={bins.labels([row[k]])[row[k]]}" for k in keys)


def answer(trials: pd.DataFrame, board: pd.DataFrame, keys: list[str], spec: Spec
           ) -> list[str]:
    """The answer, a line for the leader, one for each verdict that some row has, and
    what a race did."""
    if board.empty:
        return []
    stopped = _stopped(trials, keys, spec)
    return _verdicts(board, keys, spec, stopped) + _raced(stopped, trials, keys, spec)


def _stopped(trials: pd.DataFrame, keys: list[str], spec: Spec
             ) -> dict[tuple[object, ...], tuple[int, str]]:
    """The configurations a race stopped early: key -> (seeds run, why)."""
    if not spec.race_seeds:
        return {}
    now, names = replay(trials, keys, spec)
    return {names[i]: out for i, out in now.out.items() if out[0] < len(spec.race_seeds)}


def _raced(stopped: dict[tuple[object, ...], tuple[int, str]], trials: pd.DataFrame,
           keys: list[str], spec: Spec) -> list[str]:
    """'The race stopped 2 of 4 configurations early (2 worse): ...'."""
    if not spec.race_seeds:
        return []
    seeds = len(spec.race_seeds)
    if not stopped:
        return [f"The race stopped no configuration early: each ran all {seeds} seeds."]
    configurations = trials[trials["seed"].isin(spec.race_seeds)].groupby(keys).ngroups
    whys = ", ".join(f"{n} {why}" for why, n in sorted(Counter(
        why for _, why in stopped.values()).items()))
    return [f"The race stopped {len(stopped)} of {_count(configurations)} early ({whys}), "
            f"after {spec.race_first} or more of {seeds} seeds: see the notes under the "
            "leaderboard."]


def _verdicts(board: pd.DataFrame, keys: list[str], spec: Spec,
              stopped: dict[tuple[object, ...], tuple[int, str]]) -> list[str]:
    best = board.iloc[0]
    failed = f"; {best['n_failed']} more failed" if best["n_failed"] else ""
    lead = f"Leader: {setting(best, keys)}: {spec.metric} {best['mean']:.4f}"
    if best["n"] < 2:
        return [lead + " (one seed: no interval, and no verdict on any other "
                "configuration; add seeds to search.seeds, or race them with search.race, "
                "to see whether the lead is bigger than seed noise)."]
    lines = [lead + f" (95% CI {best['ci95_low']:.4f} to {best['ci95_high']:.4f}, "
             f"n={best['n']}{failed})."]
    rows = board.iloc[1:]
    tested = rows["p_vs_leader"].notna().any()
    equivalent = rows[rows["verdict"] == stats.EQUIVALENT]
    if not equivalent.empty:
        lines.append(f"Equivalent to it (within {spec.margin:g}, TOST at {spec.alpha:g}): "
                     + _listed(equivalent, keys) + ".")
    elif tested and spec.margin:
        lines.append(f"None is shown equivalent to it within {spec.margin:g}.")
    elif tested:
        lines.append(f"No configuration can be called equivalent: {spec.metric} has no "
                     "objective.margin (the difference that does not matter); set one.")
    worse = rows[rows["verdict"] == stats.WORSE]
    if not worse.empty:
        lines.append(f"Worse: {_count(len(worse))} (Welch's t-test against the leader, "
                     f"Holm-corrected, at {spec.alpha:g}).")
    undetermined = rows[rows["verdict"] == stats.UNDETERMINED]
    raced_out = undetermined.apply(lambda r: tuple(r[k] for k in keys) in stopped, axis=1) \
        if not undetermined.empty else pd.Series(dtype=bool)
    still_open = undetermined[~raced_out.astype(bool)]
    if not still_open.empty:
        lines.append(f"Undetermined: {_count(len(still_open))}: " + _listed(
            still_open, keys, decide=True) + ".")
    if raced_out.any():
        lines.append(f"Stopped by the race, undetermined here: {_count(int(raced_out.sum()))}"
                     " (with their few seeds, Holm's correction over every row is stricter "
                     "than the race's own test, one comparison at a time).")
    return lines


def _count(n: int) -> str:
    return f"{n} configuration{'' if n == 1 else 's'}"


def _listed(rows: pd.DataFrame, keys: list[str], decide: bool = False) -> str:
    """'optimizer=sgd, lr=0.003 (0.7300, about 12 seeds each would decide it); ...'."""
    parts = []
    for _, row in rows.head(MAX_LISTED).iterrows():
        seeds = row.get("seeds_to_decide")
        why = ""
        if decide and pd.notna(seeds):
            why = f", about {seeds} seeds each would decide it"
        elif decide:
            why = (", no difference seen" if pd.notna(row.get("p_vs_leader"))
                   else ", too few seeds to test")
        parts.append(f"{setting(row, keys)} ({row['mean']:.4f}{why})")
    more = len(rows) - MAX_LISTED
    return "; ".join(parts) + (f"; and {more} more (tables/leaderboard.csv)" if more > 0
                               else "")


def race_notes(trials: pd.DataFrame, board: pd.DataFrame, keys: list[str], spec: Spec,
               most: int) -> list[str]:
    """Under the leaderboard of a race: the race replayed from the trials (as the sweep
    ran it), how many configurations it stopped early, and at which seed and why each
    stopped, beside its verdict here (Holm-corrected over every row: often stricter
    than the race's own test, one comparison at a time)."""
    if not spec.race_seeds or board.empty:
        return []
    now, names = replay(trials, keys, spec)
    seeds = len(spec.race_seeds)
    early = Counter(ran for ran, _ in now.out.values() if ran < seeds)
    stops = ", ".join(f"after {k}: {early[k]}" for k in sorted(early))
    lines = [f"Raced: {_count(len(names))}, the first {spec.race_first} seeds each and up "
             f"to {seeds}; " + (f"{sum(early.values())} stopped early ({stops}), "
                                if early else "")
             + f"{len(names) - sum(early.values())} ran every seed."]
    verdicts = {tuple(row[k] for k in keys): row for _, row in board.iterrows()}
    stopped = sorted(((ran, why, names[i]) for i, (ran, why) in now.out.items() if ran < seeds),
                     key=lambda s: verdicts[s[2]]["rank"] if s[2] in verdicts else 10**9)
    for ran, why, key in stopped[:most]:
        row = verdicts.get(key)
        where = f"rank {row['rank']}" if row is not None else "not ranked"
        verdict = f"; its verdict here: {row['verdict']}" if row is not None else ""
        shown = ", ".join(f"{k}={bins.labels([v])[v]}" for k, v in zip(keys, key, strict=True))
        lines.append(f"- {where}, {shown}: stopped after {ran} of {seeds} seeds, "
                     f"{RACED_OUT[why]}{verdict}")
    if len(stopped) > most:
        lines.append(f"- and {len(stopped) - most} more")
    return lines


RACED_OUT = {"worse": "the race found it worse (one-sided Welch test against the leader "
                      "at its alpha)", "equivalent": "the race found it equivalent (TOST "
                      "within the margin)", "failed": "every seed it ran failed"}


def replay(trials: pd.DataFrame, keys: list[str], spec: Spec
           ) -> tuple[race.Standing, list[tuple[object, ...]]]:
    """The race as the sweep ran it, from its trials: its standing, and each
    configuration's key (the standing's indexes)."""
    positions = {seed: p for p, seed in enumerate(spec.race_seeds)}
    raced = trials[trials["seed"].isin(positions)]
    names: list[tuple[object, ...]] = []
    results: dict[int, list[float | None]] = {}
    for key, group in raced.groupby(keys, dropna=False, sort=False):
        row: list[float | None] = [None] * len(positions)
        for _, trial in group.iterrows():
            if rerun_row(trial["state"], str(trial["error"] or "")):
                continue  # its point runs again: no result yet
            row[positions[trial["seed"]]] = (trial["value"] if trial["state"] == "COMPLETE"
                                             else race.NO_VALUE)
        results[len(names)] = row
        names.append(key if isinstance(key, tuple) else (key,))
    rules = RaceConfig(first=spec.race_first, alpha=spec.alpha)
    return race.standing(results, len(positions), rules, spec.maximize, spec.margin), names


def confirm_note(spec: Spec, confirmed: bool) -> list[str]:
    """Over the leaderboard of a confirmed Optuna search: what it is ranked on."""
    if not spec.confirm:
        return []
    if not confirmed:
        return ["Not confirmed yet: ranked on the search's own values, which chose these "
                "configurations for being high; the confirmation seeds "
                f"{list(spec.confirm)} will rank the top ones afresh."]
    return [f"Ranked on the confirmation seeds {list(spec.confirm)} alone: the search's own "
            "values (search_value, its mean) chose these configurations for being high, so "
            "they are shown beside, never pooled in."]

