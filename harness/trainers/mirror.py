"""What a population's members show their sinks: each member as a plain LeNet whose
parameters are views of one `[K, P]` copy of the population's weights (the mirror),
refreshed with one copy on the device after every epoch (no host sync).

A sink reads its member's LeNet as it reads a trial's own model (a prediction grid is
its forward pass). One that works on all members at once finds the population through
the member's `population` attribute, `(mirror, row)`: TensorBoard bins every member's
weights for its histograms in one pass and one sync, keeps them in `mirror.cache` for
the other members' sinks, and the next refresh empties that cache.

A member that leaves the population keeps the views of the mirror it left: that one is
never refreshed again, so its LeNet holds its last weights for its sinks to finish with.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from harness.lenet import LeNet
from harness.trainers.stacked import StackedLeNet


class Mirror:
    """A copy of a population's weights, as its members' sinks read them."""

    def __init__(self, net: StackedLeNet) -> None:
        self.flat = net.flat.detach().clone()
        self.shapes, self.offsets = net.shapes, net.offsets
        self.k = net.k
        self.cache: dict[str, Any] = {}  # what a sink computed from all members at once

    def refresh(self, net: StackedLeNet) -> None:
        """The population's weights now (after an epoch)."""
        self.flat.copy_(net.flat.detach())
        self.cache.clear()

    def stacked(self) -> dict[str, Tensor]:
        """Each parameter of every member, [K, *shape], as views."""
        return {name: self._columns(self.flat, name).view(self.k, *shape)
                for name, shape in self.shapes.items()}

    def point(self, model: nn.Module, row: int) -> None:
        """Make `model`'s parameters the views of member `row`'s weights."""
        for name, shape in self.shapes.items():
            owner, _, attribute = name.rpartition(".")
            view = self._columns(self.flat[row], name).view(shape)
            model.get_submodule(owner)._parameters[attribute] = nn.Parameter(
                view, requires_grad=False)
        model.population = (self, row)  # type: ignore[assignment]

    def _columns(self, t: Tensor, name: str) -> Tensor:
        start = self.offsets[name]
        return t[..., start : start + math.prod(self.shapes[name])]


def member_module(mirror: Mirror, row: int) -> nn.Module:
    """A LeNet showing member `row` of the mirror. Built on the meta device: it draws
    nothing from the random generators and allocates nothing of its own."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = LeNet()
    mirror.point(model, row)
    return model.eval()
