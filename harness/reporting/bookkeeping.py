"""A sweep's results files while it runs, at a cost per trial that stays flat.

Each recorded trial's rows are appended to trials.csv and history.csv (`ResultFiles`,
reading back only that trial from the study). What is rebuilt from the whole study,
whose cost grows with the number of trials, is done at the start (which also repairs
whatever a crash left), at the end, and in between at most every TABLES_EVERY_S and
never for more than TABLES_SHARE of the time (`Views`): trials.csv and history.csv,
tables/ and summary.md, and Visdom's panes.

Appended rows come in the order trials finish; a rebuild writes them in trial order.
One process finishes its trials in trial order, so its files are the same bytes either
way; with --workers the rows are put back in trial order at the next rebuild, and the
end of a sweep always rebuilds.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from harness.files import append_lines, ends_whole, file_lock
from harness.reporting.directory import (
    HISTORY_COLUMNS,
    TRIAL_COLUMNS,
    csv_lines,
    history_rows,
    trial_row,
    write_results,
    write_tables,
)
from harness.reporting.importance import METHOD
from harness.reporting.importance import importance as rank_hparams
from harness.reporting.tables import rerun_row

TABLES_EVERY_S = 5.0  # the rebuild while trials run, at most this often...
TABLES_SHARE = 0.02  # ... and for at most this share of the time
SLOW_S = 1.0  # a step at the end that takes longer says what it is doing

_AT = [TRIAL_COLUMNS.index(c) for c in ("run", "state", "error")]


class ResultFiles:
    """trials.csv and history.csv while a sweep runs. A recorded trial's rows are
    appended; the files are rebuilt from the study (`rebuild`) in place of an append
    that would be wrong: its point ran before (an older attempt has a row), or a process
    was killed in the middle of an append (a file ends in a cut line). Every process of
    a sweep writes under one lock (`locked`) and reads what the others appended since it
    last looked, never the whole file again, so a rerun is seen whoever ran the first
    attempt, and the points done are counted in O(1) per trial (`count_done`)."""

    def __init__(self, out: Path, model: dict[str, int]) -> None:
        self.out, self.model = out, model
        self.runs: dict[str, bool] = {}  # trials.csv's rows: run -> done (not to run again)
        self.done = 0  # how many of them are done
        self.read = (0, 0)  # trials.csv's inode, and up to where `runs` has read it

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with file_lock(self.out / ".lock"):
            yield

    def rebuild(self, trials: list[FrozenTrial]) -> pd.DataFrame:
        """Both files from the study's trials (under the lock); the trials table."""
        table = write_results(self.out, trials, self.model)
        self.read = (0, 0)  # a new file: read it all again
        self.catch_up()
        return table

    def append(self, trial: FrozenTrial, study: Callable[[], list[FrozenTrial]]) -> None:
        """A trial the study has just been told about (under the same lock as the tell,
        so that no other process's rebuild has its row yet). `study` reads all trials,
        for when the files must be rebuilt instead."""
        row = trial_row(trial, self.model)
        whole = self.catch_up() and ends_whole(self.out / "history.csv")
        if not whole or row["run"] in self.runs:
            self.rebuild(study())
            return
        # history first: a row in trials.csv says its epochs are in history.csv
        history = csv_lines(history_rows(trial), HISTORY_COLUMNS)
        if history:
            append_lines(self.out / "history.csv", history)
        size = append_lines(self.out / "trials.csv", csv_lines([row], TRIAL_COLUMNS))
        self._note(row["run"], row["state"], row["error"])
        self.read = (self.read[0], size)

    def catch_up(self) -> bool:
        """Read the rows other processes appended since this one last looked (all rows
        when one of them rebuilt the file). Needs no lock: a line still being written
        is left for the next look. False when the file is missing or ends in a cut line
        (which, under the lock, nobody is still writing)."""
        try:
            with open(self.out / "trials.csv", "rb") as f:
                stat = os.fstat(f.fileno())  # of the file opened, even if replaced since
                if stat.st_ino != self.read[0] or stat.st_size < self.read[1]:  # rebuilt
                    self.runs, self.done, self.read = {}, 0, (stat.st_ino, 0)
                start = self.read[1]
                f.seek(start)
                data = f.read(stat.st_size - start)
        except FileNotFoundError:
            return False
        whole = data[:data.rfind(b"\n") + 1]
        lines = whole.decode(errors="replace").splitlines(keepends=True)
        for cells in csv.reader(lines[1:] if start == 0 else lines):  # not the header
            if len(cells) == len(TRIAL_COLUMNS):
                self._note(*(cells[i] for i in _AT))
        self.read = (stat.st_ino, start + len(whole))
        return len(whole) == len(data) and stat.st_size > 0

    def count_done(self) -> int:
        """Points done so far, whichever process ran them (for the progress line)."""
        self.catch_up()
        return self.done

    def _note(self, run: str, state: str, error: str) -> None:
        done = not rerun_row(state, error or "")
        self.done += done - self.runs.get(run, False)
        self.runs[run] = done


def rebuild(books: ResultFiles, study: optuna.Study, show: bool) -> pd.DataFrame:
    """trials.csv and history.csv from the whole study; the trials table."""
    with saying("writing trials.csv and history.csv from the study", show), books.locked():
        return books.rebuild(study.get_trials(deepcopy=False))


class Views:
    """What is rebuilt from the whole study while trials run, when it is due: the
    results files, tables/ and summary.md, and `refresh` (Visdom's panes)."""

    def __init__(self, out: Path, books: ResultFiles, study: optuna.Study, title: str,
                 maximize: bool, refresh: Callable[[pd.DataFrame, bool], None]) -> None:
        self.out, self.books, self.study = out, books, study
        self.title, self.maximize, self.refresh = title, maximize, refresh
        self.due = 0.0

    def after_trial(self, force: bool = False) -> None:
        if not force and time.monotonic() < self.due:
            return
        started = time.monotonic()
        table = rebuild(self.books, self.study, show=False)
        write_tables(self.out, table, self.maximize, self.title)
        self.refresh(table, self.maximize)
        took = time.monotonic() - started
        self.due = time.monotonic() + max(TABLES_EVERY_S, took / TABLES_SHARE)


def final_tables(out: Path, table: pd.DataFrame, study: optuna.Study, title: str,
                 maximize: bool, show: bool, importance: bool) -> None:
    """summary.md and tables/ at the end, with the hyperparameters' importance when asked
    (a dry run's trials train two batches: their importance would mean nothing)."""
    ranked = None
    if importance:
        with saying(f"hyperparameter importance ({METHOD})", show):
            ranked = rank_hparams(study)
    with saying(f"writing summary.md and tables/ ({len(table):,} trials)", show):
        write_tables(out, table, maximize, title, ranked)


@contextlib.contextmanager
def saying(what: str, show: bool) -> Iterator[None]:
    """One line on stderr if the block takes longer than SLOW_S: after the last trial's
    line, a silent wait would look like a hang."""
    timer = threading.Timer(SLOW_S, lambda: print(f"harness: {what}...", file=sys.stderr,
                                                  flush=True))
    timer.daemon = True
    if show:
        timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if show:
            timer.join()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done, then arrive as they would have:
    a finished trial is told to the study and appended whole, or not at all."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread handles signals
        return
    caught: list[int] = []
    held = {sig: signal.signal(sig, lambda n, _: caught.append(n))
            for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
    if caught:
        signal.raise_signal(caught[0])
