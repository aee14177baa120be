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


def test_race_benchmark_runs_small_and_says_whether_the_answers_agree(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/race.py", "--small", "--out", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "race.csv")
    assert len(table) == 12 and {"rank_full", "verdict_full", "rank_raced", "verdict_raced",
                                 "raced_seeds"} <= set(table)
    full = pd.read_csv(tmp_path / "full" / "trials.csv")
    raced = pd.read_csv(tmp_path / "raced" / "trials.csv")
    assert len(full) == 48 and len(raced) == table["raced_seeds"].sum() <= 48
    assert "full grid: 48 trials" in result.stdout and "answers agree: " in result.stdout
