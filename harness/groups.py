"""A sweep's trials in populations: how many train together, which claims go together,
and how a group runs. Each member is still a whole trial: its own book, Optuna trial,
pruning, checkpoint, sinks and heartbeat.

    size = population_size(config.train.population, device)
    claims = search.claim(size, fusable_key)  # a grid's share one key
    for claim, result, lease in run_claims(claims, ...): record(claim, result)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import optuna
import torch

from harness import train
from harness.book import EpochCallback, TrialBook, attempt_checkpoint
from harness.config import POPULATION_AUTO, POPULATION_OFF
from harness.data import Dataset
from harness.errors import SetupError, describe
from harness.hyperparams import LR, OPTIMIZER, build_optimizer
from harness.models import build_model
from harness.sinks.base import Sink
from harness.study.claims import Claim
from harness.study.owner import Lease, heartbeat
from harness.trainers.fused import FusedTrainer, fusable_key
from harness.trainers.population import Member, PopulationTrainer
from harness.trial import run_books, run_trial
from harness.types import INTERRUPTED, Training, TrialResult, TrialSpec

# `auto` on CUDA. The README's table (one H200, LeNet, batch 64): 32 trials at once give
# 76x the trials per hour of one at a time and 128 give 85x; 32 keeps an Optuna search
# adaptive (each population is sampled knowing the results of the ones before). On a
# CPU a population gains little over one at a time (benchmarks/README.md): `auto` is off.
CUDA_POPULATION = 32


def population_size(setting: int | str, device: torch.device) -> int:
    """The most trials trained together: train.population (or --population) resolved."""
    if setting == POPULATION_OFF:
        return 1
    if setting == POPULATION_AUTO:
        return CUDA_POPULATION if device.type == "cuda" else 1
    return int(setting)


def check_setup(spec: TrialSpec, training: Training, data: Dataset, size: int) -> None:
    """One step of the sweep's model and optimizer on two samples, an evaluation, and
    (when the sweep trains populations) a population of two evaluated, on the sweep's
    device, before any trial is claimed. A fault that would fail every trial the same
    way (a device that cannot train, a model that cannot be built) stops the sweep here
    as a SetupError, and no trial is recorded as its result. The global random state is
    left as it was."""
    device = data.device
    x, y = data.x_train[:2], data.y_train[:2]
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_model(training.model).to(device)
            if training.channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = build_optimizer(model.parameters(), spec.params,
                                        fused=device.type == "cuda")
            train.train_epoch(model, optimizer, x, y, len(x), torch.Generator(),
                              amp=training.amp, should_stop=lambda: False)
            train.evaluate(model, x, y, len(x), training.amp)
            if size > 1:
                pair = [Member(seed, spec.params[LR]) for seed in (0, 1)]
                PopulationTrainer(pair, spec.params[OPTIMIZER], len(x), device,
                                  amp=training.amp).evaluate(x, y, len(x))
    except Exception as err:
        raise SetupError(f"the sweep cannot train {training.model} on {device} "
                         f"({describe(err)}); nothing was run or recorded: fix this and "
                         "run the same command") from err


def by_key(claims: Sequence[Claim]) -> list[list[Claim]]:
    """The claims in groups that can train together, in the order of their first claim."""
    groups: dict[tuple[Any, ...], list[Claim]] = {}
    for claim in claims:
        groups.setdefault(fusable_key(claim.spec.params), []).append(claim)
    return list(groups.values())


Pruning = Callable[[optuna.Trial, Lease], EpochCallback]


def run_claims(claims: Sequence[Claim], training: Training, data: Dataset,
               storage: optuna.storages.BaseStorage, sinks: Callable[[], list[Sink]],
               checkpoints: Path, pruning: Pruning
               ) -> Iterator[tuple[Claim, TrialResult, Lease]]:
    """Run the claims group by group, yielding every result with its claim's lease.
    After a group that was interrupted or hit a full disk, the groups not run come back
    interrupted: their points run again on resume."""
    halted = False
    with ExitStack() as beats:  # every claim is alive until its result is yielded
        leases = {claim.trial_id: beats.enter_context(heartbeat(storage, claim.trial_id))
                  for claim in claims}
        for group in by_key(claims):
            if halted:
                yield from ((claim, TrialResult(claim.spec, "FAIL", error=INTERRUPTED,
                                                metric=training.metric),
                             leases[claim.trial_id]) for claim in group)
                continue
            results = _run_group(group, training, data, sinks, checkpoints,
                                 lambda trial, trial_id: pruning(trial, leases[trial_id]))
            yield from ((claim, result, leases[claim.trial_id])
                        for claim, result in zip(group, results, strict=True))
            halted = any(r.interrupted or r.stop is not None for r in results)


def _run_group(group: list[Claim], training: Training, data: Dataset,
               sinks: Callable[[], list[Sink]], checkpoints: Path,
               pruning: Callable[[optuna.Trial, int], EpochCallback]) -> list[TrialResult]:
    """One claim alone as it always ran; several as one population."""
    if len(group) == 1:
        [claim] = group
        return [run_trial(claim.spec, training, data, sinks(),
                          attempt_checkpoint(checkpoints, claim.spec),
                          pruning(claim.trial, claim.trial_id))]
    books = [TrialBook(claim.spec, training, sinks(),
                       attempt_checkpoint(checkpoints, claim.spec),
                       pruning(claim.trial, claim.trial_id)) for claim in group]
    specs = [claim.spec for claim in group]
    return run_books(books, lambda: FusedTrainer(specs, training, data), data.device)
