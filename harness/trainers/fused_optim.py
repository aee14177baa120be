"""Optimizers vectorized over a population: K members' parameters as one `[K, P]` tensor.

Each member has its own learning rate, momentum and weight decay ([K] tensors), and each
follows `torch.optim`'s update rule for its optimizer exactly (the single-tensor
formulas, with every per-step coefficient computed in float64 and rounded to the
parameters' dtype, as torch.optim's Python floats are). A step is a handful of tensor
ops over the whole population, whatever K, and never reads a value back to the host,
so it can be captured in a CUDA graph.

Masking: `step(grad, active)` updates only the members in `active` whose new parameters
are finite, with `torch.where` (multiplying by 0 would not stop a NaN: NaN * 0 is NaN).
A member that is not updated keeps its last finite weights; rows never mix, so nothing
of one member reaches another. So a member's row of every state tensor (`STATE`) is all
the optimizer knows of it: `rows` and `load_rows` carry a member into another population
(one regrouped when members leave and join) exactly where it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Floats = Sequence[float] | Tensor


class FusedOptimizer:
    """Shared book-keeping: per-member hyperparameters, masking, the update's shape."""

    STATE: tuple[str, ...] = ()  # the attributes holding per-member state, [K, ...] each

    def __init__(self, params: Tensor, lr: Floats, weight_decay: Floats) -> None:
        self.params = params  # [K, ...], updated in place
        self.k = params.shape[0]
        self.lr = self._member_tensor(lr)  # float64 [K]
        self.weight_decay = self._member_tensor(weight_decay)
        self.decays = bool((self.weight_decay != 0).any())  # torch.optim skips wd == 0

    @torch.no_grad()
    def step(self, grad: Tensor, active: Tensor) -> Tensor:
        """Update the members in `active` ([K] bool) from `grad` ([K, ...]); return the
        mask of members actually updated (active and with finite new weights)."""
        grad = torch.where(self._rows(active), grad, 0)  # state of masked rows stays finite
        new = self._update(grad, active)
        applied = active & torch.isfinite(new).flatten(1).all(1)
        torch.where(self._rows(applied), new, self.params, out=self.params)
        return applied

    def _update(self, grad: Tensor, active: Tensor) -> Tensor:
        """Advance the optimizer's state and return the members' new parameters."""
        raise NotImplementedError

    def rows(self, members: Sequence[int]) -> dict[str, Tensor]:
        """These members' state (copies), in this order."""
        index = torch.as_tensor(list(members), dtype=torch.long, device=self.params.device)
        return {name: getattr(self, name).index_select(0, index) for name in self.STATE}

    def load_rows(self, state: dict[str, Tensor]) -> None:
        """Put `rows`' state into the first members of this population (the others keep
        the fresh state of a member that has not stepped yet)."""
        for name in self.STATE:
            rows = state[name]
            getattr(self, name)[: len(rows)] = rows

    def _member_tensor(self, values: Floats) -> Tensor:
        t = torch.as_tensor(values, dtype=torch.float64).to(self.params.device)
        if t.shape != (self.k,):
            raise ValueError(f"expected one value per member ({self.k}), got shape "
                             f"{tuple(t.shape)}")
        return t

    def _rows(self, t: Tensor) -> Tensor:
        """A [K] tensor shaped to broadcast over the parameters, in their dtype unless
        it is a mask."""
        shape = (self.k,) + (1,) * (self.params.dim() - 1)
        return t.view(shape) if t.dtype == torch.bool else t.to(self.params.dtype).view(shape)


class SGD(FusedOptimizer):
    """torch.optim.SGD with momentum and weight decay (dampening 0, no Nesterov). A zero
    buffer times the momentum plus the gradient is the gradient itself, so the first step
    equals torch's `buf = grad.clone()`, and momentum 0 equals torch's buffer-free step."""

    STATE = ("buf",)

    def __init__(self, params: Tensor, lr: Floats, momentum: Floats,
                 weight_decay: Floats) -> None:
        super().__init__(params, lr, weight_decay)
        self.momentum = self._member_tensor(momentum)
        self.buf = torch.zeros_like(params)
        self._lr, self._m, self._wd = (self._rows(t) for t in (
            self.lr, self.momentum, self.weight_decay))

    def _update(self, grad: Tensor, active: Tensor) -> Tensor:
        if self.decays:
            grad = torch.addcmul(grad, self.params, self._wd)
        self.buf.mul_(self._m).add_(grad)
        return torch.addcmul(self.params, self.buf, self._lr, value=-1)


class Adam(FusedOptimizer):
    """torch.optim.Adam (betas 0.9, 0.999, eps 1e-8, no amsgrad); `decoupled` makes it
    AdamW. Each member counts its own steps, for its bias corrections."""

    decoupled = False
    STATE = ("exp_avg", "exp_avg_sq", "steps")

    def __init__(self, params: Tensor, lr: Floats, weight_decay: Floats,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, lr, weight_decay)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(params)
        self.exp_avg_sq = torch.zeros_like(params)
        self.steps = torch.zeros(self.k, dtype=torch.float64, device=params.device)
        self._wd = self._rows(self.weight_decay)
        self._shrink = self._rows(1 - self.lr * self.weight_decay)  # AdamW's decay factor

    def _update(self, grad: Tensor, active: Tensor) -> Tensor:
        self.steps += active
        base = self.params
        if self.decays and self.decoupled:
            base = self.params * self._shrink
        elif self.decays:
            grad = torch.addcmul(grad, self.params, self._wd)
        self.exp_avg.lerp_(grad, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        step_size = self.lr / (1 - torch.pow(self.beta1, self.steps))
        bias_correction2_sqrt = (1 - torch.pow(self.beta2, self.steps)).sqrt()
        denom = (self.exp_avg_sq.sqrt() / self._rows(bias_correction2_sqrt)).add_(self.eps)
        return torch.addcdiv(base, self.exp_avg * self._rows(-step_size), denom)


class AdamW(Adam):
    """torch.optim.AdamW: weight decay shrinks the weights, not the gradient."""

    decoupled = True


class RMSprop(FusedOptimizer):
    """torch.optim.RMSprop with its defaults (alpha 0.99, eps 1e-8, no momentum, not
    centered), as harness's optimizer table builds it."""

    STATE = ("square_avg",)

    def __init__(self, params: Tensor, lr: Floats, weight_decay: Floats,
                 alpha: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__(params, lr, weight_decay)
        self.alpha, self.eps = alpha, eps
        self.square_avg = torch.zeros_like(params)
        self._neg_lr, self._wd = self._rows(-self.lr), self._rows(self.weight_decay)

    def _update(self, grad: Tensor, active: Tensor) -> Tensor:
        if self.decays:
            grad = torch.addcmul(grad, self.params, self._wd)
        self.square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        avg = self.square_avg.sqrt().add_(self.eps)
        return torch.addcdiv(self.params, grad * self._neg_lr, avg)


FUSED_OPTIMIZERS: dict[str, Callable[[Tensor, Floats, Floats, Floats], FusedOptimizer]] = {
    "sgd": lambda p, lr, m, wd: SGD(p, lr, m, wd),
    "adam": lambda p, lr, m, wd: Adam(p, lr, wd),
    "adamw": lambda p, lr, m, wd: AdamW(p, lr, wd),
    "rmsprop": lambda p, lr, m, wd: RMSprop(p, lr, wd),
}


def build_fused_optimizer(name: str, params: Tensor, lr: Floats, momentum: Floats,
                          weight_decay: Floats) -> FusedOptimizer:
    """harness.hyperparams.OPTIMIZERS, vectorized: only sgd takes `momentum`."""
    if name not in FUSED_OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} has no fused form; choose one of "
                         f"{', '.join(FUSED_OPTIMIZERS)}")
    return FUSED_OPTIMIZERS[name](params, lr, momentum, weight_decay)
