"""report.html: one self-contained file (plots embedded as PNG, nothing from the network)
that answers which configuration wins, by how much, and whether it is real."""

from __future__ import annotations

import base64
import html
import io
import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from harness.files import atomic_write_text  # noqa: E402
from harness.reporting import slices, summary, tables  # noqa: E402
from harness.reporting.forest import COLOURS, margin_line  # noqa: E402
from harness.reporting.forest import note as forest_note  # noqa: E402
from harness.reporting.forest import rows as forest_rows  # noqa: E402
from harness.reporting.summary import Comparison, Section  # noqa: E402
from harness.reporting.tables import Spec  # noqa: E402

TOP = 5  # learning curves of the top trials
MAX_ROWS = 40  # of any table in the page
MAX_HEATMAPS = 12
STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
img{max-width:100%}.note{color:#555}
.warning{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em;font-weight:bold}"""


def write_report(path: Path, trials: pd.DataFrame, history: pd.DataFrame, spec: Spec,
                 title: str, running: int = 0) -> None:
    """report.html at `path`: one sweep, or several side by side (a `sweep` column)."""
    atomic_write_text(path, render(summary.build(trials, spec, running=running), history,
                                   title))


def render(c: Comparison, history: pd.DataFrame, title: str) -> str:
    warning = summary.warning(c.spec)
    body = [f"<h1>{html.escape(title)}</h1>"]
    body += [f"<p class={'warning' if line == warning else 'answer'}>{html.escape(line)}</p>"
             for line in summary.headline(c)]
    for section in summary.sections(c):
        body += _section(section)
        if section.heading == "Leaderboard" and not c.board.empty:
            body += ["<h2>Every configuration against the leader</h2>",
                     f"<p class=note>{html.escape(forest_note(c.board))}</p>",
                     _img(forest(c.board, c.spec), "forest plot")]
            body += ["<h2>Learning curves of the top trials</h2>", *_curves_note(c),
                     _img(curves(c.trials, history, c.spec))]
        if section.heading == "By hyperparameter value":
            body += ["<h2>Objective against each hyperparameter</h2>",
                     "<p class=note>Every trial; failed and pruned ones as red crosses at "
                     "the bottom; ranges binned (n trials per bin).</p>",
                     _img(_slices(c.trials, c.spec))]
    if c.pivots:
        body += ["<h2>Objective by learning rate and batch size</h2>",
                 _img(_heatmaps(c.pivots[:MAX_HEATMAPS]))]
    text = "\n".join(body)
    return (f"<!doctype html>\n<html><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>\n{text}\n</body></html>\n")


def _section(section: Section) -> list[str]:
    table = summary.display(section.table.head(MAX_ROWS))
    parts = [f"<h2>{html.escape(section.heading)}</h2>"]
    if not table.empty:
        parts += [f"<p class=note>{html.escape(section.caption)}</p>"] if section.caption else []
        parts += [table.to_html(index=section.index, border=0)]
    if len(section.table) > MAX_ROWS:
        parts.append(f"<p class=note>and {len(section.table) - MAX_ROWS} more rows "
                     "(tables/*.csv)</p>")
    if section.notes:
        parts.append("<p class=note>" + "<br>".join(html.escape(n) for n in section.notes)
                     + "</p>")
    return parts


def forest(board: pd.DataFrame, spec: Spec) -> plt.Figure:
    """The forest plot (forest.py's rows), best at the top."""
    drawn = forest_rows(board, spec).iloc[::-1].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.3 * len(drawn)))
    for verdict, colour in COLOURS.items():
        part = drawn[drawn["verdict"] == verdict]
        if not part.empty:
            ax.errorbar(part["mean"], part.index, xerr=[part["below"], part["above"]],
                        fmt="o", color=colour, capsize=3, label=verdict)
    ax.axvline(board.iloc[0]["mean"], color="0.3", linewidth=0.8)
    margin = margin_line(board, spec)
    if margin is not None:
        ax.axvline(margin, color="0.5", linewidth=0.8, linestyle="--",
                   label=f"margin {spec.margin:g}")
    ax.set_yticks(drawn.index, drawn["label"], fontsize=8)
    ax.set(xlabel=f"mean {spec.metric} and 95% interval over seeds")
    ax.legend(fontsize=8, loc="lower right" if spec.maximize else "lower left")
    fig.tight_layout()
    return fig


def _curves_note(c: Comparison) -> list[str]:
    split = tables.curve_split(c.trials, c.spec.maximize, c.spec.metric)
    if split is None:
        return []
    note = split.note()
    return [f"<p class=note>{html.escape(note[0].upper() + note[1:])}.</p>"]


def curves(trials: pd.DataFrame, history: pd.DataFrame, spec: Spec) -> plt.Figure:
    """The objective's metric (test accuracy in results without it) and the train loss
    per epoch; a curve is labelled with its sweep when several are compared. Beyond
    tables.CURVES_EACH trials, the top ones and a band of the others (see CurveSplit)."""
    split = tables.curve_split(trials, spec.maximize, spec.metric)
    if split is None:
        top = tables.top_trials(trials, TOP, spec.maximize)
        top = top[top["state"] == "COMPLETE"]
    else:
        top = split.top
    metric = spec.metric if spec.metric in history.columns else "test_acc"
    fig, (left, loss) = plt.subplots(1, 2, figsize=(12, 4 if split is None else 5.5))
    for ax, column in ((left, metric), (loss, "train_loss")):
        _trial_curves(ax, top, history, column)
        if split is not None:
            _bands(ax, split, history, column)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    left.set(xlabel="epoch", ylabel=metric, title=metric)
    if metric.endswith("_loss"):
        left.set_yscale("log")
    loss.set(xlabel="epoch", ylabel="train loss", title="train loss", yscale="log")
    if split is None:
        left.legend(fontsize=8)
    else:  # below both plots: eleven entries would hide the curves
        left.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.14), ncol=4)
        fig.subplots_adjust(bottom=0.34, wspace=0.3)
    return fig


def _trial_curves(ax: plt.Axes, top: pd.DataFrame, history: pd.DataFrame,
                  column: str) -> None:
    """One labelled curve per trial; a trial that did not complete says its state."""
    for _, trial in top.iterrows():
        rows = history[history["run"] == trial["run"]]
        label = trial["run"]
        if "sweep" in top.columns:
            rows = rows[rows["sweep"] == trial["sweep"]]
            label = f"{trial['sweep']}: {trial['run']}"
        if trial["state"] != "COMPLETE":
            label += f" ({trial['state']})"
        ax.plot(rows["epoch"], rows[column], marker="o", label=label)


def _bands(ax: plt.Axes, split: tables.CurveSplit, history: pd.DataFrame,
           column: str) -> None:
    """The other trials' quartiles per epoch as a grey band, their median dashed, with
    whiskers so that a single epoch shows too; one band per sweep."""
    stats = tables.band(history, split.others, column)
    for sweep, style in zip(split.sweeps, itertools.cycle(("--", ":", "-."))):
        rows = stats[stats["sweep"] == sweep] if sweep else stats
        n = split.others["sweep"].eq(sweep).sum() if sweep else len(split.others)
        label = f"{sweep + ': ' if sweep else ''}the other {n}: median, quartiles"
        ax.fill_between(rows["epoch"], rows["q1"], rows["q3"], color="grey", alpha=0.2,
                        linewidth=0)
        ax.errorbar(rows["epoch"], rows["median"], yerr=[rows["median"] - rows["q1"],
                    rows["q3"] - rows["median"]], color="0.4", linestyle=style, marker="s",
                    markersize=4, capsize=3, label=label)


def _heatmaps(pivots: list[slices.Pivot]) -> plt.Figure:
    """Mean objective per cell; cells where no seed completed are grey and say why."""
    width = min(len(pivots), 3)
    height = -(-len(pivots) // width)
    fig, axes = plt.subplots(height, width, figsize=(5 * width, 3.8 * height), squeeze=False)
    for ax in axes.flat[len(pivots):]:
        ax.axis("off")
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    for ax, pivot in zip(axes.flat, pivots, strict=False):
        values = np.ma.masked_invalid(pivot.mean.to_numpy(dtype=float))
        image = ax.imshow(values, cmap=cmap, aspect="auto")
        failed = values.mask & (pivot.cells.to_numpy() != "")
        ax.imshow(np.ma.masked_where(~failed, np.ones(failed.shape)), aspect="auto",
                  cmap=ListedColormap(["#cccccc"]))
        ax.set_xticks(range(len(pivot.mean.columns)), list(pivot.mean.columns))
        ax.set_yticks(range(len(pivot.mean.index)), list(pivot.mean.index))
        ax.set(title=pivot.title, xlabel=slices.COLUMNS, ylabel=slices.ROWS)
        middle = (values.max() + values.min()) / 2 if values.count() else 0
        for (i, j), cell in np.ndenumerate(pivot.cells.to_numpy()):
            dark = values.mask[i, j] or values[i, j] > middle
            ax.text(j, i, cell.replace(" (", "\n("), ha="center", va="center", fontsize=8,
                    color="black" if dark else "white")
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


def _slices(trials: pd.DataFrame, spec: Spec) -> plt.Figure:
    """Each trial's objective against each varied hyperparameter's value (or bin)."""
    keys = [k for k in tables.config_columns(trials, spec) if k != "sweep"]
    columns = [k for k in keys if trials[k].nunique() > 1] or [slices.ROWS]
    fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3.8),
                             squeeze=False)
    done = trials["state"] == "COMPLETE"
    values = trials.loc[done, "value"]
    floor = values.min() - 0.05 * ((values.max() - values.min()) or 1) if done.any() else 0
    sweeps = trials["sweep"] if "sweep" in trials.columns else pd.Series("", trials.index)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(trials))
    for ax, column in zip(axes[0], columns, strict=True):
        labels, _ = slices.axis(trials, column, spec)
        x = labels.cat.codes.to_numpy() + jitter
        for name in sweeps.unique():
            mine = (sweeps == name).to_numpy() & done.to_numpy()
            ax.scatter(x[mine], trials["value"][mine], alpha=0.7, label=name or None)
        bad = ~done.to_numpy()
        if bad.any():
            ax.scatter(x[bad], np.full(bad.sum(), floor), marker="x", color="red",
                       label="failed / pruned")
        n = labels.value_counts(sort=False)
        ax.set_xticks(range(len(n)), [f"{c}\nn={k}" for c, k in n.items()], rotation=30,
                      ha="right", fontsize=8)
        ax.set(xlabel=column, ylabel=spec.metric)
    if len(sweeps.unique()) > 1 or (~done).any():
        axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _img(fig: plt.Figure, alt: str = "plot") -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
