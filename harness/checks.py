"""The checks of a config that its types alone do not catch: choices, ranges, what one
field allows of another, and what the data sets hold. Each problem is one line naming the
field, the bad value and the fix (schema.Problems collects them all).
"""

from __future__ import annotations

import re
from typing import Any

from harness.config import (
    DATASETS,
    DIRECTIONS,
    METHODS,
    METRICS,
    POPULATION_AUTO,
    POPULATION_OFF,
    PRUNERS,
    SAMPLERS,
    TEST_SAMPLES,
    TRAIN_SAMPLES,
    Config,
    DataConfig,
    ObjectiveConfig,
    SearchConfig,
)
from harness.hyperparams import BATCH_SIZE, HYPERPARAMS
from harness.models import MODELS
from harness.schema import ConfigError, Problems, at_least, choice, invalid, show
from harness.space import Range, check_unused

NAME_LENGTH = 100  # a results directory's and a study's name, at most
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_ALPHA = 0.5  # a race's alpha above it would drop the leader's equals by coin flip


def check(config: Config, problems: Problems) -> None:
    """Ranges and choices that types alone do not catch. A field whose type was wrong
    already has its problem and is not checked again."""
    test = problems.check
    for value, choices, path in (
            (config.data.dataset, DATASETS, "data.dataset"), (config.model, tuple(MODELS), "model"),
            (config.search.method, METHODS, "search.method"),
            (config.search.sampler, SAMPLERS, "search.sampler"),
            (config.search.pruner, PRUNERS, "search.pruner"),
            (config.objective.metric, tuple(METRICS), "objective.metric")):
        test(path, choice, value, choices, path)
    if config.objective.direction:  # empty: the metric's own direction
        test("objective.direction", choice, config.objective.direction, DIRECTIONS,
             "objective.direction")
        test("objective.direction", _check_direction, config.objective)
    _check_counts(config, problems)
    for h in HYPERPARAMS:
        test(f"train.{h.name}", _valid, getattr(config.train, h.name), h.check, h.valid,
             f"train.{h.name}")
    test("train.diverge_above", _valid, config.train.diverge_above, lambda v: v > 0,
         "a number > 0", "train.diverge_above")
    test("train.population", parse_population, config.train.population, "train.population")
    test("data.val_fraction", _check_fraction, config.data.val_fraction)
    if not problems.failed("data.val_fraction"):
        test("objective.metric", _check_validation, config.data.val_fraction,
             config.objective.metric)
    test("name", check_name, config.name)
    test("train.device", check_device, config.train.device, "train.device")
    test("search.seeds", _check_seeds, config.search.seeds, "search.seeds")
    if config.objective.margin is not None:
        test("objective.margin", _valid, config.objective.margin, lambda v: v >= 0,
             "a number >= 0 (0: no row is called equivalent)", "objective.margin")
    _check_grid_only(config, problems)
    _check_sizes(config, problems)
    _check_batch_size(config, problems)
    _check_race(config, problems)
    _check_confirm(config, problems)
    check_unused(config.search.space, config.train.optimizer, problems)


def train_split_size(data: DataConfig) -> int:
    """Samples in the training split: the one place that knows it before the data is
    loaded (data.py's loaders must agree; tests/test_data.py checks that they do)."""
    rest = _train_rest(data)
    return rest if data.train_size is None else min(rest, data.train_size)


def _train_rest(data: DataConfig) -> int:
    """The training part left once the validation split is carved out."""
    full = TRAIN_SAMPLES[data.dataset]
    return full - round(full * data.val_fraction)


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


def check_device(device: str, path: str) -> None:
    """auto, cpu, cuda or cuda:N: the same for train.device and --device."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"{path}: {device!r} is not a device; use auto, cpu, cuda or "
                          "cuda:N")


def check_name(name: str) -> None:
    if len(name) > NAME_LENGTH:
        raise ConfigError(f"name: {len(name)} characters is too long; use at most "
                          f"{NAME_LENGTH} (it names the results directory and the study)")
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"name: {name!r} cannot name a results directory; use "
                          "letters, digits, '.', '_' and '-' (no '/' or leading '.')")


def _valid(value: Any, test: Any, valid: str, path: str) -> None:
    if not test(value):
        raise invalid(value, valid, path)


def _check_counts(config: Config, problems: Problems) -> None:
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
            problems.check(path, at_least, value, low, path)


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


def _check_seeds(seeds: tuple[int, ...], path: str) -> None:
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: {list(seeds)} repeats a seed; give each seed once")


def _check_grid_only(config: Config, problems: Problems) -> None:
    if config.search.method != "grid" or problems.failed("search.method"):
        return
    for key in ("sampler", "pruner", "n_trials"):
        default = getattr(SearchConfig(), key)
        if getattr(config.search, key) != default and not problems.failed(f"search.{key}"):
            problems.add(f"search.{key}", f"search.{key}: only used by method optuna; "
                         "remove it or set search.method: optuna")


def _check_sizes(config: Config, problems: Problems) -> None:
    """No data.train_size or test_size beyond what the data set holds: a cap would run
    another experiment than the one the config names, without a word."""
    data = config.data
    if problems.failed("data.dataset", "data.val_fraction") or data.dataset not in DATASETS:
        return
    for path, size, most, what in (
            ("data.train_size", data.train_size, _train_rest(data),
             "training samples left after the validation split"),
            ("data.test_size", data.test_size, TEST_SAMPLES[data.dataset], "test samples")):
        if size is not None and not problems.failed(path) and size > most:
            problems.add(path, f"{path}: {size} is more than the {most} {what} of "
                         f"{data.dataset}; use at most {most}, or leave it out for all")


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


def _check_race(config: Config, problems: Problems) -> None:
    """A race needs seeds to race for: at least 3, more than its first ones."""
    race, search = config.search.race, config.search
    if race is None or problems.failed("search.race", "search.method"):
        return
    problems.check("search.race.alpha", _valid, race.alpha, lambda v: 0 < v <= MAX_ALPHA,
                   f"a number in (0, {MAX_ALPHA}], such as 0.05", "search.race.alpha")
    problems.check("search.race.first", at_least, race.first, 2, "search.race.first")
    if search.method == "optuna":
        if search.confirm is None and not problems.failed("search.confirm"):
            problems.add("search.race", "search.race: with method optuna a race runs the "
                         "confirmation; add search.confirm: {top: 5, seeds: [1, 2, 3, 4]} "
                         "or remove search.race")
            return
        seeds, path = (search.confirm.seeds if search.confirm else ()), "search.confirm.seeds"
    else:  # no search.seeds: train.seed alone
        seeds, path = search.seeds or (config.train.seed,), "search.seeds"
    if problems.failed(path, "search.race.first") or (path.startswith("search.confirm")
                                                       and not seeds):
        return
    if len(seeds) < 3:
        problems.add(path, f"{path}: a race needs at least 3 seeds, not {len(seeds)}: its "
                     "first ones for every configuration, then more for those still in; "
                     "add seeds or remove search.race")
    elif race.first >= len(seeds):
        problems.add("search.race.first", f"search.race.first: {race.first} leaves none of "
                     f"the {len(seeds)} seeds of {path} to race for; use at most "
                     f"{len(seeds) - 1}, or add seeds")


def _check_confirm(config: Config, problems: Problems) -> None:
    """The top configurations of an Optuna search on fresh seeds."""
    confirm = config.search.confirm
    if confirm is None or problems.failed("search.confirm", "search.method"):
        return
    if config.search.method != "optuna":
        problems.add("search.confirm", "search.confirm: only for method optuna (a grid "
                     "runs every configuration on search.seeds); remove it or set "
                     "search.method: optuna")
        return
    problems.check("search.confirm.top", at_least, confirm.top, 1, "search.confirm.top")
    if not confirm.seeds and not problems.failed("search.confirm.seeds"):
        problems.add("search.confirm.seeds", "search.confirm.seeds: missing; give fresh "
                     "seeds such as [1, 2, 3, 4]")
    problems.check("search.confirm.seeds", _check_seeds, confirm.seeds,
                   "search.confirm.seeds")
    shared = sorted(set(confirm.seeds) & set(config.search.seeds or (config.train.seed,)))
    if shared and not problems.failed("search.confirm.seeds", "search.seeds"):
        problems.add("search.confirm.seeds", f"search.confirm.seeds: {shared} also "
                     "searched (search.seeds, or train.seed without them); confirmation "
                     "needs fresh seeds: the search's values were chosen for being high")
