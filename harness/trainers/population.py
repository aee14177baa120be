"""Population training: K LeNet trials trained as one fused model on one device.

Members share what cannot be fused (optimizer type, batch size, data, epochs) and keep
their own seed (initial weights and batch order, drawn exactly as harness.train's single
trainer draws them), learning rate, momentum and weight decay, so member k follows the
trial it stands for up to rounding. The loss is the sum of the members' mean
cross-entropies, so each member's gradient is its own.

A member stops training (`active` goes False, on the device, without a sync) at the
first step whose loss or new weights are not finite, or when the caller stops it
(pruned, diverged above a threshold, failed in its own book-keeping); it then keeps its
last finite weights. Losses are accumulated on the device and read once per epoch. On
CUDA the training step can be captured once as a CUDA graph and replayed.

    trainer = PopulationTrainer(members, "sgd", batch_size=64, device=device)
    stats = trainer.epoch(x_train, y_train)          # PopulationEpoch
    val = trainer.evaluate(x_val, y_val)             # PopulationEval
    LeNet().load_state_dict(trainer.state_dicts([k])[0])

Members leave and join between epochs: a new population is made of the members that go
on, each carried over where it is (`carry`: weights, optimizer state, batch-order
generator), and the members that join, each as its trial alone starts (weights drawn from
its seed, a fresh optimizer state, a generator seeded with its seed). Each member's
numbers are then exactly those it would have had in any population, or alone.

    trainer = PopulationTrainer(going_on + joining, "sgd", 64, device,
                                carried=trainer.carry(going_on_indices))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.hyperparams import LR, MOMENTUM, OPTIMIZER, WEIGHT_DECAY
from harness.lenet import LeNet
from harness.stop import requested as stop_requested
from harness.trainers.fused_optim import build_fused_optimizer
from harness.trainers.stacked import StackedLeNet, seeded_lenets, stack_rows

GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before capture, as CUDA graphs need
EVAL_MEMBER_SAMPLES = 32_768  # members x samples per evaluation chunk (bounds its memory)


@dataclass(frozen=True)
class Member:
    seed: int  # initial weights and batch order
    lr: float
    momentum: float = 0.0  # sgd only, as in harness.hyperparams.OPTIMIZERS
    weight_decay: float = 0.0

    def values(self, optimizer: str) -> dict[str, Any]:
        """Its hyperparameters as harness.hyperparams.build_optimizer takes them."""
        return {OPTIMIZER: optimizer, LR: self.lr, MOMENTUM: self.momentum,
                WEIGHT_DECAY: self.weight_decay}


@dataclass(frozen=True)
class PopulationEpoch:
    train_loss: list[float]  # per member: mean loss over the samples it trained on (nan: none)
    seen: int  # training samples each active member was shown this epoch
    active: list[bool]  # per member: still training after this epoch
    diverged: list[bool]  # per member: stopped during this epoch (non-finite loss or weights)
    # per member: (step in the epoch, that step's loss) every log_every steps
    step_losses: list[list[tuple[int, float]]] = field(default_factory=list)


@dataclass(frozen=True)
class Carried:
    """Members taken into another population where they were, in order: what they go on
    from there with."""

    rows: Tensor  # [n, P] their weights
    state: dict[str, Tensor]  # their rows of the optimizer's state (FusedOptimizer.STATE)
    generators: list[torch.Generator]  # their batch orders, as far as they were drawn
    active: Tensor  # [n] bool: whether each still trains (not stopped, not diverged)

    def select(self, members: Sequence[int]) -> Carried:
        index = torch.as_tensor(list(members), dtype=torch.long, device=self.rows.device)
        return Carried(self.rows.index_select(0, index),
                       {name: t.index_select(0, index.to(t.device))
                        for name, t in self.state.items()},
                       [self.generators[k] for k in members], self.active.index_select(0, index))


def default_conv(device: torch.device) -> str:
    """On CUDA one grouped convolution for all members (launches are what cost there:
    README's table); on the CPU one member after another, which measured faster there
    than fusing (benchmarks/README.md) and gives each member exactly the numbers of its
    trial run alone."""
    return "grouped" if device.type == "cuda" else "loop"


@dataclass(frozen=True)
class PopulationEval:
    loss: list[float]  # per member: mean cross-entropy
    acc: list[float]  # per member: accuracy


class PopulationTrainer:
    """K LeNets trained as one; see the module's docstring."""

    def __init__(self, members: Sequence[Member], optimizer: str, batch_size: int,
                 device: torch.device | str, *, conv: str | None = None,
                 cuda_graph: bool = False, amp: bool = False,
                 dtype: torch.dtype = torch.float32, carried: Carried | None = None) -> None:
        """`carried`: the first members come from another population where they were
        (`carry`); the others start as their trials alone do."""
        self.device = torch.device(device)
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph needs a CUDA device, not {self.device}")
        self.members, self.batch_size, self.amp = list(members), batch_size, amp
        self.optimizer_name, self.dtype = optimizer, dtype
        n = 0 if carried is None else len(carried.rows)
        self.net = _stacked(self.members[n:], carried, self.device, dtype,
                            conv or default_conv(self.device))
        self.k = self.net.k
        self.optimizer = build_fused_optimizer(
            optimizer, self.net.flat, [m.lr for m in self.members],
            [m.momentum for m in self.members], [m.weight_decay for m in self.members])
        self.generators = [torch.Generator().manual_seed(m.seed) for m in self.members[n:]]
        self._active = torch.ones(self.k, dtype=torch.bool, device=self.device)
        if carried is not None:
            self.optimizer.load_rows(carried.state)
            self.generators[:0] = carried.generators
            self._active[:n] = carried.active
        self._epoch_start: Carried | None = None  # where this epoch started (`restart`)
        self._loss_sum = torch.zeros(self.k, dtype=dtype, device=self.device)
        self._seen = torch.zeros(self.k, dtype=torch.long, device=self.device)
        self._last_losses = torch.zeros(self.k, dtype=dtype, device=self.device)  # the step's
        self.cuda_graph = cuda_graph
        self._graph: _StepGraph | None = None
        self._graph_data: tuple[Tensor, Tensor] | None = None
        self._warm_steps = 0

    @property
    def active(self) -> list[bool]:
        """Members still training (reads the device)."""
        return self._active.tolist()

    def stop(self, members: Iterable[int]) -> None:
        """Stop training these members (pruned, diverged, failed); their weights stay."""
        members = list(members)
        if members:
            self._active[members] = False

    def carry(self, members: Sequence[int]) -> Carried:
        """These members where they are, between two epochs, for another population."""
        index = torch.as_tensor(list(members), dtype=torch.long, device=self.device)
        return Carried(self.net.flat.detach().index_select(0, index),
                       self.optimizer.rows(members), [self.generators[k] for k in members],
                       self._active.index_select(0, index))

    def restart(self, members: Sequence[int]) -> Carried:
        """These members where they were at the last `mark_epoch_start`: a population
        that ran out of memory part way through an epoch goes on in smaller ones from
        there."""
        if self._epoch_start is None:
            raise RuntimeError("restart needs mark_epoch_start before the epoch")
        return self._epoch_start.select(members)

    def mark_epoch_start(self) -> None:
        """Keep where every member is now, for `restart`: copies of the whole state (on
        the device, no sync) and of the batch-order generators."""
        generators = []
        for g in self.generators:
            copy = torch.Generator()
            copy.set_state(g.get_state())
            generators.append(copy)
        self._epoch_start = Carried(self.net.flat.detach().clone(),
                                    self.optimizer.rows(range(self.k)), generators,
                                    self._active.clone())

    def epoch(self, x: Tensor, y: Tensor, max_batches: int | None = None,
              log_every: int = 0, should_stop: Callable[[], bool] = stop_requested
              ) -> PopulationEpoch:
        """One pass over (x, y) for every active member, each in its own random order;
        every `log_every` steps each member's loss is kept on the device, and all are
        read with the epoch's means, in one sync (as `train_epoch` does). Once
        `should_stop()` (Ctrl-C or SIGTERM came) it raises KeyboardInterrupt between
        steps, as `train_epoch` does: the population stops after one fused step."""
        n, b = len(x), self.batch_size
        orders = torch.stack([torch.randperm(n, generator=g) for g in self.generators])
        orders = orders.to(x.device, non_blocking=True)
        steps = -(-n // b) if max_batches is None else min(-(-n // b), max_batches)
        started = self._active.clone()
        self._loss_sum.zero_()
        self._seen.zero_()
        sampled: list[Tensor] = []
        for step in range(steps):
            if should_stop():
                raise KeyboardInterrupt
            self._run_step(x, y, orders[:, step * b : (step + 1) * b])
            if log_every and step % log_every == 0:
                sampled.append(self._last_losses.clone())
        loss_sum, seen, was_active, active, *rows = torch.stack([
            self._loss_sum.double(), self._seen.double(), started.double(),
            self._active.double(), *(row.double() for row in sampled)]).tolist()
        logged = range(0, len(rows) * log_every, log_every) if log_every else range(0)
        return PopulationEpoch(
            train_loss=[s / c if c else float("nan") for s, c in zip(loss_sum, seen,
                                                                       strict=True)],
            seen=min(n, steps * b), active=[bool(a) for a in active],
            diverged=[bool(w and not a) for w, a in zip(was_active, active, strict=True)],
            step_losses=[[(step, row[k]) for step, row in zip(logged, rows, strict=True)]
                         for k in range(self.k)])

    @torch.inference_mode()
    def evaluate(self, x: Tensor, y: Tensor, batch_size: int = 1000) -> PopulationEval:
        """Mean loss and accuracy of every member over (x, y), one sync at the end."""
        # One member at a time (loop) keeps a chunk's activations to one member's: the
        # single trainer's chunks, so each member's sums are added up as its trial's are.
        chunk = batch_size if self.net.conv == "loop" else max(
            1, min(batch_size, EVAL_MEMBER_SAMPLES // self.k))
        loss = torch.zeros(self.k, device=x.device)
        correct = torch.zeros(self.k, dtype=torch.long, device=x.device)
        for start in range(0, len(x), chunk):
            target = y[start : start + chunk]
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
                logits = self.net.forward_shared(x[start : start + chunk]).float()
            loss += self._losses(logits, target.expand(self.k, -1), "sum")
            correct += (logits.argmax(2) == target).sum(1)
        n = max(len(x), 1)
        losses, corrects = torch.stack([loss.double(), correct.double()]).tolist()
        return PopulationEval([v / n for v in losses], [c / n for c in corrects])

    def state_dicts(self, members: Sequence[int]) -> list[dict[str, Tensor]]:
        """Plain LeNet state_dicts (CPU) of these members, for checkpoints."""
        return self.net.state_dicts(members)

    def _losses(self, logits: Tensor, target: Tensor, reduction: str) -> Tensor:
        """Per-member cross-entropy ([K]) of logits [K, b, C] against target [K, b]. With
        `loop`, each member's as its trial computes it (one reduction per member), so
        its losses are its trial's to the last bit."""
        if self.net.conv == "loop":
            return torch.stack([F.cross_entropy(logits[k], target[k], reduction=reduction)
                                for k in range(self.k)])
        per_sample = F.cross_entropy(logits.flatten(0, 1), target.reshape(-1),
                                     reduction="none").view(self.k, -1)
        return per_sample.sum(1) if reduction == "sum" else per_sample.mean(1)

    def _step(self, x: Tensor, y: Tensor, idx: Tensor) -> None:
        """One fused training step on batches idx ([K, b]); no host sync."""
        live = self._active.clone()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.net.forward(self.net.gather(x, idx))
        losses = self._losses(logits.float() if self.amp else logits, y[idx], "mean")
        # where, not a product: a stopped member's NaN loss must not enter the sum
        total = torch.where(live, losses, 0).sum()
        grads = torch.autograd.grad(total, list(self.net.params.values()))
        grad = torch.cat([g.reshape(self.k, -1) for g in grads], 1)
        applied = self.optimizer.step(grad, live & torch.isfinite(losses))
        self._last_losses.copy_(losses.detach())
        self._loss_sum += torch.where(live, losses.detach() * idx.shape[1], 0)
        self._seen.add_(live, alpha=idx.shape[1])
        self._active.copy_(applied)

    def _run_step(self, x: Tensor, y: Tensor, idx: Tensor) -> None:
        """A step, replayed from the CUDA graph when there is one for these tensors; the
        first full steps warm up on a side stream and then capture it."""
        graphable = self.cuda_graph and idx.shape[1] == self.batch_size
        if graphable and self._graph is not None and self._graph_data is not None \
                and self._graph_data[0] is x and self._graph_data[1] is y:
            self._graph.replay(idx)
            return
        if not graphable:
            self._step(x, y, idx)
            return
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._step(x, y, idx)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._warm_steps += 1
        if self._warm_steps >= GRAPH_WARMUP_STEPS:
            self._graph = _StepGraph(lambda i: self._step(x, y, i), tuple(idx.shape),
                                     self.device)
            self._graph_data = (x, y)


def _stacked(fresh: Sequence[Member], carried: Carried | None, device: torch.device,
             dtype: torch.dtype, conv: str) -> StackedLeNet:
    """The carried members' rows, then the fresh members' initial weights (drawn as
    their trials draw them)."""
    models = seeded_lenets([m.seed for m in fresh])
    if carried is None:
        return StackedLeNet(models, device, dtype, conv)
    rows = carried.rows.clone()
    if models:
        rows = torch.cat([rows, stack_rows(models).to(device=device, dtype=dtype)])
    return StackedLeNet(models or [_structure()], device, dtype, conv, rows=rows)


def _structure() -> LeNet:
    """A LeNet for its structure only: no memory, no draw from the random generators."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return LeNet()


class _StepGraph:
    """One training step captured as a CUDA graph, replayed on new batch indices."""

    def __init__(self, step: Callable[[Tensor], None], idx_shape: tuple[int, ...],
                 device: torch.device) -> None:
        self.idx = torch.zeros(idx_shape, dtype=torch.long, device=device)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: a sweep's other threads (claims, a finished member's checkpoint
        # and prediction grid) may use the device while this thread captures
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            step(self.idx)

    def replay(self, idx: Tensor) -> None:
        self.idx.copy_(idx)
        self.graph.replay()
