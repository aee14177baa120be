"""Several processes on one sweep (`--workers N`): the parent and N-1 children each pull
the next point from the shared study, so no point runs twice and a free worker never
waits for a slow one. Torch's threads are divided among them."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from harness.config import Config

# What a child runs: sweep.run_sweep(config, options), handed in by the sweep so that this
# module never imports the sweep (which imports it). `options` is a sweep.SweepOptions.
Run = Callable[[Any, Any], object]

JOIN_TIMEOUT_S = 120  # after Ctrl-C, how long a child gets to record its trial
STOP_GRACE_S = 5  # how long an interrupted parent waits before it interrupts its children


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def start_method(device: torch.device) -> str:
    """fork starts a worker in milliseconds with torch imported and the data loaded
    (spawn takes seconds to import it all again); CUDA does not survive a fork."""
    if device.type == "cpu" and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def spawn(run: Run, config: Config, options: Any, children: int, device: torch.device
          ) -> list[BaseProcess]:
    """Start `children` worker processes on the sweep that `options.out` holds."""
    context = multiprocessing.get_context(start_method(device))
    child = dataclasses.replace(options, workers=1, fresh=False, child=True)
    threads = threads_per_worker(options.workers)
    processes = [context.Process(target=_work, args=(run, config, child, threads), daemon=False)
                 for _ in range(children)]
    for process in processes:
        process.start()
    return processes


def stop(processes: list[BaseProcess]) -> None:
    """The parent stopped early. A Ctrl-C in the terminal reached the children too: give
    them time to record their trials. Then ask those still running (the parent alone got
    a SIGTERM, or failed) to stop the same way, and wait for them."""
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        process.join(max(deadline - time.monotonic(), 0))
    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGINT)
    join(processes)


def join(processes: list[BaseProcess]) -> list[int | None]:
    for process in processes:
        process.join(JOIN_TIMEOUT_S)
    return [process.exitcode for process in processes]


def _work(run: Run, config: Config, options: Any, threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        run(config, options)
    except KeyboardInterrupt:
        sys.exit(130)
