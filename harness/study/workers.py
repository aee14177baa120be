"""Several processes on one sweep (`--workers N`): the parent and N-1 children each pull
the next point from the shared study, so no point runs twice and a free worker never
waits for a slow one. Torch's threads are divided among them."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

import torch

from harness import stop
from harness.quiet import quiet_dependencies

if TYPE_CHECKING:
    from harness.config import Config

# What a child runs: sweep.run_sweep(config, options), handed in by the sweep so that this
# module never imports the sweep (which imports it). `options` is a sweep.SweepOptions
# whose `counter` is the shared count of trials the children ran, added to by each
# trial as it is recorded (so a child killed later has its trials counted).
Run = Callable[[Any, Any], Any]

POLL_S = 0.2  # how often a waiting parent looks whether it was asked to stop


def available_cpus() -> int:
    """The CPUs this process may run on: what `taskset`, cgroups and containers allow,
    which can be far fewer than the machine has (os.cpu_count())."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, available_cpus() // workers)


def start_method(device: torch.device) -> str:
    """fork starts a worker in milliseconds with torch imported and the data loaded
    (spawn takes seconds to import it all again); CUDA does not survive a fork."""
    if device.type == "cpu" and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


@dataclasses.dataclass
class Children:
    """The worker processes of one sweep, and the trials they ran between them."""

    processes: list[BaseProcess]
    ran: Any  # a multiprocessing.Value("i"): trials the children recorded, so far

    def tell_stop(self) -> None:
        """Ask every child to stop at its next safe point: it records its running trial
        as interrupted and claims nothing new. SIGTERM only sets a flag, so a child that
        got the same Ctrl-C or SIGTERM already is not hurried into losing it."""
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    def wait(self) -> list[int | None]:
        """Wait for every child however long its trial takes; once this process is asked
        to stop (Ctrl-C, SIGTERM), ask them too, then go on waiting for them to save."""
        told = False
        while any(process.is_alive() for process in self.processes):
            if stop.requested() and not told:
                self.tell_stop()
                told = True
            for process in self.processes:
                process.join(POLL_S)
        stop.forget(self.pids)
        return [process.exitcode for process in self.processes]

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.pid is not None]


def spawn(run: Run, config: Config, options: Any, children: int, device: torch.device
          ) -> Children:
    """Start `children` worker processes on the sweep that `options.out` holds."""
    context = multiprocessing.get_context(start_method(device))
    ran = context.Value("i", 0)
    child = dataclasses.replace(options, workers=1, fresh=False, child=True, counter=ran)
    threads = threads_per_worker(options.workers)
    processes = [context.Process(target=_work, args=(run, config, child, threads),
                                 daemon=False) for _ in range(children)]
    for process in processes:
        process.start()
    team = Children(processes, ran)
    stop.forward(team.pids)
    return team


def _work(run: Run, config: Config, options: Any, threads: int) -> None:
    stop.install()  # a spawned child starts with Python's own handlers
    quiet_dependencies()  # and with Optuna's own logging
    torch.set_num_threads(threads)
    try:
        run(config, options)
    except KeyboardInterrupt:
        sys.exit(130)
