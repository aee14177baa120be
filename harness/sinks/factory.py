"""The sinks of one process's trials, made per trial: one progress bar and one Visdom
connection for all, a TensorBoard run and a Visdom trace per trial. Each is wrapped by
the guard, and a kind that fails once is off for every trial after (one switch per kind).

    sinks = SweepSinks(config, out, data, live, done, total, lines=True, bar=True)
    run_trial(spec, training, data, sinks.for_trial(), ...)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from harness.config import Config, VisdomConfig
from harness.data import Dataset
from harness.errors import ConfigError
from harness.label import read_label
from harness.sinks.base import Sink
from harness.sinks.guard import Guarded, Switch
from harness.sinks.progress import ProgressSink
from harness.sinks.tensorboard import TensorBoardSink
from harness.sinks.visdom import VisdomSink, parse_url
from harness.study.search import total_points

EXAMPLES = 256  # test digits a trial's prediction grid picks from


def live_view(config: Config, flag: str | None, out: Path, say: bool) -> VisdomSink | None:
    """The live view, from --visdom (`flag`: a URL or off) or else logging.visdom."""
    if flag == "off":
        return None
    settings = config.logging.visdom
    if flag is not None:
        env = settings.env if settings else ""
        settings = dataclasses.replace(visdom_url(flag), env=env)
    if settings is None:
        return None
    return VisdomSink(settings, config, total_points(config), out / "history.csv", say=say)


def visdom_url(url: str) -> VisdomConfig:
    try:
        return parse_url(url)
    except ValueError as err:
        raise ConfigError(f"--visdom: {err}; or pass --visdom off") from None


class SweepSinks:
    def __init__(self, config: Config, out: Path, data: Dataset, live: VisdomSink | None,
                 done: Callable[[], int], total: int, lines: bool, bar: bool) -> None:
        # `done` counts the points done, whichever process ran them, from trials.csv's
        # rows appended since it last looked: O(1) per trial; `total`: the sweep's points.
        self.progress = ProgressSink(total, done, lines=lines, bar=bar,
                                     metric=config.objective.metric)
        self.bar = Guarded(self.progress)
        self.config, self.tb, self.live = config, out / "tb", live
        self.label = read_label(out, config.name)  # the sweep's, in every run's hparams
        self.examples = (data.x_test[:EXAMPLES], data.y_test[:EXAMPLES])
        self.switches = {"tensorboard": Switch(), "visdom": Switch()}

    def for_trial(self) -> list[Sink]:
        """The sinks of one trial."""
        sinks: list[Sink] = [self.bar]
        if self.config.logging.tensorboard is not None:
            sinks.append(Guarded(TensorBoardSink(self.tb, self.config, self.examples,
                                                 self.label),
                                 self.switches["tensorboard"]))
        if self.live is not None:
            sinks.append(Guarded(self.live.trace(), self.switches["visdom"], "visdom"))
        return sinks

    def live_url(self) -> str:
        """The live view's URL while it is on, else ''."""
        return self.live.url if self.live is not None and self.live.active else ""

    def refresh(self, table: pd.DataFrame, maximize: bool) -> None:
        if self.live is not None:
            self.live.refresh(table, maximize)

    def close(self) -> None:
        self.progress.close()
        if self.live is not None:
            self.live.close()
