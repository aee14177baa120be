"""A finished trial into the study (the source of every results file) and its rows into
trials.csv and history.csv; and the pruning callback that checks, each epoch, that the
trial is still this worker's.

    recorder = Recorder(study, storage, data, books, progress, lines=True)
    ran += recorder.record(claim, result, lease)  # 1, or 0 when another worker took it
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.book import EpochCallback, attempt_checkpoint, final_checkpoint
from harness.data import Dataset
from harness.errors import warn
from harness.reporting.bookkeeping import ResultFiles, signals_held
from harness.reporting.tables import rerun_row
from harness.sinks.progress import ProgressSink
from harness.sinks.tensorboard import discard_attempt
from harness.study.claims import Claim, latest_attempts
from harness.study.owner import Lease
from harness.types import INTERRUPTED, TrialResult, TrialSpec

DROPPED = "its point runs again and this attempt's result is dropped"


class TrialTaken(RuntimeError):
    """The trial's heartbeat stopped: other workers run its point; this attempt stops."""


def prunes(study: optuna.Study) -> bool:
    """Whether the study's pruner can stop a trial. A grid's (NopPruner) cannot: nothing
    reads its trials' reports while they train, so they are written with the result,
    off the training path, rather than one storage write per member and epoch on it."""
    return not isinstance(study.pruner, optuna.pruners.NopPruner)


def pruning(trial: optuna.Trial, metric: str, lease: Lease) -> EpochCallback:
    """The epoch callback of one trial: report the objective to the pruner and ask it
    (see `prunes`); stop training a point that another worker may be running."""
    asks = prunes(trial.study)

    def on_epoch(metrics: dict[str, float]) -> bool:
        lost = lease.lost()
        if lost:
            raise TrialTaken(f"{lost}; {DROPPED}")
        if not asks:
            return False
        trial.report(metrics[metric], int(metrics["epoch"]))
        return trial.should_prune()

    return on_epoch


class Recorder:
    """Records the results of one process's trials."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage,
                 data: Dataset, books: ResultFiles, progress: ProgressSink, lines: bool
                 ) -> None:
        self.study, self.storage, self.data = study, storage, data
        self.books, self.progress, self.lines = books, progress, lines

    def record(self, claim: Claim, result: TrialResult, lease: Lease) -> int:
        """Record a result in the study and its rows in the files; 1, or 0 when the
        trial was no longer this worker's."""
        # Told and appended as one: beside other processes' rebuilds, and whole even if
        # Ctrl-C comes (it arrives once the trial is recorded).
        with signals_held(), self.books.locked():
            recorded = self.store(claim, result, lease)
            if recorded:
                self.books.append(self.storage.get_trial(claim.trial_id),
                                  lambda: self.study.get_trials(deepcopy=False))
            self._settle_files(result.spec, kept=bool(recorded))
        done = recorded and not rerun_row(result.state, result.error)
        # Its place among the sweep's done points, whichever process ran them.
        self.progress.recorded(result, self.books.count_done() if done else None)
        return recorded

    def _settle_files(self, spec: TrialSpec, kept: bool) -> None:
        """The attempt's checkpoint becomes its run's (its row is the study's now), or,
        when its result was dropped, it goes with the attempt's TensorBoard events: a
        checkpoint and a run always show the attempt that trials.csv reports."""
        checkpoints = self.books.out / "checkpoints"
        attempt = attempt_checkpoint(checkpoints, spec)
        try:
            if not kept:
                attempt.unlink(missing_ok=True)
                discard_attempt(self.books.out / "tb", spec)
            elif attempt.exists():
                os.replace(attempt, final_checkpoint(checkpoints, spec))
        except OSError as err:
            warn(f"{spec.run}: its checkpoint could not be put in place ({err})")

    def store(self, claim: Claim, result: TrialResult, lease: Lease) -> int:
        """Store the result in the study: 1, or 0 when the trial was no longer this
        worker's (its result is dropped, with one line: the trial's progress line when
        it stopped for that)."""
        lost = lease.lost()
        if lost:
            said = self.lines and result.error.startswith(TrialTaken.__name__)
            return _drop(claim, lost, lease, said)
        trial = claim.trial
        try:
            if not prunes(self.study):
                _report(trial, result)
            # One attribute, one database write; `error` apart, as resuming reads it.
            trial.set_user_attr("result", {
                "history": result.history, "hparams": result.spec.params,
                "duration_s": result.duration_s, "samples_per_s": result.samples_per_s,
                "best_epoch": result.best_epoch, "value": result.value,
                "device": str(self.data.device), "dataset": self.data.name,
                "val_split": self.data.val_digest})
            trial.set_user_attr("error", result.error)
            if result.state == "COMPLETE":
                self.study.tell(trial, result.value)
            else:
                self.study.tell(trial, state=TrialState[result.state])
        except optuna.exceptions.UpdateFinishedTrialError:  # taken while being recorded
            why = "another worker took it over when its heartbeat stopped"
            return _drop(claim, why, lease, False)
        return 1


def _report(trial: optuna.Trial, result: TrialResult) -> None:
    """Each epoch's objective, as the epoch callback reports it to a pruner that can
    stop trials: every epoch but one that diverged (its trial stops before)."""
    history = result.history
    if result.error.startswith("diverged"):
        history = history[:-1]
    for metrics in history:
        trial.report(metrics[result.metric], int(metrics["epoch"]))


def settle_leftovers(out: Path, trials: list[FrozenTrial]) -> None:
    """Attempt checkpoints a killed process left between telling the study and putting
    them in place (`kill -9` there): a recorded attempt's becomes its run's, a dropped
    one's goes. Those of trials still running (in another process) are left alone."""
    checkpoints = out / "checkpoints"
    by_number = {t.number: t for t in trials}
    latest = latest_attempts(trials)
    for path in checkpoints.glob(".*.t*.pt"):
        run, _, number = path.name[1:-len(".pt")].rpartition(".t")
        trial = by_number.get(int(number)) if number.isdigit() else None
        if trial is None or not trial.state.is_finished():
            continue
        point = trial.user_attrs.get("point")
        kept = "result" in trial.user_attrs and latest.get(point) is trial
        with contextlib.suppress(OSError):
            if kept:
                os.replace(path, checkpoints / f"{run}.pt")
            else:
                path.unlink()


def _drop(claim: Claim, why: str, lease: Lease, said: bool) -> int:
    """A trial that is no longer this worker's: make sure its point runs again (another
    worker may not have taken it yet) and say so, unless that is `said` already."""
    lease.give_up(f"{INTERRUPTED}: {why}")
    if not said:
        warn(f"{claim.spec.run} (trial {claim.spec.number}): {why}; {DROPPED}")
    return 0
