"""A sweep's config as typed, frozen objects, one line of comment per field, with the
vocabularies its fields take; and the config back as plain YAML data (config.yaml, the
study's identity). parse.py makes one from YAML; checks.py holds its checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from harness.hyperparams import BATCH_SIZE, BY_NAME, LR, MOMENTUM, OPTIMIZER, WEIGHT_DECAY
from harness.space import Range
from harness.stats import ALPHA
from harness.types import DIVERGE_ABOVE

DATASETS = ("mnist", "mnist-5k", "synthetic")
METHODS = ("grid", "optuna")
SAMPLERS = ("tpe", "random")
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("maximize", "minimize")
# Each objective metric's natural direction; val_* need data.val_fraction > 0.
METRICS = {"val_acc": "maximize", "val_loss": "minimize", "test_acc": "maximize",
           "test_loss": "minimize", "train_loss": "minimize"}
TRAIN_SAMPLES = {"mnist": 60_000, "mnist-5k": 4_000, "synthetic": 2_000}  # full training sets
TEST_SAMPLES = {"mnist": 10_000, "mnist-5k": 1_000, "synthetic": 500}  # full test sets
POPULATION_AUTO, POPULATION_OFF = "auto", "off"  # train.population's words besides a number
AUTO = "auto"  # logging.visdom: the live view when a local server answers
ACCURACY_MARGIN = 0.005  # objective.margin for an accuracy when none is given: half a point


def default_margin(metric: str) -> float | None:
    """objective.margin when a config gives none: half a point of accuracy; a loss has
    no natural scale, so no row is called equivalent without one."""
    return ACCURACY_MARGIN if metric.endswith("_acc") else None


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
class RaceConfig:
    first: int = 2  # seeds every configuration runs before any is raced out
    alpha: float = ALPHA  # one-sided Welch test against the leader, per comparison


@dataclass(frozen=True)
class ConfirmConfig:
    top: int = 5  # the search's best configurations, by its own values...
    seeds: tuple[int, ...] = ()  # ... run again on these fresh seeds, and ranked on them


@dataclass(frozen=True)
class SearchConfig:
    method: str = "grid"  # grid: every combination; optuna: n_trials sampled points
    space: dict[str, tuple[Any, ...] | Range] = field(default_factory=dict)  # param -> values
    seeds: tuple[int, ...] = ()  # every configuration runs once per seed; () means train.seed
    n_trials: int = 20  # optuna only: configurations to try
    sampler: str = "tpe"  # optuna only: tpe | random
    pruner: str = "none"  # optuna only: none | median | hyperband, on the per-epoch objective
    # More seeds only for configurations that may still be the best (seeds: the most);
    # None: every configuration runs every seed.
    race: RaceConfig | None = None
    confirm: ConfirmConfig | None = None  # optuna only: the top ones on fresh seeds


@dataclass(frozen=True)
class ObjectiveConfig:
    metric: str = "val_acc"  # chooses each trial's best epoch; a key of METRICS (test_*: biased)
    direction: str = ""  # maximize | minimize; empty picks the metric's natural direction
    # A difference smaller than this is no difference (verdict `equivalent`); for an
    # accuracy ACCURACY_MARGIN when none is given, for a loss none (never equivalent).
    margin: float | None = None

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


@dataclass(frozen=True)
class VisdomConfig:
    server: str = "http://localhost"  # Visdom server URL, without the port
    port: int = 8097  # Visdom server port
    env: str = ""  # environment name; empty uses the sweep's label (harness.label)
    auto: bool = False  # only if a server answers; else one line says how to start one


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
    # The live view: auto (a local server when one answers), false (None), or settings.
    visdom: VisdomConfig | None = VisdomConfig(auto=True)


@dataclass(frozen=True)
class Config:
    name: str  # names the results directory (results/<name>) and the Optuna study
    data: DataConfig = DataConfig()
    model: str = "lenet"  # lenet: the LeNet-5 of the original article, 44,426 parameters
    train: TrainConfig = TrainConfig()
    search: SearchConfig = SearchConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    logging: LoggingConfig = LoggingConfig()


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
    if config.logging.visdom is not None:
        if config.logging.visdom == VisdomConfig(auto=True):
            out["logging"]["visdom"] = AUTO
        else:
            out["logging"]["visdom"].pop("auto")
    for key in ("race", "confirm"):
        if getattr(config.search, key) is None:
            out["search"].pop(key)  # absent, as configs of earlier versions are
    if config.search.confirm is not None:
        out["search"]["confirm"]["seeds"] = list(config.search.confirm.seeds)
    if config.objective.margin is None:
        out["objective"].pop("margin")
    return out


def dump_config(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def identity(config: Config) -> dict[str, Any]:
    """The part of a config that decides the results; resuming requires it unchanged."""
    out = to_dict(config)
    out.pop("logging")
    out["train"].pop("device")
    out["train"].pop("population")  # how trials are scheduled, not what they compute
    if config.search.race is None:  # then the margin only words the verdicts
        out["objective"].pop("margin", None)
    return out
