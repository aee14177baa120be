"""Every `harness` command README.md shows runs as shown, so the README cannot drift
from the program. Adapted only where this machine cannot do what the README says:
full MNIST is small IDX files written in its place (no internet), a PostgreSQL server
is the test's own on loopback, a Visdom server gets a free port, a sweep that a command
reads but the README does not run is run on less data, and two results directories a
reader would already have are copies of the quick start's."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, write_idx

from harness.parse import load_config
from harness.study.search import total_points

README = ROOT / "README.md"
SLOW_S = 600  # the longest a README command may take here
PREPARED_TRAIN_SIZE = 600  # the sweeps a command reads but the README does not run


def readme_commands() -> list[str]:
    """The `python -m harness ...` lines of README.md's code blocks (indented by four
    spaces or fenced), continuation lines joined, comments dropped."""
    commands, fenced, pending = [], False, ""
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or line.startswith("    ")):
            pending = ""
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if "-m harness " in text:  # a shell line: YAML and file trees are blocks too
            words = shlex.split(text, comments=True)
            commands.append(" ".join(shlex.quote(w) for w in words))
    return commands


COMMANDS = readme_commands()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, postgres_url):
    """The project's root as a reader has it (experiments/), with MNIST's files where
    the full-MNIST configs read them."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "experiments", root / "experiments")
    write_idx(root / "data", n_train=300, n_test=100)
    return {"root": root, "postgres": postgres_url, "visdom_port": free_port()}


def adapt(command: str, sandbox: dict) -> list[str]:
    """The command as this machine can run it."""
    command = command.replace("postgresql://postgres:secret@dbhost/sweeps", sandbox["postgres"])
    command = command.replace("localhost:8097", f"localhost:{sandbox['visdom_port']}")
    words = shlex.split(command)
    words[0] = sys.executable  # .venv/bin/python
    if words[3:4] == ["visdom"]:
        words += ["--port", str(sandbox["visdom_port"]), "--env-path", "results/visdom"]
    if words[3:4] == ["tensorboard"]:  # a free port, not 6006 or the one shown
        if "--port" in words:
            del words[words.index("--port"):words.index("--port") + 2]
        words += ["--port", str(free_port())]
    return words


def prepare(words: list[str], root: Path) -> None:
    """The results directories a command reads that no command before it made: a sweep
    of a config in experiments/, run on less data (only its results are read), or any
    other a reader has (copies of the quick start's)."""
    for word in words:
        if not word.startswith("results/") or (root / word).exists():
            continue
        name = word.split("/")[1]
        configs = {yaml.safe_load(p.read_text())["name"]: p
                   for p in (root / "experiments").glob("*.yaml")}
        if name in configs:  # its config, on less data: only its results are read
            raw = yaml.safe_load(configs[name].read_text())
            raw["data"]["train_size"] = PREPARED_TRAIN_SIZE
            raw["train"]["epochs"] = 1
            small = root / "prepared" / configs[name].name
            small.parent.mkdir(exist_ok=True)
            small.write_text(yaml.safe_dump(raw))
            run(root, [sys.executable, "-m", "harness", "sweep", str(small), "--out", word,
                       "--quiet"])
        else:  # a sweep of its own: its own label
            prepare(["results/quickstart"], root)
            shutil.copytree(root / "results" / "quickstart", root / word)
            (root / word / "sweep.txt").write_text(f"quickstart-{name}\n")


def run(root: Path, words: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(words, cwd=root, env=env, capture_output=True, text=True,
                          timeout=SLOW_S)
    assert done.returncode == 0, (words, done.stderr[-3000:])
    return done


def serve(root: Path, words: list[str]) -> str:
    """A command that serves until stopped: start it, wait for its first line, stop it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(words, cwd=root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        first = server.stdout.readline()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    return first


def test_the_readme_shows_the_commands_it_should():
    shown = " ".join(COMMANDS)
    for command in ("sweep", "compare", "report", "export", "summary", "visdom",
                    "tensorboard"):
        assert f"-m harness {command}" in shown


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_runs_as_shown(sandbox, command):
    root = sandbox["root"]
    if "postgresql://" in command:  # "on every machine": another one than the reader's
        root = root / "another-machine"
        if not root.exists():
            shutil.copytree(sandbox["root"] / "experiments", root / "experiments")
            shutil.copytree(sandbox["root"] / "data", root / "data")
    words = adapt(command, sandbox)
    prepare(words[3:], root)
    if words[3] == "visdom":
        assert "Visdom listening on http://127.0.0.1" in serve(root, words)
        return
    if words[3] == "tensorboard":
        assert serve(root, words).startswith("TensorBoard on http://127.0.0.1:")
        return
    done = run(root, words)
    if words[3:5] == ["sweep", "experiments/quickstart.yaml"] and len(words) == 5:
        quickstart_ran_offline(root / "results" / "quickstart", done)


def quickstart_ran_offline(out: Path, done: subprocess.CompletedProcess) -> None:
    """The quick start as make sweep runs it: every point once, on real digits."""
    trials = pd.read_csv(out / "trials.csv")
    config = load_config(ROOT / "experiments" / "quickstart.yaml")
    assert len(trials) == total_points(config) == 12
    assert (trials.state == "COMPLETE").all()
    assert trials.dataset.eq("mnist-5k").all()
    assert trials.test_acc.max() > 0.9  # real digits: the best configuration learns
    assert re.search(r"12 trials: 12 COMPLETE \(ran 12\)", done.stdout)
