"""Progress on stderr: a bar over the sweep's trials and one line per finished trial."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from tqdm import tqdm

from harness.trial import best_test_acc

if TYPE_CHECKING:
    from torch import nn

    from harness.trial import TrialResult, TrialSpec


class ProgressSink:
    """`done` counts the sweep's finished trials, whichever worker ran them."""

    def __init__(self, total: int, done: Callable[[], int], lines: bool = True,
                 bar: bool = True) -> None:
        self.total, self.count, self.lines = total, done, lines
        # The bar only draws on a terminal; the per-trial lines print anywhere.
        self.bar = tqdm(total=total, initial=done(), unit="trial", file=sys.stderr,
                        disable=True if not bar else None, dynamic_ncols=True,
                        leave=False)

    def start(self, spec: TrialSpec, model: nn.Module) -> None:
        self.bar.set_description(spec.run)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if "test_acc" in metrics:
            self.bar.set_postfix(epoch=step, test_acc=f"{metrics['test_acc']:.4f}")

    def finish(self, result: TrialResult) -> None:
        # The study has not recorded this result yet: it is the next one done.
        done = self.count() + 1
        self.bar.update(done - self.bar.n)
        if self.lines:
            tqdm.write(format_result(result, done, self.total), file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def format_result(result: TrialResult, done: int, total: int) -> str:
    """One line: position, run, state, best accuracy and epoch, time, reason."""
    width = len(str(total))
    best = best_test_acc(result.history)
    acc = "no epoch finished" if best is None else f"best_test_acc {best:.4f}"
    epoch = f" (epoch {result.best_epoch})" if result.best_epoch else ""
    reason = f"  {result.error}" if result.error else ""
    return (f"[{done:>{width}}/{total}] {result.spec.run:<30} {result.state:<8} "
            f"{acc}{epoch}  {result.duration_s:.1f}s{reason}")
