"""One training epoch and one evaluation: pure functions that return numbers.

Losses are accumulated on the device and read once per epoch, so a GPU never waits on
Python between steps. Nothing here prints, logs or knows about sinks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness import stop


@dataclass(frozen=True)
class EpochStats:
    loss: float  # mean training loss over the epoch
    seen: int  # training samples seen
    step_losses: list[tuple[int, float]]  # (step in the epoch, loss) every log_every steps


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    max_batches: int | None = None,
    log_every: int = 0,
    amp: bool = False,
    should_stop: Callable[[], bool] = stop.requested,
) -> EpochStats:
    """Train one pass over (x, y) in a random order.

    The order comes from `generator` (a CPU generator, so the same seed gives the same
    order on every device). Every `log_every` steps the loss is kept on the device; all
    of them are read with the epoch's mean, in one sync. `max_batches` cuts the epoch
    short for dry runs; `amp` runs the forward pass under bf16 autocast. Once
    `should_stop()` (Ctrl-C or SIGTERM came) it raises KeyboardInterrupt between batches.
    """
    model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device, non_blocking=True)
    total = torch.zeros((), device=x.device)
    sampled: list[torch.Tensor] = []
    seen = 0
    for step, start in enumerate(range(0, len(x), batch_size)):
        if max_batches is not None and step >= max_batches:
            break
        if should_stop():
            raise KeyboardInterrupt
        idx = order[start : start + batch_size]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(idx)
        if log_every and step % log_every == 0:
            sampled.append(loss.detach())
        seen += len(idx)
    values = torch.stack([total, *sampled]).tolist()
    steps = range(0, len(sampled) * log_every, log_every) if log_every else []
    return EpochStats(values[0] / max(seen, 1), seen, list(zip(steps, values[1:], strict=True)))


@torch.inference_mode()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, amp: bool = False
) -> tuple[float, float]:
    """Return (mean loss, accuracy) over (x, y), in large batches, one sync at the end;
    (nan, nan) for no samples (a turned-off validation split)."""
    if len(x) == 0:
        return math.nan, math.nan
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), batch_size):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x[start : start + batch_size]).float()
        target = y[start : start + batch_size]
        loss += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    total, right = torch.stack([loss, correct.to(loss.dtype)]).tolist()
    return total / len(x), right / len(x)
