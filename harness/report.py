"""report.html: one self-contained file (plots embedded as PNG, nothing from the network)
that answers which configuration wins, by how much, and whether it is real."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from harness import tables  # noqa: E402
from harness.files import atomic_write_text  # noqa: E402

TOP = 5  # learning curves of the top trials
STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
img{max-width:100%}.note{color:#555}"""


def write_report(out: Path, trials: pd.DataFrame, history: pd.DataFrame, maximize: bool,
                 title: str) -> Path:
    path = out / "report.html"
    atomic_write_text(path, render(trials, history, maximize, title))
    return path


def render(trials: pd.DataFrame, history: pd.DataFrame, maximize: bool, title: str) -> str:
    board = tables.leaderboard(trials, maximize)
    sections = [f"<h1>{html.escape(title)}</h1>",
                f"<p>{html.escape(tables.state_counts(trials))}</p>"]
    if not board.empty:
        sections += ["<h2>Leaderboard</h2>", _table(board.head(20)),
                     "<p class=note>mean and 95% confidence interval of the objective over "
                     "seeds; n = seeds that completed.</p>"]
        sections += ["<h2>Learning curves of the top trials</h2>",
                     _img(_curves(trials, history, maximize))]
        sections += ["<h2>Objective by learning rate and batch size</h2>",
                     _img(_heatmaps(tables.pivots(trials)))]
        sections += ["<h2>Objective against each hyperparameter</h2>",
                     _img(_slices(trials))]
    seeds = tables.seed_tests(trials, maximize)
    if not seeds.empty:
        sections += ["<h2>Is the difference real? Welch's t-test against the leader</h2>",
                     _table(seeds), "<p class=note>worse = significantly worse than the "
                     f"leader at p &lt; {tables.ALPHA}.</p>"]
    bad = tables.failures(trials)
    if not bad.empty:
        sections += ["<h2>Failed and pruned trials</h2>", _table(bad)]
    body = "\n".join(sections)
    return (f"<!doctype html>\n<html><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _curves(trials: pd.DataFrame, history: pd.DataFrame, maximize: bool) -> plt.Figure:
    top = tables.top_trials(trials, TOP, maximize)
    top = top[top["state"] == "COMPLETE"]
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(12, 4))
    for run in top["run"]:
        rows = history[history["run"] == run]
        acc.plot(rows["epoch"], rows["test_acc"], marker="o", label=run)
        loss.plot(rows["epoch"], rows["train_loss"], marker="o", label=run)
    for ax in (acc, loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    loss.set(xlabel="epoch", ylabel="train loss", title="train loss", yscale="log")
    acc.legend(fontsize=8)
    return fig


def _heatmaps(pivots: dict[str, pd.DataFrame]) -> plt.Figure:
    fig, axes = plt.subplots(1, max(len(pivots), 1), figsize=(4.5 * max(len(pivots), 1), 3.8),
                             squeeze=False)
    for ax, (name, pivot) in zip(axes[0], pivots.items(), strict=False):
        image = ax.imshow(pivot.to_numpy(), cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(pivot.columns)), [str(c) for c in pivot.columns])
        ax.set_yticks(range(len(pivot.index)), [f"{i:g}" for i in pivot.index])
        ax.set(title=name, xlabel="batch size", ylabel="lr")
        middle = (pivot.max().max() + pivot.min().min()) / 2
        for (i, j), value in pd.DataFrame(pivot.to_numpy()).stack().items():
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=9,
                    color="black" if value > middle else "white")
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


def _slices(trials: pd.DataFrame) -> plt.Figure:
    done = trials[trials["state"] == "COMPLETE"]
    columns = [c for c in ("lr", "batch_size", "optimizer", "momentum", "weight_decay")
               if done[c].nunique() > 1] or ["lr"]
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.5), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        if done[column].dtype == object:
            names = sorted(done[column].unique())
            x = done[column].map({n: i for i, n in enumerate(names)})
            ax.set_xticks(range(len(names)), names)
        else:
            x = done[column]
            if column in ("lr", "weight_decay") and (x > 0).all():
                ax.set_xscale("log")
        ax.scatter(x, done["value"], alpha=0.7)
        ax.set(xlabel=column, ylabel="objective")
    fig.tight_layout()
    return fig


def _img(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame) -> str:
    """An HTML table; a missing value (one seed has no std or interval) shows as a dash."""
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}",
                         na_rep="\u2013")
