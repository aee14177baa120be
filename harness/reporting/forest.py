"""The forest plot of a leaderboard: one row per configuration, best first, its mean and
95% interval over its seeds, coloured by its verdict against the leader, beside the
leader's mean and the margin. Its rows are made here once; report.html draws them with
matplotlib, Visdom's pane with plotly (`plotly_figure`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness import stats
from harness.reporting import bins, tables
from harness.reporting.tables import Spec

MAX_ROWS = 40  # configurations drawn, best first
COLOURS = {stats.LEADER: "#1a7f37", stats.EQUIVALENT: "#2f81f7",
           stats.UNDETERMINED: "#bf8700", stats.WORSE: "#cf222e"}
NOTE = ("Each configuration's mean and 95% interval over its seeds, best first, coloured "
        "by its verdict against the leader (the solid line); the dashed line is the margin "
        "within which a difference does not matter. A configuration of one seed has no "
        "interval.")


def note(board: pd.DataFrame) -> str:
    """What the plot shows, and that it shows the top MAX_ROWS only when there are more."""
    more = (f" The top {MAX_ROWS} of {len(board)} configurations are drawn "
            "(tables/leaderboard.csv has them all)." if len(board) > MAX_ROWS else "")
    return NOTE + more


def rows(board: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """What a forest plot draws, best first: label ('1. adam, 0.01, 64'), mean, the
    interval's reach below and above it (0 without one), verdict."""
    top = board.head(MAX_ROWS)
    keys = tables.config_columns(board, spec)
    labels = [f"{row['rank']}. " + ", ".join(bins.labels([row[k]])[row[k]] for k in keys)
              for _, row in top.iterrows()]
    return pd.DataFrame({
        "label": labels, "mean": top["mean"].to_numpy(),
        "below": (top["mean"] - top["ci95_low"]).fillna(0).clip(lower=0).to_numpy(),
        "above": (top["ci95_high"] - top["mean"]).fillna(0).clip(lower=0).to_numpy(),
        "verdict": top["verdict"].to_numpy()})


def margin_line(board: pd.DataFrame, spec: Spec) -> float | None:
    """Where the margin lies, on the worse side of the leader's mean; None without one."""
    if not spec.margin or board.empty:
        return None
    return float(board.iloc[0]["mean"]) + (-1 if spec.maximize else 1) * spec.margin


def plotly_figure(board: pd.DataFrame, spec: Spec, title: str) -> dict[str, Any]:
    """The forest plot as plotly data and layout (a trace per verdict, best at the top)."""
    drawn = rows(board, spec)
    data = []
    for verdict, colour in COLOURS.items():
        part = drawn[drawn["verdict"] == verdict]
        if part.empty:
            continue
        data.append({"type": "scatter", "mode": "markers", "name": verdict,
                     "x": part["mean"].tolist(), "y": part["label"].tolist(),
                     "marker": {"color": colour, "size": 8},
                     "error_x": {"type": "data", "symmetric": False,
                                 "array": part["above"].tolist(),
                                 "arrayminus": part["below"].tolist(), "color": colour}})
    shapes = []
    lines = [(float(board.iloc[0]["mean"]), "solid"), (margin_line(board, spec), "dash")]
    for x, dash in lines:
        if x is not None:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x,
                           "y0": 0, "y1": 1, "line": {"color": "#555", "dash": dash,
                                                      "width": 1}})
    layout = {"title": title, "showlegend": True, "shapes": shapes,
              "xaxis": {"title": f"mean {spec.metric} and 95% interval over seeds"},
              "yaxis": {"autorange": "reversed", "type": "category", "automargin": True},
              "margin": {"l": 200, "r": 30, "t": 50, "b": 50}}
    return {"data": data, "layout": layout}
