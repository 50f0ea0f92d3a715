"""Slow side jobs, off the threads whose timing matters.

The lease keeper must extend every held message on time, and the acker must send deletes
before leases run out; neither may wait for a slow side job. Parking a message at SQS's
12-hour cap (a send, a receive of the copy, a delete: up to half a minute) and deleting
large payloads from S3 after an ack are handed to :class:`SideJobs` instead: one background
thread that runs them in order.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

Job = Callable[[], None]


class SideJobs:
    """Runs jobs in order on one background thread (started when first needed)."""

    def __init__(self, name: str = "sqsbus-side-jobs") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> None:
        """Run ``job`` soon, after the jobs submitted before it; its failure is logged."""
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def drain(self, timeout: float | None = 60.0) -> bool:
        """Wait until every job submitted so far has run; False if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                logger.exception("a background job of sqsbus failed")
            finally:
                with self._idle:
                    self._pending -= 1
                    if not self._pending:
                        self._idle.notify_all()
