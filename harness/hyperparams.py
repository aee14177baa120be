"""The hyperparameters a sweep can search, in one table, and the optimizers they reach.

Everything else reads this table: config validation and defaults, the search space and
Optuna's distributions, run names, trials.csv's columns, TensorBoard's HParams, the
tables and the report. Their names appear as string literals here only; other modules
use the constants below.

To add a hyperparameter (say sgd's `nesterov`): one row in HYPERPARAMS, its name in the
`uses` of the optimizers that take it, and its field in config.TrainConfig.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.schema import is_number

if TYPE_CHECKING:
    import torch

OPTIMIZER, LR, BATCH_SIZE, MOMENTUM, WEIGHT_DECAY = (
    "optimizer", "lr", "batch_size", "momentum", "weight_decay")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class Optimizer:
    name: str  # as written in a config
    torch_name: str  # its class in torch.optim (loaded when one is built, not at import)
    uses: tuple[str, ...]  # the hyperparameters passed to it; the rest do not reach it
    speed: str  # "fused" or "foreach": the keyword of its one-kernel update on CUDA


# Only sgd takes momentum; the others keep their own defaults (rmsprop with momentum 0.9
# at common learning rates does not learn).
OPTIMIZERS: dict[str, Optimizer] = {o.name: o for o in (
    Optimizer("sgd", "SGD", (LR, MOMENTUM, WEIGHT_DECAY), "fused"),
    Optimizer("adam", "Adam", (LR, WEIGHT_DECAY), "fused"),
    Optimizer("adamw", "AdamW", (LR, WEIGHT_DECAY), "fused"),
    Optimizer("rmsprop", "RMSprop", (LR, WEIGHT_DECAY), "foreach"),
)}


@dataclass(frozen=True)
class HyperParam:
    name: str  # config key under train: and search.space:, trials.csv column
    kind: type  # float, int or str: Optuna's distribution and the HParams domain type
    default: Any  # train:'s value when a config gives none
    check: Callable[[Any], bool]  # is a value allowed?
    valid: str  # the allowed values, as an error message says them
    short: str  # its part of a run name: short + value ("" for the value alone)
    log_scale: bool = False  # binned and plotted on a log scale
    core: bool = False  # shown in tables whether searched or not
    # Every value it may take, for TensorBoard's HParams domains (which must admit every
    # sweep's values): an interval for a float, the choices for a string.
    interval: tuple[float, float] = (0.0, math.inf)
    choices: tuple[str, ...] = ()


HYPERPARAMS: tuple[HyperParam, ...] = (
    HyperParam(OPTIMIZER, str, "sgd", lambda v: v in OPTIMIZERS,
               "one of " + ", ".join(OPTIMIZERS), "", core=True, choices=tuple(OPTIMIZERS)),
    HyperParam(LR, float, 0.01, lambda v: is_number(v) and v > 0, "a number > 0", "lr",
               log_scale=True, core=True),
    HyperParam(BATCH_SIZE, int, 64, _count, "an integer >= 1", "bs", log_scale=True, core=True),
    HyperParam(MOMENTUM, float, 0.9, lambda v: is_number(v) and 0 <= v < 1,
               "a number in [0, 1)", "m", interval=(0.0, 1.0)),
    HyperParam(WEIGHT_DECAY, float, 0.0, lambda v: is_number(v) and v >= 0, "a number >= 0",
               "wd", log_scale=True),
)
BY_NAME: dict[str, HyperParam] = {h.name: h for h in HYPERPARAMS}
NAMES: tuple[str, ...] = tuple(BY_NAME)  # trials.csv's order
CORE: tuple[str, ...] = tuple(h.name for h in HYPERPARAMS if h.core)
LOG_SCALE: frozenset[str] = frozenset(h.name for h in HYPERPARAMS if h.log_scale)


def build_optimizer(params: Iterable[torch.Tensor], values: dict[str, Any],
                    fused: bool = False) -> torch.optim.Optimizer:
    """values[OPTIMIZER]'s optimizer with the hyperparameters it uses. `fused` (CUDA)
    updates all parameters in one kernel instead of one per tensor."""
    import torch

    optimizer = OPTIMIZERS[values[OPTIMIZER]]
    cls = getattr(torch.optim, optimizer.torch_name)
    speed = {optimizer.speed: True if fused else None}  # None: torch's own choice
    return cls(params, **{name: values[name] for name in optimizer.uses}, **speed)


def run_name(index: int, values: dict[str, Any], seed: int, searched: Iterable[str]) -> str:
    """A readable, sortable name such as 0007-adam-lr0.01-bs64-s0: the optimizer, lr and
    batch size always, the other hyperparameters when searched."""
    shown = set(searched) | set(CORE)
    parts = [f"{index:04d}"]
    for h in HYPERPARAMS:
        if h.name in shown:
            value = values[h.name]
            parts.append(h.short + (f"{value:.3g}" if h.kind is float else str(value)))
    return "-".join([*parts, f"s{seed}"])
