"""Typed, frozen dataclasses from parsed YAML: unknown keys, wrong types and bad
choices become one-line problems that name the field path, the value and the fix.

Problems are collected, not raised at the first (as pydantic's ValidationError does): a
config with several mistakes reports all of them at once. A field with a problem keeps
its default, so that the checks after it can go on; `Problems.failed` tells the checks
that depend on such a field to skip it rather than report a consequence of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
from collections.abc import Callable, Iterator
from dataclasses import MISSING, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from harness.errors import ConfigError


class Problems:
    """Every problem found in one config: a line each, and the field path it is about."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.paths: list[str] = []

    def add(self, path: str, line: str) -> None:
        self.paths.append(path)
        self.lines.append(line)

    @contextlib.contextmanager
    def at(self, path: str) -> Iterator[None]:
        """Record a ConfigError raised inside the block as a problem of `path`."""
        try:
            yield
        except ConfigError as err:
            for line in err.lines:
                self.add(path, line)

    def check(self, path: str, test: Callable[..., Any], *args: Any) -> None:
        """Run `test(*args)` unless `path` already has a problem; record what it raises."""
        if not self.failed(path):
            with self.at(path):
                test(*args)

    def failed(self, *paths: str) -> bool:
        """Whether a problem was found at any of `paths`, inside it or around it."""
        return any(_related(p, q) for p in paths for q in self.paths)

    def raise_any(self) -> None:
        if self.lines:
            raise ConfigError(*self.lines)


def _related(a: str, b: str) -> bool:
    """One path is the other, or holds it (search holds search.space.lr[0])."""
    short, long = sorted((a, b), key=len)
    return long == short or not short or long.startswith((short + ".", short + "["))


def build(cls: type, raw: Any, path: str, problems: Problems) -> Any:
    """A dataclass from a mapping. Unknown keys, missing required keys and wrong types
    are recorded in `problems`; a field with a problem keeps its default."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.add(path, f"{path or 'config'}: expected a mapping of keys, got {show(raw)}")
        raw = {}
    names = [f.name for f in fields(cls)]
    for key in raw:
        if key not in names:
            with problems.at(_join(path, key)):
                raise unknown(key, names, path)
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        where = _join(path, f.name)
        required = f.default is MISSING and f.default_factory is MISSING
        if f.name not in raw:
            if required:
                problems.add(where, f"{where}: missing; add {f.name}: <value>")
                values[f.name] = None
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            values[f.name] = build(hint, raw[f.name], where, problems)
            continue
        with problems.at(where):
            values[f.name] = typed(raw[f.name], hint, where)
        if required:
            values.setdefault(f.name, None)
    return cls(**values)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def typed(value: Any, hint: Any, path: str) -> Any:
    """Check one scalar field against its type hint, converting what is unambiguous."""
    if _is_union(hint):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(get_args(hint)):
            return None
        hint = options[0]
    origin = get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            value = [value]
        item = get_args(hint)[0]
        return tuple(typed(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float:
        as_number = number(value)
        if as_number is not None and math.isfinite(as_number):
            return as_number
        if as_number is not None:
            raise ConfigError(f"{path}: {as_number} is not a finite number; use a number "
                              "such as 0.01")
    if hint is str and isinstance(value, str):
        return value
    if origin is dict or hint is Any:
        return value
    raise ConfigError(f"{path}: expected {_type_name(hint)}, got {show(value)}")


def choice(value: str, choices: tuple[str, ...], path: str) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{path}: {value!r} is not valid; {hint}use one of "
                          + ", ".join(choices))


def at_least(value: int, low: int, path: str) -> None:
    if value < low:
        raise ConfigError(f"{path}: {value} is too small; use an integer >= {low}")


def invalid(value: Any, valid: str, path: str) -> ConfigError:
    """`value` is not one of `valid` (a description such as 'a number > 0')."""
    if isinstance(value, float) and not math.isfinite(value):
        return ConfigError(f"{path}: {value} is not a finite number; use {valid}")
    return ConfigError(f"{path}: {show(value)} is not valid; use {valid}")


def unknown(key: Any, names: list[str], path: str) -> ConfigError:
    where = _join(path, key)
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"{where}: unknown key; {hint}valid keys: {', '.join(names)}")


def number(value: Any) -> float | None:
    """A float from an int, a float, or a string such as '1e-3' (YAML 1.1 reads 1e-3
    without a dot as text); None for anything else. It may be inf or nan: the caller
    says why that is refused."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            return math.inf if value > 0 else -math.inf
    return value if isinstance(value, float) else None


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
