"""A config file's bytes -> YAML data, for config.py (which validates what it holds).

Text that is not UTF-8, a binary file and broken YAML raise a one-line ConfigError; a
key given twice in one mapping, which YAML would silently resolve by keeping the last,
is recorded as a problem of its own, so it is reported with the config's others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.schema import ConfigError, Problems


def read_yaml(path: Path, problems: Problems) -> Any:
    """The YAML document in `path`. What cannot be parsed at all raises; a key given
    twice in one mapping (where YAML silently keeps the last) is recorded in `problems`."""
    text = _read_text(path)
    try:
        loader = yaml.SafeLoader(text)  # checks every character first
    except yaml.reader.ReaderError as err:
        line = text[:err.position].count("\n") + 1
        raise ConfigError(f"YAML cannot hold the character {chr(err.character)!r} (line "
                          f"{line}); remove it") from None
    try:
        node = loader.get_single_node()
        for where, line in _duplicate_keys(node, ""):
            problems.add(where, line)
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"YAML syntax error{where}: {problem}") from None
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such config file; pass the path of a YAML file such as "
                          "experiments/quickstart.yaml") from None
    except OSError as err:
        raise ConfigError(f"cannot read the config ({err.strerror})") from None
    if b"\0" in data:
        raise ConfigError("a binary file, not a YAML config; pass a text file such as "
                          "experiments/quickstart.yaml")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}); "
                          "save the file as UTF-8") from None


def _duplicate_keys(node: yaml.Node | None, path: str,
                    seen: set[int] | None = None) -> list[tuple[str, str]]:
    """(path, line) for every key that a mapping holds twice, in document order."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:  # an alias: its node was checked where defined
        return []
    seen.add(id(node))
    found = []
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], yaml.Mark] = {}
        for key, value in node.value:
            name = f"{path}.{key.value}" if path else str(key.value)
            if isinstance(key, yaml.ScalarNode):  # a list or mapping as a key: left to YAML
                earlier = first.setdefault((key.tag, key.value), key.start_mark)
                if earlier is not key.start_mark:
                    found.append((name, f"{name}: given twice ({_where(earlier, key.start_mark)})"
                                  "; YAML would keep only the last, so keep one"))
            found += _duplicate_keys(value, name, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += _duplicate_keys(item, f"{path}[{i}]", seen)
    return found


def _where(a: yaml.Mark, b: yaml.Mark) -> str:
    if a.line == b.line:
        return f"line {a.line + 1}, columns {a.column + 1} and {b.column + 1}"
    return f"lines {a.line + 1} and {b.line + 1}"
