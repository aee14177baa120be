"""search.space: which hyperparameters a sweep searches, and over which values.

Each is a list of values (grid or optuna) or, for the optuna method, a range. Every
problem is collected in `Problems` with its field path, like the rest of the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.schema import ConfigError, Problems, build, invalid, is_number, number, show, unknown

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
USE_MOMENTUM = ("sgd",)  # models.build_optimizer gives the others their own defaults


@dataclass(frozen=True)
class Range:
    low: float  # smallest value Optuna may sample
    high: float  # largest value Optuna may sample
    log: bool = False  # sample uniformly in log space (learning rates)


# What each searchable hyperparameter accepts: (check, description of valid values).
SEARCHABLE: dict[str, tuple[Any, str]] = {
    "lr": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "batch_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                   "an integer >= 1"),
    "optimizer": (lambda v: v in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS)),
    "momentum": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
}


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
        if key not in SEARCHABLE:
            with problems.at(path):
                raise unknown(key, list(SEARCHABLE), "search.space")
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
    check, valid = SEARCHABLE[key]
    converted = []
    for i, value in enumerate(values):
        as_number = number(value) if key not in ("batch_size", "optimizer") else value
        value = value if as_number is None else as_number
        with problems.at(f"{path}[{i}]"):
            if not check(value):
                raise invalid(value, valid, f"{path}[{i}]")
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
    if key == "optimizer":
        problems.add(path, f"{path}: optimizer takes a list of names, not a range")
        return None
    before = len(problems.lines)
    rng = build(Range, raw, path, problems)
    check, valid = SEARCHABLE[key]
    for end in ("low", "high"):
        value = getattr(rng, end)
        if problems.failed(f"{path}.{end}"):
            continue
        with problems.at(f"{path}.{end}"):
            if key == "batch_size" and value != int(value):
                raise invalid(value, valid, f"{path}.{end}")
            if not check(int(value) if key == "batch_size" else value):
                raise invalid(value, valid, f"{path}.{end}")
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


def check_momentum(space: dict[str, tuple[Any, ...] | Range], optimizer: str,
                   problems: Problems) -> None:
    """Several momentum values with an optimizer that ignores momentum would run that
    optimizer's same trial once per value: refused, naming the optimizers. `optimizer`
    is train.optimizer, used when search.space has none."""
    momentum = space.get("momentum")
    if momentum is None or problems.failed("search.space.optimizer", "train.optimizer"):
        return
    if not isinstance(momentum, Range) and len(momentum) < 2:
        return
    searched = space.get("optimizer")
    where = "train.optimizer is" if searched is None else "search.space.optimizer has"
    others = [o for o in (searched or (optimizer,)) if o not in USE_MOMENTUM]
    if others:
        problems.add("search.space.momentum", (
            f"search.space.momentum: only {', '.join(USE_MOMENTUM)} uses momentum, but "
            f"{where} {', '.join(others)}, which would run the same trial once per momentum "
            "value; search momentum in a sweep of its own with optimizer: [sgd], or give "
            "momentum one value"))
