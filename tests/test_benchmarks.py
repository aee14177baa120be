"""The benchmark scripts run in their CI-sized form and write what they promise; no
timing is asserted (benchmarks measure, tests do not)."""

import os
import subprocess
import sys

import pandas as pd
from conftest import ROOT


def test_population_benchmark_runs_on_the_cpu_and_writes_its_table(tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "benchmarks/population.py", "--device", "cpu", "--members", "1,4",
         "--epochs", "1", "--train-size", "2000", "--sequential-trials", "1",
         "--out", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "population.csv")
    assert {"mode", "conv", "cuda_graph", "members", "trials_per_hour", "speedup",
            "member_samples_per_s", "samples_per_s", "peak_mem_mb", "note"} <= set(table)
    assert list(table["mode"]) == ["sequential"] + ["fused"] * 6
    fused = table[table["mode"] == "fused"]
    assert sorted(zip(fused["conv"], fused["members"], strict=True)) == [
        ("grouped", 1), ("grouped", 4), ("loop", 1), ("loop", 4), ("vmap", 1), ("vmap", 4)]
    assert (table["trials_per_hour"] > 0).all() and (table["peak_mem_mb"] > 0).all()
    assert "extrapolated" in table.loc[0, "note"]
    assert (out / "population.png").stat().st_size > 0
    assert "best per population size" in (out / "summary.txt").read_text()
    assert "trials_per_hour" in result.stdout
