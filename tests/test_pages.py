"""The pages a person looks at, in headless Chromium: report.html, the Visdom environment
and TensorBoard's HParams dashboard, each over one real tiny sweep (8 trials: 4
configurations x 2 seeds). What is asserted is what is rendered, read from the DOM."""

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
from browser import console_errors, failed_requests, load, needs_chromium, run_js, wait_for
from conftest import ROOT, run_cli, small_config

from harness.parse import parse_config
from harness.sweep import SweepOptions, run_sweep

pytestmark = needs_chromium

ENV = "pages"
SPACE = {"lr": [0.01, 0.05], "optimizer": ["sgd", "adam"]}
SEEDS = [0, 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_served(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            assert process.poll() is None, f"the server exited ({process.returncode})"
            assert time.monotonic() < deadline, f"{url} did not answer in 60 s"
            time.sleep(0.2)


@contextlib.contextmanager
def visdom_server(env_path):
    """`harness visdom` as a person starts it; yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "visdom", "--port", str(port), "--env-path",
         str(env_path)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_served(process, f"http://127.0.0.1:{port}/")
        yield port
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def tensorboard(logdir):
    """TensorBoard over `logdir`, as the README starts it; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_served(process, url + "/data/runs")
        yield url
    finally:
        process.terminate()
        process.wait()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A finished sweep that logged to TensorBoard and to a Visdom server (which saved the
    environment in envs/), with its report.html."""
    root = tmp_path_factory.mktemp("pages")
    out = root / "r"
    with visdom_server(root / "envs") as port:
        raw = small_config(
            name="pages", search={"space": SPACE, "seeds": SEEDS},
            data={"train_size": 128, "test_size": 64},
            logging={"tensorboard": {"histograms": False, "images": False, "graph": False},
                     "visdom": {"port": port, "env": ENV}})
        said = io.StringIO()
        with contextlib.redirect_stderr(said):
            run_sweep(parse_config(raw), SweepOptions(out=out, progress=False))
    assert "warning" not in said.getvalue(), said.getvalue()
    assert (root / "envs" / f"{ENV}.json").exists(), said.getvalue()
    result = run_cli("report", str(out), cwd=root)
    assert result.returncode == 0, result.stderr
    return out


def configurations(sweep_dir) -> set[tuple[str, float]]:
    trials = pd.read_csv(sweep_dir / "trials.csv")
    assert len(trials) == len(SEEDS) * 4  # so a row per trial would show
    return {(o, float(lr)) for o, lr in zip(trials.optimizer, trials.lr, strict=True)}


# --- report.html ----------------------------------------------------------------------

# The cells of the table under the <h2> named `arguments[0]`, as the page shows them.
TABLE_UNDER = """
const h2 = [...document.querySelectorAll('h2')].find(h => h.textContent.trim() === arguments[0]);
if (!h2) return null;
let node = h2.nextElementSibling;
while (node && node.tagName !== 'TABLE' && node.tagName !== 'H2') node = node.nextElementSibling;
if (!node || node.tagName !== 'TABLE') return null;
const cells = (tr) => [...tr.cells].map(c => c.innerText.trim());
return {header: cells(node.tHead.rows[0]), rows: [...node.tBodies[0].rows].map(cells)};
"""

IMAGES = """
return [...document.images].map(i => ({src: i.src.slice(0, 40), complete: i.complete,
                                       width: i.naturalWidth, alt: i.alt}));
"""


def test_report_html_shows_its_plots_and_one_leaderboard_row_per_configuration(
        browser, sweep_dir):
    load(browser, (sweep_dir / "report.html").as_uri())
    wait_for(browser, "document.readyState === 'complete'")
    images = run_js(browser, IMAGES)
    assert len(images) >= 3
    broken = [i for i in images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    board = run_js(browser, TABLE_UNDER, "Leaderboard")
    assert board is not None, "no table under the Leaderboard heading"
    shown = pd.DataFrame(board["rows"], columns=board["header"])
    assert len(shown) == 4
    assert set(zip(shown.optimizer, shown.lr.astype(float), strict=True)) == configurations(
        sweep_dir)
    assert shown["rank"].tolist() == ["1", "2", "3", "4"]
    assert shown["verdict"].tolist()[0] == "leader"
    assert set(shown["verdict"]) <= {"leader", "worse", "equivalent", "undetermined"}
    assert [i["alt"] for i in images].count("forest plot") == 1  # loaded, with the others
    answer = run_js(browser, "return [...document.querySelectorAll('p.answer')]"
                             ".map(p => p.innerText)")
    assert any(line.startswith("Leader: ") for line in answer)  # the answer, first
    assert console_errors(browser) == []
    assert failed_requests(browser) == []


# --- Visdom ----------------------------------------------------------------------------

# The env's plotly plots that have drawn their traces, by title (Visdom draws a line
# window as a div.js-plotly-plot; plotly keeps the figure in its .data and .layout).
PLOTS = """
const plots = {};
for (const div of document.querySelectorAll('.window .js-plotly-plot')) {
  const title = div.layout && div.layout.title && (div.layout.title.text || div.layout.title);
  plots[title] = {
    traces: (div.data || []).map(t => ({name: t.name, x: [...t.x], y: [...t.y]})),
    drawn: div.querySelectorAll('svg.main-svg .scatterlayer .trace').length,
  };
}
return plots;
"""

LEADERBOARD_PANE = """
const table = document.querySelector('.window table.harness-leaderboard');
if (!table) return null;
const cells = (tr) => [...tr.cells].map(c => c.innerText.trim());
return {header: cells(table.tHead.rows[0]), rows: [...table.tBodies[0].rows].map(cells)};
"""


def not_the_favicon(messages: list[str]) -> list[str]:
    """Visdom 0.3.0's index.html links a favicon.png that its package does not ship
    (a 404 on every page, console error included); nothing a person misses."""
    return [m for m in messages if "/favicon.png" not in m]


def test_the_visdom_env_draws_a_trace_per_trial_and_the_leaderboard(browser, sweep_dir):
    runs = sorted(pd.read_csv(sweep_dir / "trials.csv").run)
    with visdom_server(sweep_dir.parent / "envs") as port:  # a fresh server: the saved env
        load(browser, f"http://127.0.0.1:{port}/env/{ENV}")
        wait_for(browser, "document.querySelectorAll('.window .js-plotly-plot svg').length >= 2"
                 " && document.querySelector('.window table.harness-leaderboard')", 30)
        plots = run_js(browser, PLOTS)
        for title in (f"test accuracy ({ENV})", f"train loss ({ENV})"):
            assert title in plots, f"no plot titled {title!r}: {sorted(plots)}"
            traces = plots[title]["traces"]
            assert sorted(t["name"] for t in traces) == runs
            assert all(t["x"] == [1, 2] and len(t["y"]) == 2 for t in traces)
            assert plots[title]["drawn"] == len(runs)
        board = run_js(browser, LEADERBOARD_PANE)
        shown = pd.DataFrame(board["rows"], columns=board["header"])
        assert sorted(shown.run) == runs  # up to 10 trials: every one
        forest = plots[f"verdicts ({ENV})"]  # the verdicts, drawn as report.html draws them
        assert sum(len(t["y"]) for t in forest["traces"]) == 4  # a row per configuration
        assert "leader" in {t["name"] for t in forest["traces"]} and forest["drawn"] >= 1
        assert not_the_favicon(failed_requests(browser)) == []
        assert not_the_favicon(console_errors(browser)) == []


# --- TensorBoard -----------------------------------------------------------------------

# hparamsTable(): the HParams dashboard's session-group table as rendered, or null.
# It relies on this DOM (TensorBoard 2.21, the Polymer HParams plugin inside the Angular
# app; every arrow below a shadow root, found by deepQueryAll however deep it is):
#   tf-hparams-dashboard > tf-hparams-main > tf-hparams-sessions-pane
#     > tf-hparams-table-view > vaadin-grid#sessionGroupsTable, whose own shadow root has
#   table#table > thead#header > tr > th  and  tbody#items > tr (one per rendered row;
#   rows kept for reuse are hidden) > td, each holding a <slot> into which the grid
#   projects a light-DOM <vaadin-grid-cell-content> with the text a person sees.
# Returns {header: [column titles], rows: [[cell texts]]}: 'Trial ID' (the session
# group's name), 'Show Metrics', each hyperparameter, then each metric.
HPARAMS_TABLE = """
function hparamsTable() {
  const grids = deepQueryAll('vaadin-grid#sessionGroupsTable');
  if (grids.length !== 1 || !grids[0].shadowRoot) return null;
  const root = grids[0].shadowRoot;
  const text = (cell) => [...cell.querySelectorAll('slot')]
    .flatMap(s => s.assignedElements()).map(e => e.innerText.trim()).join(' ');
  const rows = (section) => [...root.querySelectorAll(section + ' > tr')]
    .filter(tr => !tr.hidden && tr.offsetParent !== null)
    .map(tr => [...tr.children].filter(c => !c.hidden).map(text));
  const [header] = rows('#header');
  const body = rows('#items');
  if (!header || !body.length || body.some(r => !r[0])) return null;  // not drawn yet
  return {header: header, rows: body};
}
"""


def test_tensorboard_hparams_lists_one_row_per_configuration(browser, sweep_dir):
    trials = pd.read_csv(sweep_dir / "trials.csv")
    with tensorboard(sweep_dir / "tb") as url:
        load(browser, url + "/#hparams")
        table = wait_for(browser, "hparamsTable()", 30, helpers=HPARAMS_TABLE)
        shown = pd.DataFrame(table["rows"], columns=table["header"])
        assert shown.columns[:4].tolist() == ["Trial ID", "Show Metrics", "lr", "optimizer"]
        assert {"hparam/val_acc", "hparam/test_acc"} <= set(shown.columns)
        assert len(shown) == len(configurations(sweep_dir)) == 4
        assert set(zip(shown.optimizer, shown.lr.astype(float), strict=True)) == \
            configurations(sweep_dir)
        label = (sweep_dir / "sweep.txt").read_text().strip()
        # the sweep, then a run without its seed
        groups = {f"{label}/{run.rsplit('-s', 1)[0]}" for run in trials.run}
        assert set(shown["Trial ID"]) == groups
        assert failed_requests(browser) == []
        assert console_errors(browser) == []


@contextlib.contextmanager
def harness_tensorboard(cwd, *dirs):
    """`harness tensorboard DIR ...` as a person starts it; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "tensorboard", *dirs, "--port", str(port)],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_served(process, url + "/data/runs")
        yield url
    finally:
        process.terminate()
        process.wait()


# Untick the filter checkbox of the HParams query pane whose label is arguments[0].
UNTICK = """
const box = deepQueryAll('paper-checkbox').find(b => b.innerText.trim() === arguments[0]);
if (!box || !box.checked) return false;
box.click();
return true;
"""


def test_tensorboard_over_two_sweeps_keeps_them_apart_and_filters_by_sweep(
        browser, sweep_dir):
    root = sweep_dir.parent
    raw = small_config(name="pages", search={"space": SPACE, "seeds": SEEDS},
                       data={"train_size": 128, "test_size": 64},
                       logging={"tensorboard": {"histograms": False, "images": False,
                                                "graph": False}, "visdom": False})
    run_sweep(parse_config(raw), SweepOptions(out=root / "again", progress=False))
    labels = {name: (root / name / "sweep.txt").read_text().strip() for name in ("r", "again")}
    assert labels["r"] != labels["again"]  # the same config run twice: two sweeps
    with harness_tensorboard(root, "r", "again") as url:
        load(browser, url + "/#hparams")
        eight = "(() => { const t = hparamsTable(); return t && t.rows.length === 8 && t; })()"
        table = wait_for(browser, eight, 30, helpers=HPARAMS_TABLE)
        shown = pd.DataFrame(table["rows"], columns=table["header"])
        assert "sweep" in shown.columns
        # A group per configuration per sweep, named after both: never pooled.
        assert sorted(shown["sweep"]) == sorted([labels["r"]] * 4 + [labels["again"]] * 4)
        assert all(trial.startswith(sweep + "/") for trial, sweep in
                   zip(shown["Trial ID"], shown["sweep"], strict=True))
        assert run_js(browser, UNTICK, labels["again"]), "no checkbox for the sweep"
        four = ("(() => { const t = hparamsTable(); return t && t.rows.length === 4 && t; "
                "})()")
        table = wait_for(browser, four, 30, helpers=HPARAMS_TABLE)
        left = pd.DataFrame(table["rows"], columns=table["header"])
        assert set(left["sweep"]) == {labels["r"]}
        assert failed_requests(browser) == []
        assert console_errors(browser) == []
