"""Progress on stderr: a bar over the sweep's trials and one line per finished trial."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from torch import nn

    from harness.types import TrialResult, TrialSpec


class ProgressSink:
    """`done` counts the sweep's finished trials, whichever worker ran them."""

    def __init__(self, total: int, done: Callable[[], int], lines: bool = True,
                 bar: bool = True, metric: str = "val_acc") -> None:
        self.total, self.count, self.lines = total, done, lines
        self.metric = metric  # the objective, shown on the bar
        # The bar only draws on a terminal; the per-trial lines print anywhere.
        self.bar = tqdm(total=total, initial=done(), unit="trial", file=sys.stderr,
                        disable=True if not bar else None, dynamic_ncols=True,
                        leave=False)

    def start(self, spec: TrialSpec, model: nn.Module) -> None:
        self.bar.set_description(spec.run)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.metric in metrics:
            self.bar.set_postfix({"epoch": step, self.metric: f"{metrics[self.metric]:.4f}"})

    def finish(self, result: TrialResult) -> None:
        """Nothing yet: the line waits until the study has the result (`recorded`)."""

    def recorded(self, result: TrialResult, position: int | None) -> None:
        """`result` is in the study; `position` is its place among the sweep's done
        trials, whichever process ran them (None: not done, its point runs again)."""
        self.bar.update(self.count() - self.bar.n)
        if self.lines:
            tqdm.write(format_result(result, position, self.total), file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def format_result(result: TrialResult, done: int | None, total: int) -> str:
    """One line: position (`-` for a trial whose point runs again), run, state, the
    objective at the best epoch and that epoch's test accuracy, time, reason."""
    width = len(str(total))
    metric, best = result.metric, result.best
    if best:
        test = "" if metric == "test_acc" else f" test_acc {best['test_acc']:.4f}"
        score = f"{metric} {best[metric]:.4f}{test} (epoch {result.best_epoch})  "
    else:  # the error says why (diverged in its first epoch, an exception), or:
        score = "" if result.history or result.error else "no epoch finished  "
    reason = f"  {result.error}" if result.error else ""
    position = "-" if done is None else done
    return (f"[{position:>{width}}/{total}] {result.spec.run:<30} {result.state:<8} "
            f"{score}{result.duration_s:.1f}s{reason}")
