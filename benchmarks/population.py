"""Trials per hour: LeNet trials one at a time (harness.train, as a sweep runs them)
against the same trials trained as fused populations of K members.

    python benchmarks/population.py --device cuda --members 1,8,32,64,128 --epochs 1 --out DIR
    python benchmarks/population.py --device cpu --members 1,4 --epochs 1 --train-size 2000 \\
        --out DIR                                            # the CI-sized form, seconds

Each trial trains `--epochs` epochs on `--train-size` synthetic MNIST-shaped samples
(throughput does not depend on pixel values) and evaluates a validation and a test split
of `--eval-size` samples after every epoch, as a trial does. Trial i has its own seed and
learning rate. One at a time: `build_optimizer` (fused kernels on CUDA) + `train_epoch` +
`evaluate`, timed over `--sequential-trials` trials and extrapolated per trial. Fused: one
PopulationTrainer of the first K trials, per convolution form (`--conv`) and with and
without a CUDA graph of the step (`--cuda-graphs`). Each configuration warms up once
(cuDNN's algorithm search, lazy CUDA set-up) before it is timed. Writes population.csv,
population.png and summary.txt under --out; needs only torch, numpy, pandas, matplotlib.
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from harness.hyperparams import build_optimizer
from harness.lenet import LeNet
from harness.train import evaluate, train_epoch
from harness.trainers.fused_optim import FUSED_OPTIMIZERS
from harness.trainers.population import Member, PopulationTrainer
from harness.trainers.stacked import CONVS

WARMUP_BATCHES = 5  # per configuration, untimed: past a CUDA graph's capture
EVAL_BATCH = 1000  # harness's evaluation batch size


@dataclass(frozen=True)
class Data:
    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def synthetic(train_size: int, eval_size: int, device: torch.device) -> Data:
    """Normalized MNIST-shaped noise with labels, made on the device."""
    rng = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 1, 28, 28, generator=rng)
        return x.to(device), torch.randint(0, 10, (n,), generator=rng).to(device)
    return Data(*split(train_size), *split(eval_size), *split(eval_size))


def trials(n: int, optimizer: str) -> list[Member]:
    """n distinct trials: own seed, learning rates spread over two decades."""
    low, high = (1e-3, 1e-1) if optimizer == "sgd" else (1e-4, 1e-2)
    return [Member(seed=i, lr=low * (high / low) ** ((i * 0.618) % 1), momentum=0.9,
                   weight_decay=0.0 if i % 2 else 5e-4) for i in range(n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:  # Linux: writing 5 resets the process's peak resident set size
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_sequential(member: Member, data: Data, args: argparse.Namespace,
                   device: torch.device, max_batches: int | None = None) -> dict[str, float]:
    """One trial as a sweep runs it; wall and training seconds, last train loss."""
    sync(device)
    start = time.perf_counter()
    torch.manual_seed(member.seed)
    model = LeNet().to(device)
    optimizer = build_optimizer(model.parameters(), member.values(args.optimizer),
                                fused=device.type == "cuda")
    generator = torch.Generator().manual_seed(member.seed)
    train_s, loss = 0.0, math.nan
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        loss = train_epoch(model, optimizer, data.x, data.y, args.batch_size, generator,
                           max_batches).loss  # reads the loss: synced
        train_s += time.perf_counter() - t0
        evaluate(model, data.x_val, data.y_val, EVAL_BATCH)
        evaluate(model, data.x_test, data.y_test, EVAL_BATCH)
    return {"seconds": time.perf_counter() - start, "train_s": train_s, "loss": loss}


def run_fused(members: list[Member], data: Data, args: argparse.Namespace,
              device: torch.device, conv: str, graph: bool,
              max_batches: int | None = None) -> dict[str, float]:
    """The same trials as one population; wall and training seconds, mean train loss."""
    sync(device)
    start = time.perf_counter()
    trainer = PopulationTrainer(members, args.optimizer, args.batch_size, device, conv=conv,
                                cuda_graph=graph)
    train_s, losses = 0.0, [math.nan]
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        losses = trainer.epoch(data.x, data.y, max_batches).train_loss  # synced
        train_s += time.perf_counter() - t0
        trainer.evaluate(data.x_val, data.y_val, EVAL_BATCH)
        trainer.evaluate(data.x_test, data.y_test, EVAL_BATCH)
    finite = [v for v in losses if math.isfinite(v)]
    return {"seconds": time.perf_counter() - start, "train_s": train_s,
            "loss": sum(finite) / len(finite) if finite else math.nan}


def measure(run: Callable[[int | None], dict[str, float]],
            device: torch.device) -> dict[str, float]:
    """Warm up, then time `run(max_batches)` once, with its peak memory."""
    run(WARMUP_BATCHES)
    reset_peak_memory(device)
    result = run(None)
    return {**result, "peak_mem_mb": peak_memory_mb(device)}


def sequential_row(all_trials: list[Member], data: Data, args: argparse.Namespace,
                   device: torch.device) -> dict[str, object]:
    n = min(args.sequential_trials, len(all_trials))
    run_sequential(all_trials[0], data, args, device, WARMUP_BATCHES)
    reset_peak_memory(device)
    runs = [run_sequential(m, data, args, device) for m in all_trials[:n]]
    per_trial = sum(r["seconds"] for r in runs) / n
    train_s = sum(r["train_s"] for r in runs) / n
    samples = len(data.x) * args.epochs
    return {"mode": "sequential", "conv": "-", "cuda_graph": False, "members": 1,
            "trials_per_hour": 3600 / per_trial, "seconds": per_trial,
            "member_samples_per_s": samples / train_s, "samples_per_s": samples / train_s,
            "peak_mem_mb": peak_memory_mb(device),
            "train_loss": sum(r["loss"] for r in runs) / n,
            "note": f"timed {n} trials one at a time; seconds and trials/hour per trial, "
                    "extrapolated"}


def fused_row(members: list[Member], data: Data, args: argparse.Namespace,
              device: torch.device, conv: str, graph: bool) -> dict[str, object]:
    k = len(members)
    row: dict[str, object] = {"mode": "fused", "conv": conv, "cuda_graph": graph, "members": k}
    try:
        r = measure(lambda mb: run_fused(members, data, args, device, conv, graph, mb), device)
    except Exception as err:  # out of memory at large K is a result, not the end
        first_line = (str(err).splitlines() or [""])[0]
        return {**row, "note": f"{type(err).__name__}: {first_line[:120]}"}
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    samples = len(data.x) * args.epochs
    return {**row, "trials_per_hour": k * 3600 / r["seconds"], "seconds": r["seconds"],
            "member_samples_per_s": samples / r["train_s"],
            "samples_per_s": k * samples / r["train_s"], "peak_mem_mb": r["peak_mem_mb"],
            "train_loss": r["loss"], "note": f"{k} trials as one population"}


def variants(args: argparse.Namespace, device: torch.device) -> list[tuple[str, bool]]:
    """(conv, cuda_graph) pairs to run, in --conv's order, each eager before its graph."""
    graphs = {"off": [False], "on": [True], "both": [False, True],
              "auto": [False, True] if device.type == "cuda" else [False]}[args.cuda_graphs]
    if device.type != "cuda" and True in graphs:
        raise SystemExit("--cuda-graphs on|both needs a CUDA device")
    return [(conv, graph) for conv in args.conv for graph in graphs]


def main() -> None:
    args = parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":  # the settings a sweep uses on CUDA (harness.trial)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    data = synthetic(args.train_size, args.eval_size, device)
    all_trials = trials(max(args.members), args.optimizer)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    header = (f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"{args.optimizer}, batch {args.batch_size}, {args.epochs} epoch(s) of "
              f"{args.train_size:,} samples, 2 x {args.eval_size:,} evaluated per epoch")
    print(header, flush=True)
    started = time.perf_counter()
    rows = [sequential_row(all_trials, data, args, device)]
    print(f"sequential: {rows[0]['trials_per_hour']:,.0f} trials/hour", flush=True)
    for conv, graph in variants(args, device):
        for k in args.members:
            if args.max_seconds and time.perf_counter() - started > args.max_seconds:
                rows.append({"mode": "fused", "conv": conv, "cuda_graph": graph, "members": k,
                             "note": f"skipped: --max-seconds {args.max_seconds:g} spent"})
            else:
                rows.append(fused_row(all_trials[:k], data, args, device, conv, graph))
            print(f"fused K={k} {conv} graph={graph}: "
                  f"{rows[-1].get('trials_per_hour', math.nan):,.0f} trials/hour "
                  f"{rows[-1]['note'] if 'seconds' not in rows[-1] else ''}", flush=True)
            pd.DataFrame(rows).to_csv(args.out / "population.csv", index=False)  # so far
    write(pd.DataFrame(rows), header, args.out)


def write(table: pd.DataFrame, header: str, out: Path) -> None:
    """The table on stdout and as CSV, the plot, and the best configuration per K."""
    sequential = table.loc[table["mode"] == "sequential", "trials_per_hour"].iloc[0]
    table["speedup"] = table["trials_per_hour"] / sequential
    table.to_csv(out / "population.csv", index=False)
    shown = table.drop(columns=["note"]).copy()
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:,.3g}".format):
        text = f"{header}\n{shown.to_string(index=False)}\n"
    fused = table[(table["mode"] == "fused") & table["trials_per_hour"].notna()]
    lines = ["best per population size (trials/hour against one at a time):"]
    for k, group in fused.groupby("members"):
        best = group.loc[group["trials_per_hour"].idxmax()]
        lines.append(f"  K={k}: {best['conv']}, cuda_graph={best['cuda_graph']}: "
                     f"{best['trials_per_hour']:,.0f} trials/hour, {best['speedup']:.2f}x")
    lines.append(f"sequential: {table.loc[0, 'note']}")
    text += "\n".join(lines) + "\n"
    print(text)
    (out / "summary.txt").write_text(text)
    plot(table, header, out / "population.png")


def plot(table: pd.DataFrame, header: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    fused = table[(table["mode"] == "fused") & table["trials_per_hour"].notna()]
    for (conv, graph), group in fused.groupby(["conv", "cuda_graph"]):
        label = f"fused, {conv}" + (", CUDA graph" if graph else "")
        speed.plot(group["members"], group["trials_per_hour"], marker="o", label=label)
        memory.plot(group["members"], group["peak_mem_mb"], marker="o", label=label)
    speed.axhline(table.loc[0, "trials_per_hour"], color="gray", linestyle="--",
                  label="one at a time")
    speed.set(xscale="log", yscale="log", xlabel="members K", ylabel="trials per hour")
    memory.set(xscale="log", xlabel="members K", ylabel="peak memory (MiB)")
    sizes = sorted(fused["members"].unique())
    for ax in (speed, memory):
        ax.set_xticks(sizes, [str(k) for k in sizes])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(header, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--members", type=lambda s: [int(v) for v in s.split(",")],
                        default=[1, 8, 32, 64, 128], help="population sizes, e.g. 1,8,32")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=60_000)
    parser.add_argument("--eval-size", type=int, help="validation and test samples each "
                        "(default: train size / 6, 10,000 at 60,000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=list(FUSED_OPTIMIZERS), default="sgd")
    parser.add_argument("--sequential-trials", type=int, default=3,
                        help="trials timed one at a time (then extrapolated)")
    parser.add_argument("--conv", type=lambda s: s.split(","), default=list(CONVS),
                        help=f"comma-separated convolution forms: {', '.join(CONVS)}")
    parser.add_argument("--cuda-graphs", choices=["auto", "on", "off", "both"],
                        default="auto", help="auto: both on CUDA, off on the CPU")
    parser.add_argument("--max-seconds", type=float, default=0,
                        help="skip the configurations left after this long (0: no limit)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if unknown := set(args.conv) - set(CONVS):
        parser.error(f"--conv {','.join(sorted(unknown))}: choose from {', '.join(CONVS)}")
    args.eval_size = args.eval_size or max(1, args.train_size // 6)
    return args


if __name__ == "__main__":
    main()
