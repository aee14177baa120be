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
    assert len(table) == 6 and {"rank_full", "verdict_full", "rank_raced", "verdict_raced",
                                "raced_seeds"} <= set(table)
    full = pd.read_csv(tmp_path / "full" / "trials.csv")
    raced = pd.read_csv(tmp_path / "raced" / "trials.csv")
    assert len(full) == 24 and len(raced) == table["raced_seeds"].sum() <= 24
    assert "full grid: 24 trials" in result.stdout and "answers agree: yes" in result.stdout


def test_sweep_gpu_benchmark_runs_small_on_the_cpu_and_writes_its_table(tmp_path):
    """The CLI sweeps end to end (grids, Optuna, one at a time, the fused ceiling) in
    their smallest form: the table has its columns, and the populations' places were
    in use (occupancy), with no timing asserted."""
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "benchmarks/sweep_gpu.py", "--device", "cpu", "--small",
         "--population", "4", "--lrs", "2", "--trials", "6", "--sequential-points", "4",
         "--train-size", "600", "--threads", "1", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "sweep_gpu.csv").set_index("sweep")
    assert list(table.index) == ["grid-1", "grid-5", "optuna", "one-at-a-time", "ceiling"]
    assert {"trials", "epochs", "wall_s", "trials_per_hour", "occupancy", "step_fill",
            "startup_s", "ending_s", "bookkeeping_ms_per_trial", "fused compute (s)",
            "claims and optuna (s)", "tensorboard histograms (s)",
            "off the path: tensorboard images (s)", "off the path: study writes (s)",
            "off the path: checkpoints (s)", "off the path: csv appends (s)"} <= set(table)
    assert list(table.trials) == [8, 8, 6, 4, 4]
    assert list(table.epochs[["grid-1", "one-at-a-time", "ceiling"]]) == [1, 1, 1]
    assert 1 < table.epochs["grid-5"] <= 5 and 1 <= table.epochs["optuna"] <= 5
    populations = table.loc[["grid-1", "grid-5", "optuna"]]
    assert ((populations.occupancy > 0) & (populations.occupancy <= 1)).all()
    assert populations.loc["grid-1", "occupancy"] == 1  # 8 points: 4 places always full
    assert (populations.step_fill <= populations.occupancy).all()
    assert pd.isna(table.loc["one-at-a-time", "occupancy"])  # no population
    assert (table.trials_per_hour > 0).all()
    assert "occupancy" in result.stdout and "bookkeeping per trial" in result.stdout
    assert "trials_per_hour" in (out / "summary.txt").read_text()
