"""Data and imports flow one way: no module of harness reaches itself through imports,
counting imports inside functions and under TYPE_CHECKING."""

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "harness"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if path.name == "__init__.py" else parts)


def imported(path: Path, name: str, modules: set[str]) -> set[str]:
    """The modules of harness that `path` imports anywhere in its code."""
    found: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported(path, name, set(paths)) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of modules that reach each other."""
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
    return sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in reach(b)})


def test_no_module_of_harness_reaches_itself_through_imports():
    assert cycles(import_graph()) == []


def test_the_check_sees_a_cycle_through_an_import_inside_a_function(tmp_path):
    graph = {"harness.a": {"harness.b"}, "harness.b": {"harness.a"}, "harness.c": set()}
    assert cycles(graph) == [("harness.a", "harness.b")]
    code = "def f():\n    from harness.sweep import run_sweep\n"
    (tmp_path / "m.py").write_text(code)
    assert imported(tmp_path / "m.py", "harness.m", {"harness.sweep", "harness.m"}) == {
        "harness.sweep"}


def test_types_is_a_leaf():
    assert import_graph()["harness.types"] == set()


def test_importing_harness_changes_nothing_outside_it():
    """Logging, warnings and patches are set by the command that wants them, never at
    import: a program that imports harness keeps Optuna's logging and its warnings."""
    code = """
import logging, warnings
import optuna
def ours():  # the warnings filters harness would set (torch and scipy set their own)
    return [f for f in warnings.filters if f[2] is optuna.exceptions.ExperimentalWarning
            or "Heartbeat" in str(f[1])]
before = optuna.logging.get_verbosity()
import harness.cli, harness.sweep, harness.study.search, harness.sinks.tensorboard
from tensorboard.summary.writer import record_writer
assert optuna.logging.get_verbosity() == before and ours() == []
assert record_writer.masked_crc32c.__module__ != "harness.sinks.tensorboard"
from harness.quiet import quiet_dependencies
quiet_dependencies()
assert optuna.logging.get_verbosity() == logging.WARNING and len(ours()) == 2
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert done.returncode == 0, done.stderr


def test_reading_results_loads_no_torch(tmp_path):
    """compare, report and export read CSVs and a study: torch (about 2 s to import)
    loads only for training, so they answer in about half the time."""
    code = """
import sys
import harness.cli
from harness.reporting import export, report, saved, summary
assert "torch" not in sys.modules, "torch loaded by reading results"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert done.returncode == 0, done.stderr
