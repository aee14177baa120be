"""One trial: seed, model, optimizer, the epoch loop, timing, and failure -> a result.

A trial never raises for a problem of its own: divergence and exceptions become a FAIL
result with the reason, so the sweep goes on. Ctrl-C becomes a FAIL result marked
`interrupted`, which the caller records before it stops.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from harness.config import ConfigError
from harness.data import Dataset
from harness.errors import describe, no_space, retryable, warn
from harness.files import atomic_torch_save
from harness.models import build_model, build_optimizer
from harness.sinks.base import Sink
from harness.train import evaluate, train_epoch
from harness.types import INTERRUPTED, RETRYABLE, TrialResult, TrialSpec

# Called after every epoch with its metrics; returns True to prune the trial.
EpochCallback = Callable[[dict[str, float]], bool]


def run_trial(
    spec: TrialSpec,
    data: Dataset,
    sinks: Sequence[Sink] = (),
    checkpoint: Path | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrialResult:
    """Train and evaluate one configuration; the best weights go to `checkpoint`."""
    loop = _Loop(spec, data, sinks, on_epoch)
    full = None
    try:
        state, error = loop.run()
    except KeyboardInterrupt:
        state, error = "FAIL", INTERRUPTED
    except Exception as err:  # a failing trial is a result, not the end of the sweep
        state, error, full = "FAIL", retryable(err) or describe(err), no_space(err)
        if data.device.type == "cuda":
            torch.cuda.empty_cache()  # after an out-of-memory error, for the next trial
    if full is None and checkpoint is not None and loop.best_state is not None:
        full = _save_checkpoint(loop.best_state, checkpoint)
    if full is not None:
        state, error = "FAIL", f"{RETRYABLE}: no space left on device writing " \
                               f"{full.filename or 'a file'}"
    result = TrialResult(
        spec=spec, state=state, history=loop.history, error=error,
        duration_s=time.perf_counter() - loop.started, samples_per_s=loop.samples_per_s,
        best_epoch=loop.best_epoch, stop=full)
    for sink in sinks:
        sink.finish(result)
    return result


def _save_checkpoint(weights: dict[str, torch.Tensor], path: Path) -> OSError | None:
    """Save the best weights. A full disk is returned: the trial runs again once there
    is space. Any other failure costs the checkpoint only, with one warning."""
    try:
        atomic_torch_save(weights, path)
    except OSError as err:
        if no_space(err) is not None:
            return err
        warn(f"checkpoint {path} not saved ({err}); the trial's result is recorded "
             "without it")
    return None


class _Loop:
    """The epoch loop, keeping what a failure must not lose: history and best weights."""

    def __init__(self, spec: TrialSpec, data: Dataset, sinks: Sequence[Sink],
                 on_epoch: EpochCallback | None) -> None:
        self.spec, self.data, self.sinks, self.on_epoch = spec, data, sinks, on_epoch
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch: int | None = None
        self.started = time.perf_counter()
        self.train_time = 0.0
        self.train_samples = 0

    @property
    def samples_per_s(self) -> float:
        return self.train_samples / self.train_time if self.train_time > 0 else 0.0

    def run(self) -> tuple[str, str]:
        spec, data = self.spec, self.data
        torch.manual_seed(spec.seed)
        model = build_model(spec.model).to(data.device)
        if spec.channels_last:
            model = model.to(memory_format=torch.channels_last)
            data = data.channels_last()
        p = spec.params
        optimizer = build_optimizer(p["optimizer"], model.parameters(), p["lr"],
                                    p["momentum"], p["weight_decay"],
                                    fused=data.device.type == "cuda")
        generator = torch.Generator().manual_seed(spec.seed)
        for sink in self.sinks:
            sink.start(spec, model)
        steps = 0
        for epoch in range(1, spec.epochs + 1):
            t0 = time.perf_counter()
            stats = train_epoch(model, optimizer, data.x_train, data.y_train, p["batch_size"],
                                generator, spec.max_batches, spec.log_every, spec.amp)
            self.train_time += time.perf_counter() - t0
            self.train_samples += stats.seen
            for step, loss in stats.step_losses:
                for sink in self.sinks:
                    sink.log({"train_loss_step": loss}, steps + step)
            steps += -(-stats.seen // p["batch_size"])
            val_loss, val_acc = evaluate(model, data.x_val, data.y_val,
                                         spec.eval_batch_size, spec.amp)
            test_loss, test_acc = evaluate(model, data.x_test, data.y_test,
                                           spec.eval_batch_size, spec.amp)
            metrics = {"epoch": epoch, "train_loss": stats.loss, "val_loss": val_loss,
                       "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc,
                       "lr": p["lr"],
                       "epoch_s": time.perf_counter() - t0,
                       "elapsed_s": time.perf_counter() - self.started}
            self.history.append(metrics)
            for sink in self.sinks:
                sink.log(metrics, epoch)
            for name in ("train_loss", "test_loss"):
                value = metrics[name]
                if not math.isfinite(value) or (name == "train_loss"
                                                and value > spec.diverge_above):
                    return "FAIL", f"diverged: {name.replace('_', ' ')} is {value:.1e} " \
                                   f"at epoch {epoch}"
            if self._improved(metrics[spec.metric]):
                self.best_epoch = epoch
                self.best_state = {k: v.detach().to("cpu", copy=True)
                                   for k, v in model.state_dict().items()}
            # The callback hears every epoch, the last too; but a trial that ran all its
            # epochs is complete: pruning it then would save nothing and hide a result.
            if self.on_epoch is not None and self.on_epoch(metrics) and epoch < spec.epochs:
                return "PRUNED", ""
        return "COMPLETE", ""

    def _improved(self, value: float) -> bool:
        if self.best_epoch is None:
            return True
        best = self.history[self.best_epoch - 1][self.spec.metric]
        return value > best if self.spec.maximize else value < best


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for a device that is absent is bad input."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} but this machine has no CUDA device; use "
                              "--device cpu or auto")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} but there are only "
                              f"{torch.cuda.device_count()} CUDA devices")
        # TF32 matmuls and convolutions, and cuDNN picking its fastest kernels: the
        # usual speed settings for training on NVIDIA GPUs, whether named or auto.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return device
