"""What a population's finished members still need, done off the training path: each
finished member's book is finished (its checkpoint written, its sinks told: TensorBoard's
prediction grid, the run closed) and its result recorded (the study, trials.csv and
history.csv, the progress line) by a thread of its own, in the order the members
stopped, while the population trains on. On a GPU that thread mostly runs while the
main thread waits for the device; its heartbeat goes on until the result is recorded.

    with Bookkeeper(record) as keeper:
        keeper.finish(seat)            # a member that stopped
        keeper.check()                 # an error of the thread's, raised here
    # leaving the block waits until every member given is recorded
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from harness.book import TrialBook
from harness.study.claims import Claim
from harness.study.owner import Lease
from harness.types import TrialResult

Record = Callable[[Claim, TrialResult, Lease], None]


@dataclass
class Seat:
    """A member of a population: its claim, its book, and its heartbeat's lease."""

    claim: Claim
    book: TrialBook
    lease: Lease
    beat: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    fault: BaseException | None = None  # the device failed: finish without touching it


class Bookkeeper:
    """Finishes and records the members given to it, one after another, on its thread."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.queue: queue.Queue[Seat | None] = queue.Queue()
        self.error: BaseException | None = None  # the first error, raised by `check`
        self.full: OSError | None = None  # a full disk met by a result: the sweep stops
        self.fault: BaseException | None = None  # the device failed: touch it no more
        self.thread = threading.Thread(target=self._work, name="bookkeeper", daemon=True)

    def __enter__(self) -> Bookkeeper:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Every member given is recorded before the block is left, however it ends."""
        self.queue.put(None)
        self.thread.join()

    def finish(self, seat: Seat) -> None:
        """Finish and record this member (it stopped: its trainer is done with it)."""
        self.queue.put(seat)

    def check(self) -> None:
        """Raise here the first error the thread met (it went on with the others)."""
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def wait(self) -> None:
        """Until every member given so far is recorded."""
        self.queue.join()

    def _work(self) -> None:
        while (seat := self.queue.get()) is not None:
            try:
                self._settle(seat)
            except BaseException as err:  # noqa: BLE001 - the main thread raises it
                self.error = self.error or err
            finally:
                seat.beat.close()  # its heartbeat stops once it is recorded
                self.queue.task_done()
        self.queue.task_done()

    def _settle(self, seat: Seat) -> None:
        book = seat.book
        fault = seat.fault or self.fault
        result = book.finish() if fault is None else book.abandon(fault)
        self.record(seat.claim, result, seat.lease)
        if result.stop is not None:
            self.full = self.full or result.stop
