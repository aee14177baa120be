"""A grid run in full and raced, in one run, through the CLI: how many trials the race
needs and whether its answer agrees with the full grid's.

    PYTHONPATH=. .venv/bin/python benchmarks/race.py --out DIR          # 36 x 8 on mnist-5k
    PYTHONPATH=. .venv/bin/python benchmarks/race.py --out DIR --small  # a few minutes

The answers agree when the raced leader is the full grid's leader or is not `worse` in
the full grid's table, and every configuration the race stopped is `worse` in the full
grid's table or ranks below its leader (or, every seed of it failing, is unranked there
too). Writes DIR/race.csv (one row per configuration:
seeds run raced, rank and verdict in both) and prints the table and the verdict.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

LRS = [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1]
KEYS = ["optimizer", "lr", "batch_size"]


def config(name: str, small: bool, raced: bool) -> dict:
    seeds = list(range(4 if small else 8))
    search = {"method": "grid", "seeds": seeds, "space": {
        "lr": LRS[1:4] if small else LRS, "batch_size": [64] if small else [64, 256],
        "optimizer": ["sgd", "adam"] if small else ["sgd", "adam", "rmsprop"]}}
    if raced:
        search["race"] = {"first": 2, "alpha": 0.05}
    data = {"dataset": "mnist-5k", "val_fraction": 0.1, "split_seed": 0}
    if small:
        data |= {"train_size": 1000, "test_size": 500}
    return {"name": name, "data": data, "model": "lenet",
            "train": {"epochs": 1 if small else 2, "seed": 0, "device": "cpu"},
            "search": search, "objective": {"metric": "val_acc", "margin": 0.005},
            "logging": {"tensorboard": False, "visdom": False}}


def sweep(out: Path, raw: dict) -> float:
    """Run the sweep as a user does; its wall time."""
    path = out / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "sweep", str(path), "--out",
                    str(out / raw["name"]), "--quiet"], check=True)
    return time.perf_counter() - started


def compare(out: Path) -> tuple[pd.DataFrame, bool]:
    """One row per configuration: seeds the race ran, rank and verdict in each; and
    whether the answers agree."""
    full = pd.read_csv(out / "full" / "tables" / "leaderboard.csv")
    raced = pd.read_csv(out / "raced" / "tables" / "leaderboard.csv")
    trials = pd.read_csv(out / "raced" / "trials.csv")
    seeds = trials.groupby(KEYS).size().rename("raced_seeds").reset_index()
    table = full[[*KEYS, "rank", "mean", "verdict"]].merge(
        raced[[*KEYS, "rank", "mean", "verdict"]], on=KEYS, how="outer",
        suffixes=("_full", "_raced")).merge(seeds, on=KEYS, how="outer")
    most = int(trials["seed"].nunique())
    leader = raced.iloc[0]
    in_full = full.set_index(KEYS).loc[tuple(leader[k] for k in KEYS)]
    leader_ok = bool(in_full["rank"] == 1 or in_full["verdict"] != "worse")
    stopped = table[table["raced_seeds"] < most]
    # worse in the full grid, below its leader, or not ranked there either (every seed
    # of it failed in both)
    stopped_ok = bool(((stopped["verdict_full"] == "worse") | (stopped["rank_full"] > 1)
                       | stopped["rank_full"].isna()).all())
    return table.sort_values("rank_full"), leader_ok and stopped_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--small", action="store_true", help="6 configurations x 4 seeds "
                        "on 1,000 digits, 1 epoch: a minute or two, for CI")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    full_s = sweep(args.out, config("full", args.small, raced=False))
    raced_s = sweep(args.out, config("raced", args.small, raced=True))
    table, agree = compare(args.out)
    table.to_csv(args.out / "race.csv", index=False)
    n_full = len(pd.read_csv(args.out / "full" / "trials.csv"))
    n_raced = len(pd.read_csv(args.out / "raced" / "trials.csv"))
    with pd.option_context("display.width", 160, "display.max_rows", 100):
        print(table.to_string(index=False))
    print(f"\nfull grid: {n_full} trials in {full_s:.0f} s; raced: {n_raced} trials "
          f"({n_raced / n_full:.0%}) in {raced_s:.0f} s ({raced_s / full_s:.0%} of the time)")
    print(f"answers agree: {'yes' if agree else 'NO'}")


if __name__ == "__main__":
    main()
