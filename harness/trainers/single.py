"""One trial's model and optimizer: the trainer of one member, on any device.

    trainer = SingleTrainer(spec, training, data)
    [metrics] = trainer.epoch([spec])
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from harness.data import Dataset
from harness.hyperparams import BATCH_SIZE, build_optimizer
from harness.models import build_model
from harness.train import evaluate, train_epoch
from harness.types import EpochMetrics, Training, TrialSpec


class SingleTrainer:
    def __init__(self, spec: TrialSpec, training: Training, data: Dataset) -> None:
        self.spec, self.training = spec, training
        torch.manual_seed(spec.seed)
        self.model = build_model(training.model).to(data.device)
        if training.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            data = data.channels_last()
        self.data = data
        self.optimizer = build_optimizer(self.model.parameters(), spec.params,
                                         fused=data.device.type == "cuda")
        self.generator = torch.Generator().manual_seed(spec.seed)

    def module(self, member: TrialSpec) -> nn.Module:
        return self.model

    def epoch(self, members: Sequence[TrialSpec]) -> list[EpochMetrics]:
        """Train one epoch, then evaluate on validation and test."""
        data, training = self.data, self.training
        batch_size = self.spec.params[BATCH_SIZE]
        t0 = time.perf_counter()
        stats = train_epoch(self.model, self.optimizer, data.x_train, data.y_train,
                            batch_size, self.generator, training.max_batches,
                            training.log_every, training.amp)
        train_s = time.perf_counter() - t0
        val_loss, val_acc = evaluate(self.model, data.x_val, data.y_val,
                                     training.eval_batch_size, training.amp)
        test_loss, test_acc = evaluate(self.model, data.x_test, data.y_test,
                                       training.eval_batch_size, training.amp)
        return [EpochMetrics(
            train_loss=stats.loss, val_loss=val_loss, val_acc=val_acc, test_loss=test_loss,
            test_acc=test_acc, seen=stats.seen, steps=-(-stats.seen // batch_size),
            train_s=train_s, epoch_s=time.perf_counter() - t0, step_losses=stats.step_losses)]

    def weights(self, member: TrialSpec) -> dict[str, torch.Tensor]:
        """A copy of the current weights on the CPU."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def stop(self, members: Sequence[TrialSpec]) -> None:
        """Nothing to free: the trainer ends with its one member."""
