"""K LeNets as one model: stacked parameters and one forward pass for all members.

The parameters live in one `[K, P]` tensor (`flat`), member k's row being its LeNet's
parameters in `named_parameters()` order, so a vectorized optimizer updates all of them
with a few ops; each layer's `[K, ...]` view of it is an autograd leaf. Convolutions run
as one grouped convolution with the members as groups (what `torch.func.vmap`'s own conv
rule does) with the linear layers as `baddbmm`, through `vmap` over `functional_call`,
or one member after another through LeNet's own forward (`loop`: each member's numbers
are exactly those of its trial run alone; the CPU's choice, where launches cost little
and it measured faster than fusing: benchmarks/README.md).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.lenet import LeNet

CONVS = ("grouped", "vmap", "loop")  # how the members' convolutions are batched


def stack_rows(models: Sequence[nn.Module]) -> Tensor:
    """The models' parameters as [K, P] rows, in `named_parameters()` order."""
    return torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()])
                        for m in models])


def seeded_lenets(seeds: Sequence[int]) -> list[LeNet]:
    """One LeNet per seed, with the initial weights the single trainer draws
    (`torch.manual_seed(seed); LeNet()`, built on the CPU); the global RNGs are left as
    they were."""
    models = []
    with torch.random.fork_rng(devices=[]):
        for seed in seeds:
            torch.default_generator.manual_seed(seed)
            models.append(LeNet())
    return models


class StackedLeNet:
    """The members' parameters, stacked, and their forward passes, fused."""

    def __init__(self, models: Sequence[nn.Module], device: torch.device,
                 dtype: torch.dtype = torch.float32, conv: str = "grouped",
                 rows: Tensor | None = None) -> None:
        """The members are `models`, or, given `rows` ([K, P], see `stack_rows`), those
        rows, `models` then giving only the structure (one model is enough)."""
        if conv not in CONVS:
            raise ValueError(f"conv {conv!r}: choose one of {', '.join(CONVS)}")
        if not models:
            raise ValueError("a population needs at least one member")
        if any(True for _ in models[0].buffers()):
            raise ValueError("models with buffers (batch norm statistics) cannot be stacked")
        self.conv = conv
        named = list(models[0].named_parameters())
        self.shapes = {name: tuple(p.shape) for name, p in named}
        self.offsets = dict(zip(self.shapes, _starts(self.shapes.values()), strict=True))
        self.flat = (stack_rows(models) if rows is None else rows).to(device=device,
                                                                       dtype=dtype)
        self.k = self.flat.shape[0]
        # each layer's leaf is a view of flat: autograd sees it, the optimizer updates flat
        self.params = {name: self._slice(self.flat, name).view(self.k, *shape).detach()
                       .requires_grad_() for name, shape in self.shapes.items()}
        self.template = copy.deepcopy(models[0]).to("meta")  # structure for functional_call

    def gather(self, x: Tensor, idx: Tensor) -> Tensor:
        """Each member's batch (`idx`: [K, b] rows of `x`) in the layout `forward` reads."""
        if self.conv in ("vmap", "loop"):
            return x[idx]  # [K, b, C, H, W]
        batch = x[idx.t()]  # [b, K, C, H, W]: members as channel groups
        return batch.reshape(batch.shape[0], -1, *batch.shape[3:])

    def forward(self, batch: Tensor) -> Tensor:
        """Logits [K, b, classes] of each member on its own batch (from `gather`)."""
        if self.conv == "vmap":
            return torch.func.vmap(self._one, in_dims=(0, 0))(self.params, batch)
        if self.conv == "loop":
            return self._looped(batch, shared=False)
        return self._grouped(batch, shared=False)

    def forward_shared(self, x: Tensor) -> Tensor:
        """Logits [K, b, classes] of every member on the same inputs x ([b, C, H, W])."""
        if self.conv == "vmap":
            return torch.func.vmap(self._one, in_dims=(0, None))(self.params, x)
        if self.conv == "loop":
            return self._looped(x, shared=True)
        return self._grouped(x, shared=True)

    def state_dicts(self, members: Sequence[int]) -> list[dict[str, Tensor]]:
        """Plain LeNet state_dicts of the given members, on the CPU (one copy for all)."""
        rows = self.flat[list(members)].detach().to("cpu")
        return [{name: self._slice(row, name).view(shape).clone()
                 for name, shape in self.shapes.items()} for row in rows]

    def state_dict_here(self, member: int) -> dict[str, Tensor]:
        """Member's plain LeNet state_dict, copied on the device: no host sync (a
        checkpoint moves it to the CPU when it is written)."""
        row = self.flat[member].detach().clone()
        return {name: self._slice(row, name).view(shape) for name, shape in self.shapes.items()}

    def _slice(self, t: Tensor, name: str) -> Tensor:
        """Parameter `name`'s columns of a [K, P] tensor (or of one [P] row)."""
        start = self.offsets[name]
        return t[..., start : start + math.prod(self.shapes[name])]

    def _one(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return torch.func.functional_call(self.template, params, (x,))

    def _grouped(self, x: Tensor, shared: bool) -> Tensor:
        """LeNet's forward with members as convolution groups. On shared inputs the
        first convolution is an ordinary one with K times the output channels."""
        p, k = self.params, self.k
        h = _conv(x, p["conv1.weight"], p["conv1.bias"], groups=1 if shared else k)
        h = F.max_pool2d(F.relu(h), 2)
        h = _conv(h, p["conv2.weight"], p["conv2.bias"], groups=k)
        h = F.max_pool2d(F.relu(h), 2)
        h = h.reshape(h.shape[0], k, -1).transpose(0, 1)  # [K, b, features]
        h = F.relu(_linear(h, p["fc1.weight"], p["fc1.bias"]))
        h = F.relu(_linear(h, p["fc2.weight"], p["fc2.bias"]))
        return _linear(h, p["fc3.weight"], p["fc3.bias"])

    def _looped(self, x: Tensor, shared: bool) -> Tensor:
        """Each member through LeNet's own forward, on its own parameters: exactly the
        computation of its LeNet alone. unbind, not indexing: its backward writes each
        member's gradient once, where K index ops would each fill a [K, ...] zero."""
        rows = {name: p.unbind(0) for name, p in self.params.items()}
        return torch.stack([self._one({name: r[k] for name, r in rows.items()},
                                      x if shared else x[k]) for k in range(self.k)])


def _conv(x: Tensor, weight: Tensor, bias: Tensor, groups: int) -> Tensor:
    return F.conv2d(x, weight.reshape(-1, *weight.shape[2:]), bias.reshape(-1),
                    groups=groups)


def _linear(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))


def _starts(shapes: Iterable[tuple[int, ...]]) -> list[int]:
    """Where each parameter starts in a member's row."""
    sizes = [math.prod(shape) for shape in shapes]
    return [sum(sizes[:i]) for i in range(len(sizes))]
