"""YAML -> frozen, validated config objects. The only module that reads YAML.

Every problem is a `ConfigError` whose message is one line: the file, the field path,
the bad value and how to fix it. Nothing runs and nothing is written before a config
has passed `load_config`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.schema import (
    ConfigError,
    at_least,
    build,
    choice,
    is_number,
    number,
    show,
    unknown,
)

DATASETS = ("mnist", "mnist-5k", "synthetic")
MODELS = ("lenet",)
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
METHODS = ("grid", "optuna")
SAMPLERS = ("tpe", "random")
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("maximize", "minimize")
# Each objective metric's natural direction; val_* need data.val_fraction > 0.
METRICS = {"val_acc": "maximize", "val_loss": "minimize", "test_acc": "maximize",
           "test_loss": "minimize", "train_loss": "minimize"}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"  # mnist | mnist-5k | synthetic
    root: str = "data"  # mnist reads root/MNIST/raw/*-ubyte (downloaded there when missing)
    train_size: int | None = None  # keep the first N training samples (after validation)
    test_size: int | None = None  # keep the first N test samples; None keeps all
    val_fraction: float = 0.1  # of the training part, held out to choose epochs; 0: none
    split_seed: int = 0  # which samples are held out; the same for every trial and seed


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5  # passes over the training split in every trial
    seed: int = 0  # trial seed when search.seeds is absent; also seeds the Optuna sampler
    device: str = "auto"  # auto (cuda when present) | cpu | cuda | cuda:N
    lr: float = 0.01  # learning rate when search.space has no lr
    batch_size: int = 64  # training batch size when search.space has no batch_size
    optimizer: str = "sgd"  # sgd | adam | adamw | rmsprop, when search.space has none
    momentum: float = 0.9  # sgd's momentum when search.space has none
    weight_decay: float = 0.0  # L2 penalty when search.space has none
    eval_batch_size: int = 1000  # evaluation only: bigger is faster, results are the same
    amp: bool = False  # bf16 autocast (fast on recent GPUs; changes the numbers slightly)
    channels_last: bool = False  # NHWC memory layout for the convolutions (GPU)


@dataclass(frozen=True)
class Range:
    low: float  # smallest value Optuna may sample
    high: float  # largest value Optuna may sample
    log: bool = False  # sample uniformly in log space (learning rates)


@dataclass(frozen=True)
class SearchConfig:
    method: str = "grid"  # grid: every combination; optuna: n_trials sampled points
    space: dict[str, tuple[Any, ...] | Range] = field(default_factory=dict)  # param -> values
    seeds: tuple[int, ...] = ()  # every configuration runs once per seed; () means train.seed
    n_trials: int = 20  # optuna only: configurations to try
    sampler: str = "tpe"  # optuna only: tpe | random
    pruner: str = "none"  # optuna only: none | median | hyperband, on the per-epoch objective


@dataclass(frozen=True)
class ObjectiveConfig:
    metric: str = "val_acc"  # chooses each trial's best epoch; a key of METRICS (test_*: biased)
    direction: str = ""  # maximize | minimize; empty picks the metric's natural direction


@dataclass(frozen=True)
class VisdomConfig:
    server: str = "http://localhost"  # Visdom server URL, without the port
    port: int = 8097  # Visdom server port
    env: str = ""  # environment name; empty uses the sweep's name


@dataclass(frozen=True)
class TensorBoardConfig:
    log_every: int = 50  # also log the training loss every N steps (0: per epoch only)
    histograms: bool = True  # weight and gradient histograms every epoch
    images: bool = True  # at a trial's end: test digits with predictions, wrong ones first
    graph: bool = True  # the model graph and summary, once per sweep


@dataclass(frozen=True)
class LoggingConfig:
    # One TensorBoard run per trial under <results>/tb; true, false, or the settings.
    tensorboard: TensorBoardConfig | None = TensorBoardConfig()
    visdom: VisdomConfig | None = None  # live view; None (visdom: false) turns it off


@dataclass(frozen=True)
class Config:
    name: str  # names the results directory (results/<name>) and the Optuna study
    data: DataConfig = DataConfig()
    model: str = "lenet"  # lenet: the LeNet-5 of the original article, 44,426 parameters
    train: TrainConfig = TrainConfig()
    search: SearchConfig = SearchConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    logging: LoggingConfig = LoggingConfig()


# What each searchable hyperparameter accepts: (check, description of valid values).
SEARCHABLE: dict[str, tuple[Any, str]] = {
    "lr": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "batch_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                   "an integer >= 1"),
    "optimizer": (lambda v: v in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS)),
    "momentum": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
}


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config; raise ConfigError with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; pass the path of a YAML file "
                          "such as experiments/quickstart.yaml") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    try:
        return parse_config(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def parse_config(raw: Any) -> Config:
    """Validate an already-parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping of sections, got {show(raw)}; "
                          "start from experiments/quickstart.yaml")
    raw = dict(raw)
    if "name" not in raw:
        raise ConfigError("name: missing; add a name such as 'name: lenet-grid'")
    for key in ("search", "logging"):
        if isinstance(raw.get(key), dict):
            raw[key] = dict(raw[key])
    search_raw = raw.get("search") or {}
    space_raw = search_raw.pop("space", None) if isinstance(search_raw, dict) else None
    logging_raw = raw.get("logging") or {}
    visdom_raw = logging_raw.pop("visdom", None) if isinstance(logging_raw, dict) else None
    tensorboard_raw = logging_raw.pop("tensorboard", True) if isinstance(
        logging_raw, dict) else True
    config = build(Config, raw, "")
    search = dataclasses.replace(config.search, space=_space(space_raw, config.search.method))
    logging = dataclasses.replace(
        config.logging, visdom=_switch(VisdomConfig, visdom_raw, "logging.visdom"),
        tensorboard=_switch(TensorBoardConfig, tensorboard_raw, "logging.tensorboard"))
    config = dataclasses.replace(config, search=search, logging=logging)
    _check(config)
    return _resolve(config)


def to_dict(config: Config) -> dict[str, Any]:
    """The config as plain YAML-ready data (the shape `parse_config` reads back)."""
    out = dataclasses.asdict(config)
    out["search"]["space"] = {
        key: dataclasses.asdict(v) if isinstance(v, Range) else list(v)
        for key, v in config.search.space.items()
    }
    out["search"]["seeds"] = list(config.search.seeds)
    for key in ("visdom", "tensorboard"):
        if getattr(config.logging, key) is None:
            out["logging"][key] = False
    return out


def dump_config(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def identity(config: Config) -> dict[str, Any]:
    """The part of a config that decides the results; resuming requires it unchanged."""
    out = to_dict(config)
    out.pop("logging")
    out["train"].pop("device")
    return out


# ----------------------------------------------------------------- checks


def _space(raw: Any, method: str) -> dict[str, tuple[Any, ...] | Range]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"search.space: expected a mapping of parameter -> values, "
                          f"got {show(raw)}")
    space: dict[str, tuple[Any, ...] | Range] = {}
    for key, values in raw.items():
        path = f"search.space.{key}"
        if key not in SEARCHABLE:
            raise unknown(key, list(SEARCHABLE), "search.space")
        check, valid = SEARCHABLE[key]
        if isinstance(values, dict):
            space[key] = _range(key, values, method, path)
            continue
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise ConfigError(f"{path}: the list of values is empty; give at least one value")
        converted = []
        for i, value in enumerate(values):
            as_number = number(value) if key not in ("batch_size", "optimizer") else value
            value = value if as_number is None else as_number
            if not check(value):
                raise ConfigError(f"{path}[{i}]: {show(value)} is not valid; use {valid}")
            converted.append(value)
        if len(set(converted)) != len(converted):
            raise ConfigError(f"{path}: {converted} repeats a value; list each value once")
        space[key] = tuple(converted)
    return space


def _range(key: str, raw: dict[str, Any], method: str, path: str) -> Range:
    if method != "optuna":
        raise ConfigError(f"{path}: a range ({{low, high}}) needs search.method: optuna; "
                          "a grid needs a list of values")
    if key == "optimizer":
        raise ConfigError(f"{path}: optimizer takes a list of names, not a range")
    rng = build(Range, raw, path)
    check, valid = SEARCHABLE[key]
    for end in ("low", "high"):
        value = getattr(rng, end)
        if key == "batch_size" and value != int(value):
            raise ConfigError(f"{path}.{end}: {value} is not valid; use {valid}")
        if not check(int(value) if key == "batch_size" else value):
            raise ConfigError(f"{path}.{end}: {show(value)} is not valid; use {valid}")
    if rng.low >= rng.high:
        raise ConfigError(f"{path}: low ({rng.low}) must be smaller than high ({rng.high})")
    if rng.log and rng.low <= 0:
        raise ConfigError(f"{path}.low: a log range needs low > 0, got {rng.low}")
    return rng


def _switch(cls: type, raw: Any, path: str) -> Any:
    """A section that is on with defaults (true), off (false), or on with settings."""
    if raw is None or raw is False:
        return None
    if raw is True:
        return cls()
    return build(cls, raw, path)


def _check(config: Config) -> None:
    """Ranges and choices that types alone do not catch."""
    choice(config.data.dataset, DATASETS, "data.dataset")
    choice(config.model, MODELS, "model")
    choice(config.search.method, METHODS, "search.method")
    choice(config.search.sampler, SAMPLERS, "search.sampler")
    choice(config.search.pruner, PRUNERS, "search.pruner")
    choice(config.objective.metric, tuple(METRICS), "objective.metric")
    if config.objective.direction:
        choice(config.objective.direction, DIRECTIONS, "objective.direction")
    if not NAME_PATTERN.fullmatch(config.name):
        raise ConfigError(f"name: {config.name!r} cannot name a results directory; use "
                          "letters, digits, '.', '_' and '-' (no '/' or leading '.')")
    at_least(config.train.epochs, 1, "train.epochs")
    at_least(config.search.n_trials, 1, "search.n_trials")
    at_least(config.train.eval_batch_size, 1, "train.eval_batch_size")
    if config.logging.tensorboard is not None:
        at_least(config.logging.tensorboard.log_every, 0, "logging.tensorboard.log_every")
    for key in ("train_size", "test_size"):
        value = getattr(config.data, key)
        if value is not None:
            at_least(value, 1, f"data.{key}")
    if not 0 <= config.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction: {show(config.data.val_fraction)} is not valid; "
                          "use a number in [0, 1), such as 0.1 (0 turns validation off)")
    if config.objective.metric.startswith("val_") and config.data.val_fraction == 0:
        raise ConfigError(f"objective.metric: {config.objective.metric} needs a validation "
                          "split but data.val_fraction is 0; set data.val_fraction (e.g. "
                          "0.1) or choose test_acc, test_loss or train_loss")
    for key, (check, valid) in SEARCHABLE.items():
        if not check(getattr(config.train, key)):
            raise ConfigError(f"train.{key}: {show(getattr(config.train, key))} is not valid;"
                              f" use {valid}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", config.train.device):
        raise ConfigError(f"train.device: {config.train.device!r} is not a device; use auto, "
                          "cpu, cuda or cuda:N")
    if len(set(config.search.seeds)) != len(config.search.seeds):
        raise ConfigError(f"search.seeds: {list(config.search.seeds)} repeats a seed")
    if config.search.method == "grid":
        for key in ("sampler", "pruner", "n_trials"):
            default = getattr(SearchConfig(), key)
            if getattr(config.search, key) != default:
                raise ConfigError(f"search.{key}: only used by method optuna; remove it or "
                                  "set search.method: optuna")


def _resolve(config: Config) -> Config:
    """Fill the defaults that depend on other fields, so config.yaml shows what ran."""
    seeds = config.search.seeds or (config.train.seed,)
    direction = config.objective.direction or METRICS[config.objective.metric]
    return dataclasses.replace(
        config,
        search=dataclasses.replace(config.search, seeds=seeds),
        objective=dataclasses.replace(config.objective, direction=direction),
    )


