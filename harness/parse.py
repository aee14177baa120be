"""YAML -> a frozen, validated Config. Only this module (with yamlfile.py) reads YAML.

Every problem is one line of a `ConfigError`: the file, the field path, the bad value
and how to fix it; all of a config's problems are reported at once (checks.py). Nothing
runs and nothing is written before a config has passed `load_config`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from harness.checks import check, parse_population
from harness.config import (
    AUTO,
    METRICS,
    Config,
    ConfirmConfig,
    RaceConfig,
    TensorBoardConfig,
    VisdomConfig,
    default_margin,
)
from harness.schema import ConfigError, Problems, build, show
from harness.space import parse_space
from harness.yamlfile import read_yaml


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config; raise ConfigError with a line per problem."""
    path = Path(path)
    problems = Problems()
    try:
        return parse_config(read_yaml(path, problems), problems)
    except ConfigError as err:
        raise err.prefixed(f"{path}: ") from None


def parse_config(raw: Any, problems: Problems | None = None) -> Config:
    """Validate an already-parsed YAML document; raise ConfigError with every problem
    (those already in `problems` first)."""
    problems = Problems() if problems is None else problems
    if not isinstance(raw, dict):
        problems.add("", f"the config must be a mapping of sections, got {show(raw)}; "
                     "start from experiments/quickstart.yaml")
        problems.raise_any()
    raw = dict(raw)
    if "name" not in raw:
        problems.add("name", "name: missing; add a name such as 'name: lenet-grid'")
        raw["name"] = ""
    for key in ("search", "logging"):
        if isinstance(raw.get(key), dict):
            raw[key] = dict(raw[key])
    search_raw = raw.get("search") or {}
    space_raw = search_raw.pop("space", None) if isinstance(search_raw, dict) else None
    race_raw = search_raw.pop("race", None) if isinstance(search_raw, dict) else None
    confirm_raw = search_raw.pop("confirm", None) if isinstance(search_raw, dict) else None
    logging_raw = raw.get("logging") or {}
    visdom_raw = logging_raw.pop("visdom", AUTO) if isinstance(logging_raw, dict) else AUTO
    tensorboard_raw = logging_raw.pop("tensorboard", True) if isinstance(
        logging_raw, dict) else True
    config = build(Config, raw, "", problems)
    method = None if problems.failed("search.method") else config.search.method
    search = dataclasses.replace(
        config.search, space=parse_space(space_raw, method, problems),
        race=_switch(RaceConfig, race_raw, "search.race", problems),
        confirm=_switch(ConfirmConfig, confirm_raw, "search.confirm", problems))
    logging = dataclasses.replace(
        config.logging, visdom=_visdom(visdom_raw, problems),
        tensorboard=_switch(TensorBoardConfig, tensorboard_raw, "logging.tensorboard",
                            problems))
    config = dataclasses.replace(config, search=search, logging=logging)
    check(config, problems)
    problems.raise_any()
    return _resolve(config)


def _visdom(raw: Any, problems: Problems) -> VisdomConfig | None:
    """logging.visdom: auto (the default), true, false, or the server's settings."""
    if raw == AUTO:
        return VisdomConfig(auto=True)
    config = _switch(VisdomConfig, raw, "logging.visdom", problems)
    if isinstance(raw, dict) and "auto" in raw:
        problems.add("logging.visdom.auto", "logging.visdom.auto: unknown key; write "
                     "logging.visdom: auto (a local server when one answers)")
    return config


def _switch(cls: type, raw: Any, path: str, problems: Problems) -> Any:
    """A section that is on with defaults (true), off (false), or on with settings."""
    if raw is None or raw is False:
        return None
    if raw is True:
        return cls()
    return build(cls, raw, path, problems)


def _resolve(config: Config) -> Config:
    """Fill the defaults that depend on other fields, so config.yaml shows what ran."""
    seeds = config.search.seeds or (config.train.seed,)
    objective = config.objective
    direction = objective.direction or METRICS[objective.metric]
    margin = objective.margin
    if margin is None:
        margin = default_margin(objective.metric)
    population = parse_population(config.train.population, "train.population")
    return dataclasses.replace(
        config, train=dataclasses.replace(config.train, population=population),
        search=dataclasses.replace(config.search, seeds=seeds),
        objective=dataclasses.replace(objective, direction=direction, margin=margin),
    )


