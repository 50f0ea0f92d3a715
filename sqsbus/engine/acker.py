"""Settling received messages in batches: deletes (acks) and visibility changes.

:class:`Acker` queues each delete or visibility change and a background thread
sends them as ``DeleteMessageBatch`` / ``ChangeMessageVisibilityBatch`` calls of
up to 10 entries: at once when 10 are waiting for a queue, otherwise after a
short window (``window`` seconds, 50 ms by default), and always on
:meth:`Acker.flush` / :meth:`Acker.close`.  A late delete can only cause a
redelivery, never a loss.

Failures are not swallowed: transient ones (throttling, network, 5xx, entries
SQS marks as not the sender's fault) are retried with backoff; stale receipt
handles (the visibility timeout expired, or the message is already gone) are
logged at INFO, since SQS redelivers or already has; anything else is logged as
an error naming the messages and counted in :attr:`Acker.failed`.

``on_deleted`` is called (on the acker's thread) with the messages SQS confirmed
deleted — and only those: large payloads in S3 are deleted from there, so an
object outlives every delivery of its message.

The data path settles every message it handed to the application here; the few
callers that need an answer at once use :mod:`sqsbus.engine.operations` directly,
and that module lists them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqsbus.backoff import SQS_BATCH_RETRY
from sqsbus.engine import operations
from sqsbus.engine.leases import LeaseKeeper
from sqsbus.engine.messages import Received, batch_log_fields
from sqsbus.errors import QueueDoesNotExist, SQSBusError, TransientError
from sqsbus.limits import MAX_BATCH_ENTRIES
from sqsbus.log_fields import message_fields
from sqsbus.queues import name_from_url
from sqsbus.telemetry import watch_backlog

logger = logging.getLogger(__name__)

#: Seconds an entry may wait for others to share its batch.
DEFAULT_WINDOW: Final = 0.05
#: Queued deletes and visibility changes beyond which receivers pause
#: (:meth:`Acker.wait_for_room`): a consumer that acks faster than SQS confirms must
#: not pile up settled messages without bound, nor let their leases lapse.
MAX_BACKLOG: Final = 100

#: ``None``: delete; an int: change the visibility timeout to that many seconds.
Action = int | None


@dataclass
class _Entry:
    message: Received
    due: float
    attempts: int = 0


@dataclass
class _Lane:
    """Pending entries of one action on one queue."""

    entries: list[_Entry] = field(default_factory=list)


class Acker:
    """Batches deletes and visibility changes per queue on a background thread."""

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        leases: LeaseKeeper | None = None,
        on_deleted: Callable[[list[Received]], None] | None = None,
    ) -> None:
        self.window = window
        #: Settled messages are no longer extended by this keeper.
        self.leases = leases
        self.on_deleted = on_deleted
        #: Entries given up after a non-transient failure or too many attempts.
        self.failed = 0
        self._lanes: dict[tuple[str, Action], _Lane] = {}
        #: Entries in all lanes (kept, not summed: it is read at every ack).
        self._count = 0
        self._cond = threading.Condition()
        self._busy = 0
        self._closed = False
        #: When the thread wakes up by itself (-inf while it is awake).
        self._wakes_at = math.inf
        #: Set while the backlog is at most MAX_BACKLOG (an Event: waiting receivers
        #: are not woken by every ack, only when the backlog drains).
        self._room = threading.Event()
        self._room.set()
        self._thread: threading.Thread | None = None
        watch_backlog(self)

    # -- API -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def backlog(self) -> dict[tuple[str, str], int]:
        """Entries waiting to be sent, per (SQS queue name, batch method)."""
        with self._cond:
            waiting = [
                (url, action, len(lane.entries)) for (url, action), lane in self._lanes.items()
            ]
        counts: dict[tuple[str, str], int] = {}
        for url, action, count in waiting:
            key = (name_from_url(url), _METHODS[action is None])
            counts[key] = counts.get(key, 0) + count
        return counts

    def wait_for_room(self, timeout: float) -> bool:
        """Wait up to ``timeout`` until at most :data:`MAX_BACKLOG` entries wait to be
        sent; True if so (receivers call this before fetching more)."""
        return self._room.wait(timeout)

    def delete(self, messages: Sequence[Received]) -> None:
        """Delete ``messages`` from SQS soon (batched)."""
        self._add(messages, None)

    def set_visibility(self, messages: Sequence[Received], seconds: int) -> None:
        """Make ``messages`` visible again after ``seconds`` (batched)."""
        self._add(messages, int(seconds))

    def release(self, messages: Sequence[Received]) -> None:
        """Make ``messages`` visible again now, synchronously (best effort).

        Used for messages never handed to the application (buffered at cancel or
        close); works after :meth:`close` too.
        """
        for message in messages:
            message.settled = True
        if self.leases is not None:
            self.leases.forget(messages)
        operations.release(messages)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Send everything queued so far; True if all was settled within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            for lane in self._lanes.values():
                for entry in lane.entries:
                    entry.due = min(entry.due, time.monotonic())
            self._cond.notify_all()
            while self._pending() or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, then stop the background thread."""
        if not self.flush(timeout):
            with self._cond:
                left = self._pending()
            if left:
                logger.warning(
                    "%d delete/visibility change(s) not sent at close; those messages "
                    "will be delivered again after their visibility timeout",
                    left,
                    extra=message_fields("delete"),
                )
        with self._cond:
            self._closed = True
            self._room.set()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # -- internals -------------------------------------------------------------------------

    def _pending(self) -> int:
        return self._count

    def _add(self, messages: Sequence[Received], action: Action) -> None:
        if not messages:
            return
        for message in messages:
            message.settled = True
        if self.leases is not None:
            self.leases.forget(messages)
        due = time.monotonic() + self.window
        with self._cond:
            if self._closed:
                # After close nothing flushes in the background: settle right away.
                self._send(messages[0].queue.url, action, [_Entry(m, due) for m in messages])
                return
            full = False
            for message in messages:
                lane = self._lanes.setdefault((message.queue.url, action), _Lane())
                lane.entries.append(_Entry(message, due))
                full = full or len(lane.entries) % MAX_BATCH_ENTRIES == 0
            self._count += len(messages)
            if self._pending() > MAX_BACKLOG:
                self._room.clear()
            self._start()
            # Wake the thread only if it would sleep past these entries' due time or a
            # batch is full: not at every ack (each wake-up costs a thread switch).
            if full or due < self._wakes_at:
                self._cond.notify_all()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sqsbus-acker", daemon=True)
            self._thread.start()

    def _take_due(self, now: float) -> list[tuple[str, Action, list[_Entry]]]:
        """Remove and return the batches to send now.

        Full batches go at once; a partial batch goes when its oldest entry is
        due.  Retried entries wait for their backoff.
        """
        batches: list[tuple[str, Action, list[_Entry]]] = []
        for (url, action), lane in self._lanes.items():
            eligible = [e for e in lane.entries if e.attempts == 0 or e.due <= now]
            chosen: list[_Entry] = []
            while len(eligible) >= MAX_BATCH_ENTRIES:
                batch, eligible = eligible[:MAX_BATCH_ENTRIES], eligible[MAX_BATCH_ENTRIES:]
                batches.append((url, action, batch))
                chosen += batch
            if eligible and min(e.due for e in eligible) <= now:
                batches.append((url, action, eligible))
                chosen += eligible
            if chosen:
                taken = {id(e) for e in chosen}
                lane.entries = [e for e in lane.entries if id(e) not in taken]
                self._count -= len(chosen)
        return batches

    def _next_due(self) -> float | None:
        dues = [e.due for lane in self._lanes.values() for e in lane.entries]
        return min(dues) if dues else None

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                batches = self._take_due(now)
                if not batches:
                    if self._closed and not self._pending():
                        return
                    next_due = self._next_due()
                    self._wakes_at = math.inf if next_due is None else next_due
                    self._cond.wait(None if next_due is None else max(0.0, next_due - now))
                    self._wakes_at = -math.inf
                    continue
                self._busy += 1
                self._cond.release()
                try:
                    for url, action, batch in batches:
                        self._send(url, action, batch)
                finally:
                    self._cond.acquire()
                    self._busy -= 1
                    if self._pending() <= MAX_BACKLOG:
                        self._room.set()
                    self._cond.notify_all()

    def _send(self, url: str, action: Action, batch: list[_Entry]) -> None:
        """One batch call; failed entries are retried (re-queued) or reported."""
        queue = batch[0].message.queue
        handles = [e.message.receipt_handle for e in batch]
        try:
            if action is None:
                failures = operations.delete(queue, handles)
            else:
                failures = operations.change_visibility(queue, handles, action)
        except TransientError as exc:
            self._retry(url, action, batch, str(exc))
            return
        except QueueDoesNotExist:
            # Deleted meanwhile (a reply queue its owner closed): its messages went with it.
            logger.debug(
                "%s %d message(s) of queue %s: the queue is gone, and its messages with it",
                _verb(action),
                len(batch),
                queue.name,
                extra=batch_log_fields([e.message for e in batch], _operation(action)),
            )
            if action is None:
                self._report_deleted([e.message for e in batch])
            return
        except SQSBusError as exc:
            self._give_up(action, batch, str(exc))
            return
        if action is None and self.on_deleted is not None:
            refused = {failure.index for failure in failures}
            self._report_deleted([e.message for i, e in enumerate(batch) if i not in refused])
        retry: list[_Entry] = []
        for failure in failures:
            entry = batch[failure.index]
            if failure.stale_receipt:
                logger.info(
                    "%s message %s of queue %s: receipt handle expired (%s); SQS delivers "
                    "it again or already has",
                    _verb(action),
                    entry.message.message_id,
                    queue.name,
                    failure.code,
                    extra=entry.message.log_fields(_operation(action)),
                )
            elif not failure.sender_fault:
                retry.append(entry)
            else:
                self._give_up(action, [entry], f"{failure.code}: {failure.message}")
        if retry:
            self._retry(url, action, retry, "SQS asked to retry some entries")

    def _report_deleted(self, messages: list[Received]) -> None:
        if not messages or self.on_deleted is None:
            return
        try:
            self.on_deleted(messages)
        except Exception:  # must not stop the acker: the deletes themselves succeeded
            logger.exception(
                "after deleting %d message(s)",
                len(messages),
                extra=batch_log_fields(messages, "delete"),
            )

    def _retry(self, url: str, action: Action, entries: list[_Entry], reason: str) -> None:
        # An entry's ``attempts`` counts its failures before this one.
        again: list[_Entry] = []
        spent: list[_Entry] = []
        for entry in entries:
            (spent if SQS_BATCH_RETRY.exhausted(entry.attempts + 1) else again).append(entry)
        self._give_up(action, spent, reason)
        if not again:
            return
        delay = SQS_BATCH_RETRY.delay(again[0].attempts + 1)
        logger.warning(
            "could not %s %d message(s) of queue %s (%s); retrying in %.1fs",
            _verb(action),
            len(again),
            again[0].message.queue.name,
            reason,
            delay,
            extra=batch_log_fields(
                [e.message for e in again], _operation(action), attempt=again[0].attempts + 1
            ),
        )
        with self._cond:
            lane = self._lanes.setdefault((url, action), _Lane())
            for entry in again:
                entry.attempts += 1
                entry.due = time.monotonic() + delay
                lane.entries.append(entry)
            self._count += len(again)
            self._cond.notify_all()

    def _give_up(self, action: Action, entries: list[_Entry], reason: str) -> None:
        if not entries:
            return
        self.failed += len(entries)
        logger.error(
            "could not %s message(s) %s of queue %s: %s; they will be delivered again "
            "after their visibility timeout",
            _verb(action),
            ", ".join(e.message.message_id for e in entries),
            entries[0].message.queue.name,
            reason,
            extra=batch_log_fields(
                [e.message for e in entries], _operation(action), attempt=entries[0].attempts + 1
            ),
        )


def _operation(action: Action) -> str:
    """The log operation (:mod:`sqsbus.log_fields`) of a batched settle."""
    return "delete" if action is None else "change-visibility"


#: The batch call of an action: deletes (True) or visibility changes (False).
_METHODS: Final = {True: "DeleteMessageBatch", False: "ChangeMessageVisibilityBatch"}


def _verb(action: Action) -> str:
    return "delete" if action is None else f"set visibility {action}s of"
