"""search.space: which hyperparameters a sweep searches, and over which values.

Each is a list of values (grid or optuna) or, for the optuna method, a range. Every
problem is collected in `Problems` with its field path, like the rest of the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.hyperparams import BY_NAME, OPTIMIZER, OPTIMIZERS
from harness.schema import ConfigError, Problems, build, invalid, number, show, unknown


@dataclass(frozen=True)
class Range:
    low: float  # smallest value Optuna may sample
    high: float  # largest value Optuna may sample
    log: bool = False  # sample uniformly in log space (learning rates)


def parse_space(raw: Any, method: str | None, problems: Problems
                ) -> dict[str, tuple[Any, ...] | Range]:
    """search.space: a list of values, or a range, per hyperparameter. `method` is the
    search method, None when it has a problem of its own."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add("search.space", "search.space: expected a mapping of parameter -> "
                     f"values, got {show(raw)}")
        return {}
    space: dict[str, tuple[Any, ...] | Range] = {}
    for key, values in raw.items():
        path = f"search.space.{key}"
        if key not in BY_NAME:
            with problems.at(path):
                raise unknown(key, list(BY_NAME), "search.space")
            continue
        if isinstance(values, dict):
            rng = _range(key, values, method, problems)
            if rng is not None:
                space[key] = rng
            continue
        converted = _values(key, values if isinstance(values, list) else [values], problems)
        if converted is not None:
            space[key] = converted
    return space


def _values(key: str, values: list[Any], problems: Problems) -> tuple[Any, ...] | None:
    """A list of values to search, or None when it has a problem."""
    path = f"search.space.{key}"
    if not values:
        problems.add(path, f"{path}: the list of values is empty; give at least one value")
        return None
    h = BY_NAME[key]
    converted = []
    for i, value in enumerate(values):
        as_number = number(value) if h.kind is float else value
        value = value if as_number is None else as_number
        with problems.at(f"{path}[{i}]"):
            if not h.check(value):
                raise invalid(value, h.valid, f"{path}[{i}]")
            converted.append(value)
    if len(converted) < len(values):
        return None
    if len(set(converted)) != len(converted):
        problems.add(path, f"{path}: {converted} repeats a value; list each value once")
        return None
    return tuple(converted)


def _range(key: str, raw: dict[str, Any], method: str | None, problems: Problems
           ) -> Range | None:
    path = f"search.space.{key}"
    if method != "optuna":
        if method is not None:
            problems.add(path, f"{path}: a range ({{low, high}}) needs search.method: "
                         "optuna; a grid needs a list of values")
        return None
    h = BY_NAME[key]
    if h.kind is str:
        problems.add(path, f"{path}: {key} takes a list of names, not a range")
        return None
    before = len(problems.lines)
    rng = build(Range, raw, path, problems)
    for end in ("low", "high"):
        value = getattr(rng, end)
        if problems.failed(f"{path}.{end}"):
            continue
        with problems.at(f"{path}.{end}"):
            if h.kind is int and value != int(value):
                raise invalid(value, h.valid, f"{path}.{end}")
            if not h.check(int(value) if h.kind is int else value):
                raise invalid(value, h.valid, f"{path}.{end}")
    if len(problems.lines) > before:
        return None
    with problems.at(path):
        if rng.low >= rng.high:
            raise ConfigError(f"{path}: low ({rng.low}) must be smaller than high "
                              f"({rng.high})")
        if rng.log and rng.low <= 0:
            raise ConfigError(f"{path}.low: a log range needs low > 0, got {rng.low}")
        return rng
    return None


def check_unused(space: dict[str, tuple[Any, ...] | Range], optimizer: str,
                 problems: Problems) -> None:
    """Several values of a hyperparameter that an optimizer of the sweep ignores (momentum
    with adam) would run that optimizer's same trial once per value: refused, naming the
    optimizers. `optimizer` is train.optimizer, used when search.space has none."""
    if problems.failed(f"search.space.{OPTIMIZER}", f"train.{OPTIMIZER}"):
        return
    searched = space.get(OPTIMIZER)
    where = (f"train.{OPTIMIZER} is" if searched is None
             else f"search.space.{OPTIMIZER} has")
    reaching = {name for o in OPTIMIZERS.values() for name in o.uses}
    for name, values in space.items():
        if name not in reaching or (not isinstance(values, Range) and len(values) < 2):
            continue
        users = [o.name for o in OPTIMIZERS.values() if name in o.uses]
        others = [o for o in (searched or (optimizer,)) if name not in OPTIMIZERS[o].uses]
        if others:
            problems.add(f"search.space.{name}", (
                f"search.space.{name}: only {', '.join(users)} uses {name}, but {where} "
                f"{', '.join(others)}, which would run the same trial once per {name} "
                f"value; search {name} in a sweep of its own with {OPTIMIZER}: "
                f"[{', '.join(users)}], or give {name} one value"))
