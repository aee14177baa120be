"""Training throughput (samples/s) on 60,000 digits, one process, same model, optimizer
(SGD, momentum 0.9, lr 0.01) and seed for all three loops:

- harness: the harness's trial (`run_trial`), its own training-time counter;
- bare: the shortest correct loop on the same tensors (permutation indexing, one sync);
- article: the original article's loop: torchvision MNIST with ToTensor and Normalize
  transforms, a DataLoader (shuffle, num_workers=0), loss.item() every step.

    .venv/bin/python benchmarks/trial_throughput.py [--epochs 2] [--batch-sizes 64 256]
    .venv/bin/python benchmarks/trial_throughput.py --device cuda   # also prints s/epoch

The loops alternate, and each figure is the median of --epochs epochs after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import SAMPLES, digits_60k, write_idx

from harness.data import Dataset
from harness.device import resolve_device, setup_device
from harness.lenet import LeNet
from harness.trial import run_trial
from harness.types import Training, TrialSpec

PARAMS = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "optimizer": "sgd"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def harness_epoch(data: Dataset, batch_size: int) -> float:
    spec = TrialSpec(number=0, run="bench", params={**PARAMS, "batch_size": batch_size},
                     seed=0)
    return run_trial(spec, Training(epochs=1), data).samples_per_s


def bare_epoch(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    torch.manual_seed(0)
    model = LeNet().to(x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sync(x.device)
    start = time.perf_counter()
    order = torch.randperm(len(x)).to(x.device)
    total = torch.zeros((), device=x.device)
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.detach()
    total.item()
    return len(x) / (time.perf_counter() - start)


def article_epoch(root: Path, batch_size: int, device: torch.device) -> float:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((0.1307,), (0.3081,))])
    loader = DataLoader(datasets.MNIST(str(root), train=True, transform=transform),
                        batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = LeNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sync(device)
    start = time.perf_counter()
    running = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        running += loss.item()
    return SAMPLES / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    setup_device(device)
    cpu_x, cpu_y = digits_60k()
    x, y = cpu_x.to(device), cpu_y.to(device)
    data = Dataset("bench", x_train=x, y_train=y, x_val=x[:1000], y_val=y[:1000],
                   x_test=x[:1000], y_test=y[:1000])
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"{SAMPLES:,} samples")
    with tempfile.TemporaryDirectory() as root:
        write_idx(Path(root), cpu_x, cpu_y)
        for batch_size in args.batch_sizes:
            loops = {"harness": lambda b=batch_size: harness_epoch(data, b),
                     "bare": lambda b=batch_size: bare_epoch(x, y, b),
                     "article": lambda b=batch_size: article_epoch(Path(root), b, device)}
            for loop in loops.values():
                loop()  # warm-up
            rates: dict[str, list[float]] = {name: [] for name in loops}
            for _ in range(args.epochs):
                for name, loop in loops.items():
                    rates[name].append(loop())
            med = {name: statistics.median(r) for name, r in rates.items()}
            print(f"batch {batch_size}: " + ", ".join(
                f"{name} {rate:,.0f} samples/s" for name, rate in med.items()))
            print(f"  harness/bare {med['harness'] / med['bare']:.3f}, "
                  f"harness/article {med['harness'] / med['article']:.2f}; one epoch: " +
                  ", ".join(f"{name} {SAMPLES / rate:.2f} s" for name, rate in med.items()))


if __name__ == "__main__":
    main()
