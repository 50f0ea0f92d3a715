"""Checking a shared write again after it was verified.

Queue policies (SQS) and subscription filter policies (SNS) have no conditional write:
:mod:`sqsbus.routing.exchanges` reads, changes, writes and reads back until its change is
seen.  A writer in another process that read before that write can still write after the
read-back, without the change.  A lost grant in a queue's policy makes SNS drop the topic's
messages for that queue without telling anyone, so each change this process made is
checked again :data:`RECHECK_AFTER` seconds later on a background thread, and made again
(with a warning) if it is gone.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

from sqsbus.errors import QueueDoesNotExist, TransientError
from sqsbus.forks import reset_in_child

logger = logging.getLogger(__name__)

#: Seconds after a change was made when it is checked again: soon (a writer racing with
#: ours), and twice more as other processes' slower writes may still land.
RECHECK_AFTER: Final = (2.0, 10.0, 60.0)

Check = Callable[[], None]


@dataclass
class _Scheduled:
    check: Check
    #: Which scheduling the due times in the heap belong to (a key scheduled again starts
    #: over: the older due times are skipped).
    generation: int
    remaining: int


class Rechecks:
    """Runs each scheduled check at :data:`RECHECK_AFTER` on one daemon thread, which
    runs only while checks are due (thread-safe)."""

    def __init__(self, after: tuple[float, ...] = RECHECK_AFTER) -> None:
        self.after = after
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Hashable, int]] = []
        self._scheduled: dict[Hashable, _Scheduled] = {}
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        _instances.add(self)

    def schedule(self, key: Hashable, check: Check) -> None:
        """Run ``check`` at each of :attr:`after` from now; a ``key`` scheduled again
        starts over with the new ``check``."""
        with self._cond:
            generation = next(self._order)
            self._scheduled[key] = _Scheduled(check, generation, len(self.after))
            now = time.monotonic()
            for delay in self.after:
                heapq.heappush(self._due, (now + delay, next(self._order), key, generation))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="sqsbus-rechecks", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def cancel(self, key: Hashable) -> None:
        """Check ``key`` no more (what it checked was undone on purpose)."""
        with self._cond:
            self._scheduled.pop(key, None)

    def pending(self) -> int:
        """How many keys still have checks to come."""
        with self._cond:
            return len(self._scheduled)

    def running(self) -> bool:
        """Whether the thread is running checks (or waiting for the next one)."""
        with self._cond:
            return self._thread is not None and self._thread.is_alive()

    def clear(self) -> None:
        """Drop every check still to come (the thread ends); later ones may be scheduled."""
        with self._cond:
            self._due.clear()
            self._scheduled.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._next_due()
            if due is None:
                return
            check, last = due
            try:
                check()
            except QueueDoesNotExist:
                pass  # deleted meanwhile: nothing left to keep
            except Exception as exc:
                # A transient failure (throttled, endpoint unreachable) is only worth a
                # warning when no later check of the same change will try again.
                quiet = isinstance(exc, TransientError) and not last
                logger.log(
                    logging.DEBUG if quiet else logging.WARNING,
                    "could not check a queue's or subscription's policy again: %s",
                    exc,
                )

    def _next_due(self) -> tuple[Check, bool] | None:
        """With the condition held: wait for the next check due and return it, and whether
        it is its key's last; None once none is left (the thread then ends)."""
        while True:
            if not self._scheduled or not self._due:
                self._due.clear()
                self._thread = None
                return None
            due, _, key, generation = self._due[0]
            wait = due - time.monotonic()
            if wait > 0:
                self._cond.wait(wait)
                continue
            heapq.heappop(self._due)
            scheduled = self._scheduled.get(key)
            if scheduled is None or scheduled.generation != generation:
                continue
            scheduled.remaining -= 1
            if not scheduled.remaining:
                del self._scheduled[key]
            return scheduled.check, not scheduled.remaining


_instances: weakref.WeakSet[Rechecks] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child has no recheck thread and a fresh lock; the parent's checks are the
    parent's to run."""
    for rechecks in list(_instances):
        rechecks._cond = threading.Condition()
        rechecks._due = []
        rechecks._scheduled = {}
        rechecks._thread = None


reset_in_child(_after_fork_in_child)
