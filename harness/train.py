"""One training epoch and one evaluation: pure functions that return numbers.

Losses are accumulated on the device and read once per epoch, so a GPU never waits on
Python between steps. Nothing here prints, logs or knows about sinks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    max_batches: int | None = None,
) -> tuple[float, int]:
    """Train one pass over (x, y) in a random order; return (mean loss, samples seen).

    The order comes from `generator` (a CPU generator, so the same seed gives the same
    order on every device). `max_batches` cuts the epoch short for dry runs.
    """
    model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device, non_blocking=True)
    total = torch.zeros((), device=x.device)
    seen = 0
    for batch, start in enumerate(range(0, len(x), batch_size)):
        if max_batches is not None and batch >= max_batches:
            break
        idx = order[start : start + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(idx)
        seen += len(idx)
    return total.item() / max(seen, 1), seen


@torch.inference_mode()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Return (mean loss, accuracy) over (x, y), in large batches, one sync at the end."""
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    n = max(len(x), 1)
    return loss.item() / n, correct.item() / n
