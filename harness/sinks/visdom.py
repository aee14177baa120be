"""Visdom: the live view of a sweep, one environment shared by all its trials.

Windows: test accuracy and train loss with one trace per trial (legend: the run name),
a leaderboard (the top trials, each with its configuration's verdict), the verdicts
(report.html's forest plot), a progress pane and, for the optuna method, the best
objective so far.
Past tables.CURVES_EACH finished trials the curve windows are redrawn from history.csv
(every few seconds and at the end): the top trials by the objective, the others as one
band (median and quartiles per epoch), and the trials still running; the title says so.
Visdom must never cost a result: no server, or a server that goes away, is one warning
line on stderr and the sweep goes on without it.
"""

from __future__ import annotations

import html
import json
import logging
import math
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from harness.config import Config, VisdomConfig, to_dict
from harness.errors import first_line
from harness.label import read_label
from harness.reporting import forest, summary, tables
from harness.types import INTERRUPTED, RETRYABLE

if TYPE_CHECKING:
    from torch import nn

    from harness.types import TrialResult, TrialSpec

CURVES = {"test_acc": "test accuracy", "train_loss": "train loss"}
# Seconds to connect and to wait for each answer. Visdom's client waits for an answer
# forever, so a server that accepts and never answers would stall the sweep; with
# these, it costs one wait and one warning.
TIMEOUT_S = (3.0, 5.0)
# A redraw costs about 0.1 s on a busy 2-core machine (as much at 30 trials as at 2,000):
# tiny trials would spend more time redrawing than training. In between, finished
# trials keep their live traces.
REDRAW_EVERY_S = 5.0
# The band's traces: quartile 1, then 3 filled down to it ('tonexty'), then the median.
BAND = ("others: quartile 1", "others: quartile 3", "others: median")
BAND_STYLE = {
    BAND[0]: {"line": {"color": "rgba(120,120,120,0.4)", "width": 1}},
    BAND[1]: {"line": {"color": "rgba(120,120,120,0.4)", "width": 1}, "fill": "tonexty",
              "fillcolor": "rgba(120,120,120,0.2)"},
    BAND[2]: {"line": {"color": "rgb(90,90,90)", "dash": "dash"}},
}


LEADERBOARD_STYLE = ("<style>.harness-leaderboard { font-size: 13px; white-space: nowrap; "
                     "border-collapse: collapse } .harness-leaderboard th, "
                     ".harness-leaderboard td { padding: 1px 10px; text-align: right }"
                     "</style>")


def parse_url(url: str) -> VisdomConfig:
    """'http://host:8097' -> VisdomConfig(server='http://host', port=8097)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise ValueError(f"{url!r} is not a URL such as http://localhost:8097")
    return VisdomConfig(server=f"{parts.scheme}://{parts.hostname}", port=parts.port or 8097)


class VisdomSink:
    def __init__(self, settings: VisdomConfig, config: Config, total: int,
                 history: Path | None = None, say: bool = True) -> None:
        """`history`: the sweep's history.csv, which the curve windows are redrawn from
        once they would hold too many traces; None: they never are."""
        self.config, self.total, self.history = config, total, history
        label = read_label(history.parent, config.name) if history else config.name
        self.env = settings.env or label  # each sweep its own: never another's traces
        self.address = f"{settings.server}:{settings.port}"
        self.optional = settings.auto  # no server: say how to start one, not a warning
        self.say = say  # that line: once per sweep, not per worker, never when --quiet
        self.started = time.monotonic()
        self.run = ""
        self.first_point = True
        self.note = ""  # what the curve windows' titles say beyond the metric
        self.pending: tuple[pd.DataFrame, bool] | None = None  # a refresh not yet drawn
        self.redraw_due = 0.0
        self.viz: Any = None
        self.lock = threading.RLock()
        self._try(self._connect, settings)

    @property
    def active(self) -> bool:
        return self.viz is not None

    def start(self, spec: TrialSpec, model: nn.Module) -> None:
        self.run = spec.run
        self.first_point = True

    def log(self, metrics: dict[str, float], step: int) -> None:
        if "test_acc" in metrics:
            self._guard(self._append, metrics, step, self)

    def trace(self) -> VisdomTrace:
        """A trial's own view onto this connection, for trials that run at once."""
        return VisdomTrace(self)

    def finish(self, result: TrialResult) -> None:
        pass  # the panes are refreshed from trials.csv, see refresh()

    def refresh(self, trials: pd.DataFrame, maximize: bool) -> None:
        """Redraw the leaderboard, progress and best-so-far panes from the sweep's table,
        and the curve windows (at most every REDRAW_EVERY_S, and at close)."""
        self._guard(self._panes, trials, maximize)
        self.pending = (trials, maximize)
        if time.monotonic() >= self.redraw_due:
            self._redraw_curves(trials, maximize)

    def close(self) -> None:
        if self.pending is not None:
            self._redraw_curves(*self.pending)
        self._guard(lambda: self.viz.save([self.env]))

    # ------------------------------------------------------------------ internals

    def _connect(self, settings: VisdomConfig) -> None:
        logging.getLogger("visdom").setLevel(logging.CRITICAL)  # we say it once, below
        viz = _client()(server=settings.server, port=settings.port, env=self.env,
                        raise_exceptions=True, use_incoming_socket=False)
        if not viz.check_connection(timeout_seconds=0):
            raise ConnectionError("no server answers")
        self.viz = viz

    def _append(self, metrics: dict[str, float], step: int,
                trace: VisdomSink | VisdomTrace) -> None:
        """A trial's first point replaces its trace (a rerun of an interrupted trial must
        not double it); later points append. Appending also creates a missing window:
        creating it outright would wipe the traces other workers put there."""
        for key, title in CURVES.items():
            # Visdom sets a window's title and size on every update: keep the redrawn ones.
            opts = self._curve_opts(title, self.note)
            point = {"X": [step], "Y": [metrics[key]], "win": key, "env": self.env,
                     "name": trace.run, "opts": opts}
            reply = self.viz.line(**point, update="replace" if trace.first_point else "append")
            if reply == "win does not exist":
                self.viz.line(**point, update="append")
        trace.first_point = False

    def _curve_opts(self, title: str, note: str = "") -> dict[str, Any]:
        """A curve window's options. Markers: a curve of one epoch is a single point,
        which a line alone never shows. Epochs are whole numbers on the axis (about ten
        ticks); a loss is on a log axis, as report.html draws it, so that one diverged
        trial does not flatten every other curve."""
        epochs = self.config.train.epochs
        opts = {"title": f"{title} ({self.env})" + (f": {note}" if note else ""),
                "xlabel": "epoch", "ylabel": title, "showlegend": True, "markers": True,
                "markersize": 5, "width": 900 if note else 640, "height": 420,
                "xtickstep": max(1, math.ceil(epochs / 10))}
        return opts | ({"ytype": "log"} if title == CURVES["train_loss"] else {})

    def _read_history(self) -> pd.DataFrame | None:
        """history.csv's curves; None when it cannot be read now (the redraw waits for
        the next trial rather than turning the live view off)."""
        if self.history is None:
            return None
        try:
            return pd.read_csv(self.history, usecols=["run", "epoch", *CURVES])
        except (OSError, ValueError):
            return None

    def _redraw_curves(self, trials: pd.DataFrame, maximize: bool) -> None:
        """Once they would be too crowded, the curve windows from history.csv."""
        self.pending = None
        done = trials[~_interrupted(trials)]  # their points run again
        split = tables.curve_split(done, maximize, self.config.objective.metric)
        history = self._read_history() if split is not None else None
        if split is not None and history is not None:
            self.redraw_due = time.monotonic() + REDRAW_EVERY_S
            for key, title in CURVES.items():
                self._guard(self._redraw, key, title, split, history, set(done["run"]))

    def _redraw(self, key: str, title: str, split: tables.CurveSplit,
                history: pd.DataFrame, done: set[str]) -> None:
        """The window anew: the band, the top trials, and what other workers' running
        trials have drawn so far. Traces of one length go in one call (the common
        case), the others one by one."""
        stats = tables.band(history, split.others, key)
        traces = [(name, stats["epoch"].tolist(), stats[column].tolist())
                  for name, column in zip(BAND, ("q1", "q3", "median"), strict=True)]
        for run in split.top["run"]:
            rows = history[history["run"] == run]
            traces.append((run, rows["epoch"].tolist(), rows[key].tolist()))
        traces += [(t["name"], t["x"], t["y"]) for t in self._traces(key)
                   if t.get("name") not in done and t.get("name") not in BAND]
        traces = [trace for trace in map(_finite, traces) if trace[1]]
        if not traces:
            return
        self.note = split.note()
        epochs = traces[0][1]
        together = [t for t in traces if t[1] == epochs]
        opts = self._curve_opts(title, self.note) | {"traceopts": {"plotly": BAND_STYLE}}
        self.viz.line(X=np.array([x for _, x, _ in together], dtype=float).T,
                      Y=np.array([y for _, _, y in together], dtype=float).T, win=key,
                      env=self.env, opts=opts | {"legend": [t[0] for t in together]})
        for name, x, y in (t for t in traces if t[1] != epochs):
            self.viz.line(X=np.array(x, dtype=float), Y=np.array(y, dtype=float), win=key,
                          env=self.env, name=name, update="replace", opts=dict(opts))

    def _traces(self, win: str) -> list[dict[str, Any]]:
        """The traces in a window; none when it does not exist (Visdom then answers
        with an error page, not JSON)."""
        try:
            return json.loads(self.viz.get_window_data(win, env=self.env))["content"]["data"]
        except (ValueError, KeyError, TypeError):
            return []

    def _panes(self, trials: pd.DataFrame, maximize: bool) -> None:
        spec = tables.Spec.from_config(to_dict(self.config))
        board = summary.build(trials, spec).board
        top = tables.top_trials(trials, 10, maximize, self.config.objective.metric)
        top = tables.with_verdicts(top, trials, board, spec).round(4)
        table = top.to_html(index=False, border=0, classes="harness-leaderboard")
        self.viz.text(LEADERBOARD_STYLE + table, win="leaderboard", env=self.env,
                      opts={"title": f"leaderboard ({self.env})", "width": 1000, "height": 280})
        self.viz.text(self._progress_html(trials), win="progress", env=self.env,
                      opts={"title": f"progress ({self.env})", "width": 330, "height": 200})
        if self.config.search.method == "optuna":
            self._best_so_far(trials, maximize)
        self._verdicts(board, spec)

    def _verdicts(self, board: pd.DataFrame, spec: tables.Spec) -> None:
        """The forest plot of the leaderboard's verdicts, as report.html draws it."""
        if board.empty:
            return
        figure = forest.plotly_figure(board, spec, f"verdicts ({self.env})")
        height = 140 + 26 * min(len(board), forest.MAX_ROWS)
        self.viz._send({"data": figure["data"], "layout": figure["layout"], "win": "verdicts",
                        "eid": self.env, "opts": {"width": 640, "height": height}})

    def _progress_html(self, trials: pd.DataFrame) -> str:
        trials = trials[~_interrupted(trials)]  # not done: its point runs again
        done = len(trials)
        elapsed = time.monotonic() - self.started
        failed = int((trials["state"] == "FAIL").sum())
        pruned = int((trials["state"] == "PRUNED").sum())
        mean = trials["duration_s"].mean() if done else float("nan")
        left = max(self.total - done, 0) * mean if done else float("nan")
        return (f"{done} / {self.total} trials done<br>{failed} failed, "
                f"{pruned} pruned<br>elapsed {elapsed:.0f} s<br>"
                f"about {left:.0f} s left" + ("" if done else " (unknown)"))

    def _best_so_far(self, trials: pd.DataFrame, maximize: bool) -> None:
        done = trials[trials["state"] == "COMPLETE"].sort_values("trial")
        if done.empty:
            return
        best = done["value"].cummax() if maximize else done["value"].cummin()
        self.viz.line(X=done["trial"].tolist(), Y=best.tolist(), win="best_so_far",
                      env=self.env, opts={"title": f"best objective so far ({self.env})",
                                          "xlabel": "trial", "ylabel": "objective"})

    def _guard(self, action: Any, *args: Any) -> None:
        if self.viz is not None:
            self._try(action, *args)

    @property
    def url(self) -> str:
        """Where a person opens this sweep's environment."""
        return f"{self.address}/env/{self.env}"

    def _try(self, action: Any, *args: Any) -> None:
        """Run a Visdom call; on any failure warn once and stop using Visdom. One call
        at a time: a population's members are recorded (and the panes refreshed) on a
        thread of their own while the next epoch's traces are drawn."""
        try:
            with self.lock:
                action(*args)
        except Exception as err:  # requests, visdom and socket errors all end the same
            if self.optional and self.viz is None:  # auto, and no server answered
                if self.say:
                    print(f"harness: no Visdom server at {self.address} for the live "
                          "view; start one with: python -m harness visdom", file=sys.stderr)
                return
            self.viz = None
            reason = html.unescape(first_line(err))
            if "Timeout" in type(err.__context__).__name__:  # requests' Read/ConnectTimeout
                reason = "the server did not answer in time"
            print(f"harness: warning: visdom at {self.address} failed ({reason}); the live "
                  "view is off, the sweep goes on", file=sys.stderr)


class VisdomTrace:
    """One trial's trace on a shared VisdomSink: trials that train at once each have
    their own run name and first point; the connection and its one warning are shared."""

    def __init__(self, live: VisdomSink) -> None:
        self.live, self.run, self.first_point = live, "", True

    def start(self, spec: TrialSpec, model: nn.Module | None) -> None:
        self.run, self.first_point = spec.run, True

    def log(self, metrics: dict[str, float], step: int) -> None:
        if "test_acc" in metrics:
            self.live._guard(self.live._append, metrics, step, self)

    def finish(self, result: TrialResult) -> None:
        pass  # the panes are refreshed from trials.csv, see VisdomSink.refresh()


def _client() -> type:
    """Visdom's client with timeouts on every request (its constructor's included)."""
    import requests
    from visdom import Visdom

    class Client(Visdom):
        def _handle_post(self, url: str, data: Any = None) -> str:
            self._last_post_time = time.time()
            try:
                return self.session.post(url, data=data or {}, timeout=TIMEOUT_S).text
            except requests.Timeout:
                raise
            except requests.ConnectionError:  # a kept-alive connection the server closed
                with self._session_lock:
                    stale, self._session = self._session, None
                if stale is not None:
                    stale.close()
                return self.session.post(url, data=data or {}, timeout=TIMEOUT_S).text

    return Client


def _interrupted(trials: pd.DataFrame) -> pd.Series:
    """Trials whose point runs again: interrupted, or cut off by a fault of the machine."""
    errors = trials["error"].astype(object).fillna("").astype(str)
    return errors.str.startswith((INTERRUPTED, RETRYABLE))


def _finite(trace: tuple[str, list, list]) -> tuple[str, list, list]:
    """A trace without its points that JSON cannot carry (a diverged loss, no value)."""
    name, x, y = trace
    keep = [i for i, v in enumerate(y) if v is not None and np.isfinite(v)]
    return name, [x[i] for i in keep], [y[i] for i in keep]
