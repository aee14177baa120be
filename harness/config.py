"""YAML -> frozen, validated config objects. Only this module (with yamlfile.py) reads YAML.

Every problem is one line of a `ConfigError`: the file, the field path, the bad value
and how to fix it; all of a config's problems are reported at once. Nothing runs and
nothing is written before a config has passed `load_config`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.hyperparams import (
    BATCH_SIZE,
    BY_NAME,
    HYPERPARAMS,
    LR,
    MOMENTUM,
    OPTIMIZER,
    WEIGHT_DECAY,
)
from harness.models import MODELS
from harness.schema import (
    ConfigError,
    Problems,
    at_least,
    build,
    choice,
    invalid,
    show,
)
from harness.space import Range, check_unused, parse_space
from harness.types import DIVERGE_ABOVE
from harness.yamlfile import read_yaml

DATASETS = ("mnist", "mnist-5k", "synthetic")
METHODS = ("grid", "optuna")
SAMPLERS = ("tpe", "random")
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("maximize", "minimize")
# Each objective metric's natural direction; val_* need data.val_fraction > 0.
METRICS = {"val_acc": "maximize", "val_loss": "minimize", "test_acc": "maximize",
           "test_loss": "minimize", "train_loss": "minimize"}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
TRAIN_SAMPLES = {"mnist": 60_000, "mnist-5k": 4_000, "synthetic": 2_000}  # full training sets
POPULATION_AUTO, POPULATION_OFF = "auto", "off"  # train.population's words besides a number


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
    # The hyperparameters' values when search.space has none (harness.hyperparams).
    lr: float = BY_NAME[LR].default  # learning rate
    batch_size: int = BY_NAME[BATCH_SIZE].default  # training batch size
    optimizer: str = BY_NAME[OPTIMIZER].default  # sgd | adam | adamw | rmsprop
    momentum: float = BY_NAME[MOMENTUM].default  # sgd's momentum
    weight_decay: float = BY_NAME[WEIGHT_DECAY].default  # L2 penalty
    eval_batch_size: int = 1000  # evaluation only: bigger is faster, results are the same
    amp: bool = False  # bf16 autocast (fast on recent GPUs; changes the numbers slightly)
    channels_last: bool = False  # NHWC memory layout for the convolutions (GPU)
    diverge_above: float = DIVERGE_ABOVE  # a mean epoch train loss above it (or nan): diverged
    # auto | off | N: the most trials trained together as one fused model (a YAML bare
    # off reads as false); auto is off on the CPU (harness.groups.population_size)
    population: Any = POPULATION_AUTO


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

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


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
    logging_raw = raw.get("logging") or {}
    visdom_raw = logging_raw.pop("visdom", None) if isinstance(logging_raw, dict) else None
    tensorboard_raw = logging_raw.pop("tensorboard", True) if isinstance(
        logging_raw, dict) else True
    config = build(Config, raw, "", problems)
    method = None if problems.failed("search.method") else config.search.method
    search = dataclasses.replace(config.search, space=parse_space(space_raw, method, problems))
    logging = dataclasses.replace(
        config.logging, visdom=_switch(VisdomConfig, visdom_raw, "logging.visdom", problems),
        tensorboard=_switch(TensorBoardConfig, tensorboard_raw, "logging.tensorboard",
                            problems))
    config = dataclasses.replace(config, search=search, logging=logging)
    _check(config, problems)
    problems.raise_any()
    return _resolve(config)


def train_split_size(data: DataConfig) -> int:
    """Samples in the training split: the one place that knows it before the data is
    loaded (data.py's loaders must agree; tests/test_data.py checks that they do)."""
    full = TRAIN_SAMPLES[data.dataset]
    rest = full - round(full * data.val_fraction)  # the validation split comes out first
    return rest if data.train_size is None else min(rest, data.train_size)


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
    out["train"].pop("population")  # how trials are scheduled, not what they compute
    return out


# ----------------------------------------------------------------- checks


def _switch(cls: type, raw: Any, path: str, problems: Problems) -> Any:
    """A section that is on with defaults (true), off (false), or on with settings."""
    if raw is None or raw is False:
        return None
    if raw is True:
        return cls()
    return build(cls, raw, path, problems)


def _check(config: Config, problems: Problems) -> None:
    """Ranges and choices that types alone do not catch. A field whose type was wrong
    already has its problem and is not checked again."""
    check = problems.check
    for value, choices, path in (
            (config.data.dataset, DATASETS, "data.dataset"), (config.model, tuple(MODELS), "model"),
            (config.search.method, METHODS, "search.method"),
            (config.search.sampler, SAMPLERS, "search.sampler"),
            (config.search.pruner, PRUNERS, "search.pruner"),
            (config.objective.metric, tuple(METRICS), "objective.metric")):
        check(path, choice, value, choices, path)
    if config.objective.direction:  # empty: the metric's own direction
        check("objective.direction", choice, config.objective.direction, DIRECTIONS,
              "objective.direction")
        check("objective.direction", _check_direction, config.objective)
    tensorboard = config.logging.tensorboard
    for value, low, path in (
            (config.train.epochs, 1, "train.epochs"),
            (config.search.n_trials, 1, "search.n_trials"),
            (config.train.eval_batch_size, 1, "train.eval_batch_size"),
            (config.data.train_size, 1, "data.train_size"),
            (config.data.test_size, 1, "data.test_size"),
            (tensorboard.log_every if tensorboard else None, 0,
             "logging.tensorboard.log_every")):
        if value is not None:
            check(path, at_least, value, low, path)
    for h in HYPERPARAMS:
        check(f"train.{h.name}", _valid, getattr(config.train, h.name), h.check, h.valid,
              f"train.{h.name}")
    check("train.diverge_above", _valid, config.train.diverge_above, lambda v: v > 0,
          "a number > 0", "train.diverge_above")
    check("train.population", parse_population, config.train.population, "train.population")
    check("data.val_fraction", _check_fraction, config.data.val_fraction)
    if not problems.failed("data.val_fraction"):
        check("objective.metric", _check_validation, config.data.val_fraction,
              config.objective.metric)
    check("name", _check_name, config.name)
    check("train.device", _check_device, config.train.device)
    check("search.seeds", _check_seeds, config.search.seeds)
    _check_grid_only(config, problems)
    _check_batch_size(config, problems)
    check_unused(config.search.space, config.train.optimizer, problems)


def _valid(value: Any, test: Any, valid: str, path: str) -> None:
    if not test(value):
        raise invalid(value, valid, path)


def parse_population(value: Any, path: str) -> int | str:
    """auto, off (or YAML's false), or a number of trials >= 1, as the sweep reads it."""
    if value is False or value == POPULATION_OFF:
        return POPULATION_OFF
    if value == POPULATION_AUTO:
        return POPULATION_AUTO
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"{path}: {show(value)} is not valid; use auto, off or the number "
                      "of trials to train together (an integer >= 1)")


def _check_fraction(fraction: float) -> None:
    if not 0 <= fraction < 1:
        raise ConfigError(f"data.val_fraction: {show(fraction)} is not valid; use a number "
                          "in [0, 1), such as 0.1 (0 turns validation off)")


def _check_validation(fraction: float, metric: str) -> None:
    if metric.startswith("val_") and fraction == 0:
        raise ConfigError(f"objective.metric: {metric} needs a validation split but "
                          "data.val_fraction is 0; set data.val_fraction (e.g. 0.1) or "
                          "choose test_acc, test_loss or train_loss")


def _check_direction(objective: ObjectiveConfig) -> None:
    """A direction against the metric's own would choose each trial's worst epoch."""
    natural = METRICS.get(objective.metric)
    if natural is not None and objective.direction != natural:
        better = "larger" if natural == "maximize" else "smaller"
        raise ConfigError(f"objective.direction: {objective.direction} contradicts "
                          f"{objective.metric}, which is better {better}; use {natural} "
                          "or leave direction out")


def _check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"name: {name!r} cannot name a results directory; use "
                          "letters, digits, '.', '_' and '-' (no '/' or leading '.')")


def _check_device(device: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise ConfigError(f"train.device: {device!r} is not a device; use auto, "
                          "cpu, cuda or cuda:N")


def _check_seeds(seeds: tuple[int, ...]) -> None:
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"search.seeds: {list(seeds)} repeats a seed")


def _check_grid_only(config: Config, problems: Problems) -> None:
    if config.search.method != "grid" or problems.failed("search.method"):
        return
    for key in ("sampler", "pruner", "n_trials"):
        default = getattr(SearchConfig(), key)
        if getattr(config.search, key) != default and not problems.failed(f"search.{key}"):
            problems.add(f"search.{key}", f"search.{key}: only used by method optuna; "
                         "remove it or set search.method: optuna")


def _check_batch_size(config: Config, problems: Problems) -> None:
    """No batch larger than the training split: such a trial would train on one short
    batch per epoch, a different experiment from the one the config names."""
    space = f"search.space.{BATCH_SIZE}"
    if problems.failed("data.dataset", "data.train_size", "data.val_fraction", space):
        return
    n = train_split_size(config.data)
    searched = config.search.space.get(BATCH_SIZE)
    if isinstance(searched, Range):
        sizes = {f"{space}.high": searched.high}
    elif searched is not None:
        sizes = {f"{space}[{i}]": v for i, v in enumerate(searched)}
    elif not problems.failed(f"train.{BATCH_SIZE}"):
        sizes = {f"train.{BATCH_SIZE}": config.train.batch_size}
    else:
        sizes = {}
    more = config.data.train_size is not None and n < TRAIN_SAMPLES[config.data.dataset]
    for path, size in sizes.items():
        if size > n:
            problems.add(path, f"{path}: {size:g} is larger than the training split ({n} "
                         f"samples of {config.data.dataset}); use at most {n}"
                         + (", or a larger data.train_size" if more else ""))


def _resolve(config: Config) -> Config:
    """Fill the defaults that depend on other fields, so config.yaml shows what ran."""
    seeds = config.search.seeds or (config.train.seed,)
    direction = config.objective.direction or METRICS[config.objective.metric]
    population = parse_population(config.train.population, "train.population")
    return dataclasses.replace(
        config, train=dataclasses.replace(config.train, population=population),
        search=dataclasses.replace(config.search, seeds=seeds),
        objective=dataclasses.replace(config.objective, direction=direction),
    )


