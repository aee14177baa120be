"""Typed, frozen dataclasses from parsed YAML: unknown keys, wrong types and bad
choices become one-line errors that name the field path, the value and the fix."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
from dataclasses import fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from harness.errors import ConfigError


def build(cls: type, raw: Any, path: str) -> Any:
    """A dataclass from a mapping: unknown keys and wrong types are errors."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping of keys, got {show(raw)}")
    names = [f.name for f in fields(cls)]
    for key in raw:
        if key not in names:
            raise unknown(key, names, path)
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if f.name in raw:
            where = f"{path}.{f.name}" if path else f.name
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint):
                values[f.name] = build(hint, raw[f.name], where)
            else:
                values[f.name] = typed(raw[f.name], hint, where)
    return cls(**values)


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
        if as_number is not None:
            return as_number
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


def unknown(key: Any, names: list[str], path: str) -> ConfigError:
    where = f"{path}.{key}" if path else str(key)
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"{where}: unknown key; {hint}valid keys: {', '.join(names)}")


def number(value: Any) -> float | None:
    """A finite float from an int, a float, or a string such as '1e-3' (YAML 1.1 reads
    1e-3 without a dot as text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
