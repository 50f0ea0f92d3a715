"""Visibility leases: keep held messages invisible for as long as they are held.

Messages are received with a short visibility timeout (the *lease*, e.g. 60 s)
instead of the queue's long default.  While a message is held (buffered, or
handed to the application and not settled yet), a :class:`LeaseKeeper` thread
extends its visibility in ``ChangeMessageVisibilityBatch`` calls of up to 10
messages, each time its lease is half used.  So:

* a task that runs longer than any visibility timeout is never delivered twice;
* a worker that dies (SIGKILL, power loss) stops extending, and SQS delivers its
  messages to another worker within one lease, not after the queue's 30 minutes.

A message settled within half a lease (the common case) costs no extra request.
SQS caps a message's total visibility at 12 hours after its receive; the keeper
extends up to that cap and then hands the message to ``on_cap`` (the transport
parks it, see :mod:`sqsbus.engine.parking`).

Extensions call :func:`sqsbus.engine.operations.change_visibility` synchronously, not
through the acker: each entry's answer decides whether its lease is kept or lost.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from sqsbus.engine import operations
from sqsbus.engine.messages import Received, batch_log_fields
from sqsbus.errors import SQSBusError
from sqsbus.limits import MAX_BATCH_ENTRIES, MAX_TOTAL_VISIBILITY
from sqsbus.telemetry import queue as queue_metrics

logger = logging.getLogger(__name__)

#: Longest sleep of the keeper thread, so a stop is noticed promptly.
MAX_SLEEP_SECONDS: Final = 1.0


@dataclass
class _Lease:
    message: Received
    received_at: float
    #: When to extend it next (half a lease after the last receive or extension).
    renew_at: float


class LeaseKeeper:
    """Extends the visibility of held messages until they are settled.

    ``lease_seconds`` is the visibility each receive asks for and each extension
    sets again; a lease is renewed once less than half of it is left.
    ``max_total_seconds`` is SQS's 12-hour cap (lower in tests).
    """

    def __init__(
        self,
        lease_seconds: int,
        *,
        max_total_seconds: int = MAX_TOTAL_VISIBILITY,
        on_cap: Callable[[Received], None] | None = None,
    ) -> None:
        if lease_seconds < 1:
            raise ValueError("lease_seconds must be at least 1")
        self.lease_seconds = lease_seconds
        self.max_total_seconds = max_total_seconds
        self.on_cap = on_cap
        #: Extensions sent and leases lost (SQS no longer knew the receipt handle).
        self.extended = 0
        self.lost = 0
        self._leases: dict[str, _Lease] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        #: When the thread wakes up by itself (-inf while it is awake).
        self._wakes_at = math.inf

    def __len__(self) -> int:
        with self._cond:
            return len(self._leases)

    def hold(self, messages: Sequence[Received], *, received_at: float | None = None) -> None:
        """Start keeping ``messages`` (just received with this keeper's lease) invisible."""
        if not messages:
            return
        now = time.monotonic() if received_at is None else received_at
        with self._cond:
            if self._stopped:
                return
            renew_at = now + self.lease_seconds / 2
            for message in messages:
                self._leases[message.receipt_handle] = _Lease(message, now, renew_at)
            self._start()
            if renew_at < self._wakes_at:  # not at every receive: the thread sleeps less
                self._cond.notify_all()

    def forget(self, messages: Sequence[Received]) -> None:
        """Stop extending ``messages`` (settled, released or handed elsewhere)."""
        if not messages:
            return
        with self._cond:
            for message in messages:
                self._leases.pop(message.receipt_handle, None)

    def holds(self, message: Received) -> bool:
        with self._cond:
            return message.receipt_handle in self._leases

    def stop(self) -> None:
        """Stop the keeper thread; held messages return to SQS when their lease ends."""
        with self._cond:
            self._stopped = True
            self._leases.clear()
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    # -- internals ---------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sqsbus-leases", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                now = time.monotonic()
                due = [lease for lease in self._leases.values() if lease.renew_at <= now]
                if not due:
                    upcoming = min((x.renew_at for x in self._leases.values()), default=None)
                    wait = MAX_SLEEP_SECONDS if upcoming is None else upcoming - now
                    wait = min(MAX_SLEEP_SECONDS, max(0.01, wait))
                    self._wakes_at = now + wait
                    self._cond.wait(wait)
                    self._wakes_at = -math.inf
                    continue
            self._renew(due, now)

    def _renew(self, due: list[_Lease], now: float) -> None:
        """Extend the due leases by a full lease; hand over those a lease would take past the cap.

        A message is handed over at a renewal point, so half a lease is left for ``on_cap``.
        """
        capped: list[_Lease] = []
        by_queue: dict[str, list[_Lease]] = {}
        for lease in due:
            if now + self.lease_seconds > lease.received_at + self.max_total_seconds:
                capped.append(lease)
            else:
                by_queue.setdefault(lease.message.queue.url, []).append(lease)
        for leases in by_queue.values():
            for start in range(0, len(leases), MAX_BATCH_ENTRIES):
                self._extend(leases[start : start + MAX_BATCH_ENTRIES], self.lease_seconds)
        for lease in capped:
            self._hand_over_capped(lease)

    def _extend(self, leases: list[_Lease], seconds: int) -> None:
        queue = leases[0].message.queue
        started = time.monotonic()
        try:
            failures = operations.change_visibility(
                queue, [lease.message.receipt_handle for lease in leases], seconds
            )
        except SQSBusError as exc:
            # Retried on the next pass; the lease still has half its time left.
            logger.warning(
                "could not extend the visibility of %d message(s) of queue %s: %s",
                len(leases),
                queue.name,
                exc,
                extra=batch_log_fields([lease.message for lease in leases], "lease"),
            )
            self._postpone(leases)
            return
        failed = {failure.index: failure for failure in failures}
        extended = lost = 0
        with self._cond:
            for index, lease in enumerate(leases):
                if lease.message.receipt_handle not in self._leases:
                    continue  # settled meanwhile
                failure = failed.get(index)
                if failure is None:
                    lease.renew_at = started + seconds / 2
                    self.extended += 1
                    extended += 1
                elif failure.stale_receipt:
                    self._leases.pop(lease.message.receipt_handle, None)
                    self.lost += 1
                    lost += 1
                    logger.warning(
                        "lost the lease of message %s of queue %s (%s): SQS may deliver it "
                        "again while it is still being processed",
                        lease.message.message_id,
                        queue.name,
                        failure.code,
                        extra=lease.message.log_fields("lease"),
                    )
        queue_metrics(queue.name).leases(extended, lost)
        if any(not failed[i].stale_receipt for i in failed):
            self._postpone([leases[i] for i in failed if not failed[i].stale_receipt])

    def _postpone(self, leases: list[_Lease]) -> None:
        """Try again in a moment (not in a busy loop)."""
        retry_at = time.monotonic() + min(5.0, self.lease_seconds / 8)
        with self._cond:
            for lease in leases:
                lease.renew_at = retry_at

    def _hand_over_capped(self, lease: _Lease) -> None:
        with self._cond:
            if self._leases.pop(lease.message.receipt_handle, None) is None:
                return
        if self.on_cap is None:
            logger.warning(
                "message %s of queue %s has been held for SQS's maximum visibility; "
                "it will be delivered again",
                lease.message.message_id,
                lease.message.queue.name,
                extra=lease.message.log_fields("lease"),
            )
            return
        try:
            self.on_cap(lease.message)
        except Exception:
            logger.exception(
                "could not re-publish message %s of queue %s at the visibility cap",
                lease.message.message_id,
                lease.message.queue.name,
                extra=lease.message.log_fields("park"),
            )
