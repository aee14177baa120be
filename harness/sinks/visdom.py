"""Visdom: the live view of a sweep, one environment shared by all its trials.

Windows: test accuracy and train loss with one trace per trial (legend: the run name),
a leaderboard, a progress pane and, for the optuna method, the best objective so far.
Visdom must never cost a result: no server, or a server that goes away, is one warning
line on stderr and the sweep goes on without it.
"""

from __future__ import annotations

import html
import logging
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pandas as pd

from harness.config import Config, VisdomConfig
from harness.types import INTERRUPTED, RETRYABLE

if TYPE_CHECKING:
    from torch import nn

    from harness.types import TrialResult, TrialSpec

CURVES = {"test_acc": "test accuracy", "train_loss": "train loss"}
# Seconds to connect and to wait for each answer. Visdom's client waits for an answer
# forever, so a server that accepts and never answers would stall the sweep; with
# these, it costs one wait and one warning.
TIMEOUT_S = (3.0, 5.0)


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
    def __init__(self, settings: VisdomConfig, config: Config, total: int) -> None:
        self.config, self.total = config, total
        self.env = settings.env or config.name
        self.address = f"{settings.server}:{settings.port}"
        self.started = time.monotonic()
        self.run = ""
        self.first_point = True
        self.viz: Any = None
        self._try(self._connect, settings)

    @property
    def active(self) -> bool:
        return self.viz is not None

    def start(self, spec: TrialSpec, model: nn.Module) -> None:
        self.run = spec.run
        self.first_point = True

    def log(self, metrics: dict[str, float], step: int) -> None:
        if "test_acc" in metrics:
            self._guard(self._append, metrics, step)

    def finish(self, result: TrialResult) -> None:
        pass  # the panes are refreshed from trials.csv, see refresh()

    def refresh(self, trials: pd.DataFrame, maximize: bool) -> None:
        """Redraw the leaderboard, progress and best-so-far panes from the sweep's table."""
        self._guard(self._panes, trials, maximize)

    def close(self) -> None:
        self._guard(lambda: self.viz.save([self.env]))

    # ------------------------------------------------------------------ internals

    def _connect(self, settings: VisdomConfig) -> None:
        logging.getLogger("visdom").setLevel(logging.CRITICAL)  # we say it once, below
        viz = _client()(server=settings.server, port=settings.port, env=self.env,
                        raise_exceptions=True, use_incoming_socket=False)
        if not viz.check_connection(timeout_seconds=0):
            raise ConnectionError("no server answers")
        self.viz = viz

    def _append(self, metrics: dict[str, float], step: int) -> None:
        """A trial's first point replaces its trace (a rerun of an interrupted trial must
        not double it); later points append. Appending also creates a missing window:
        creating it outright would wipe the traces other workers put there."""
        for key, title in CURVES.items():
            opts = {"title": f"{title} ({self.env})", "xlabel": "epoch", "ylabel": title,
                    "showlegend": True, "width": 640, "height": 420}
            point = {"X": [step], "Y": [metrics[key]], "win": key, "env": self.env,
                     "name": self.run, "opts": opts}
            reply = self.viz.line(**point, update="replace" if self.first_point else "append")
            if reply == "win does not exist":
                self.viz.line(**point, update="append")
        self.first_point = False

    def _panes(self, trials: pd.DataFrame, maximize: bool) -> None:
        from harness.tables import top_trials

        top = top_trials(trials, 10, maximize).round(4)
        table = top.to_html(index=False, border=0, classes="harness-leaderboard")
        self.viz.text(LEADERBOARD_STYLE + table, win="leaderboard", env=self.env,
                      opts={"title": f"leaderboard ({self.env})", "width": 1000, "height": 280})
        self.viz.text(self._progress_html(trials), win="progress", env=self.env,
                      opts={"title": f"progress ({self.env})", "width": 330, "height": 200})
        if self.config.search.method == "optuna":
            self._best_so_far(trials, maximize)

    def _progress_html(self, trials: pd.DataFrame) -> str:
        # An interrupted trial is not done: its point runs again.
        again = trials["error"].fillna("").astype(str).str.startswith((INTERRUPTED, RETRYABLE))
        trials = trials[~again]
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

    def _try(self, action: Any, *args: Any) -> None:
        """Run a Visdom call; on any failure warn once and stop using Visdom."""
        try:
            action(*args)
        except Exception as err:  # requests, visdom and socket errors all end the same
            self.viz = None
            reason = html.unescape(str(err).splitlines()[0]) if str(err) else type(err).__name__
            if "Timeout" in type(err.__context__).__name__:  # requests' Read/ConnectTimeout
                reason = "the server did not answer in time"
            print(f"harness: warning: visdom at {self.address} failed ({reason}); the live "
                  "view is off, the sweep goes on", file=sys.stderr)


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
