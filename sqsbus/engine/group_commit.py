"""Group commit of sends into ``SendMessageBatch``.

Publishers that send to the same queue at the same time share batch calls, and
each returns only once SQS accepted its own entry — no lingering, no added
latency for a lone publisher:

* a publisher appends its entry to the queue's :class:`_Lane`;
* if no batch is in flight, it sends the oldest pending entries (up to 10 and
  1 MiB) itself — after waiting up to 2 ms for the publishers of the last round
  to come back, ending the wait as soon as they have (a lone publisher never
  waits); otherwise it waits, and entries pile up for the next batch;
* a full batch may go while others are in flight (up to
  ``MAX_IN_FLIGHT``), except on FIFO queues, where one batch at a time keeps
  the order of each message group;
* entries SQS refuses for transient reasons are retried with backoff; other
  refusals are raised to that entry's publisher only.

With ``publish_linger_ms`` (:meth:`GroupCommit.send_later`) the publisher returns
at once; a flusher thread hands due batches to a few sender threads (so full
batches go ``MAX_IN_FLIGHT`` at a time), and a publisher waits for room while
``MAX_PENDING`` entries of its queue are waiting.  An *owned* lingering message (one
published inside :func:`~sqsbus.engine.publish_batch.batched_publishing`) hands its outcome
to its :class:`Ticket` instead of the log; :meth:`GroupCommit.settle` sends such messages
now and waits for them.

Lanes are shared by every connection in the process that uses the same queue
with the same endpoint and credentials (:attr:`QueueRef.scope`).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any, Final

from sqsbus.aws import call
from sqsbus.backoff import SQS_BATCH_RETRY
from sqsbus.errors import DeliveryError, SQSBusError, TransientError
from sqsbus.forks import reset_in_child
from sqsbus.limits import MAX_BATCH_BYTES, MAX_BATCH_ENTRIES
from sqsbus.log_fields import message_fields
from sqsbus.queues import QueueRef
from sqsbus.telemetry import queue as queue_metrics

logger = logging.getLogger(__name__)

#: Batches that may be in flight per standard queue when full batches are waiting.
MAX_IN_FLIGHT: Final = 4
#: Seconds a publisher waits at most for others to join its batch, and only when
#: fewer are pending than published in the last round (a lone publisher never waits).
GATHER_SECONDS: Final = 0.002
#: Threads sending lingering batches (for all queues).
LINGER_SENDERS: Final = 8
#: Entries a queue's lane holds at most: beyond, lingering publishes wait for room
#: (memory stays bounded when producers outpace SQS).
MAX_PENDING: Final = 1000


@dataclass
class _Pending:
    params: dict[str, Any]
    size: int
    attempts: int = 0
    not_before: float = 0.0
    done: bool = False
    message_id: str = ""
    error: BaseException | None = None
    #: Published with ``publish_linger_ms``: nobody waits for it.
    lingering: bool = False
    #: Its outcome is collected (by a publish batch): a failure is not logged as lost.
    owned: bool = False
    #: Called (by a lingering message) once SQS refused it for good, e.g. to delete its
    #: offloaded payload.
    on_refused: Callable[[], object] | None = None
    #: When the application published it (monotonic), for ``sqsbus.publish.duration``;
    #: None for copies (dead letters, hops, parked messages), which are not counted there.
    published_at: float | None = None


@dataclass(frozen=True)
class Ticket:
    """A message queued by :meth:`GroupCommit.send_later`, whose outcome can be read."""

    lane: _Lane
    entry: _Pending

    @property
    def done(self) -> bool:
        return self.entry.done

    @property
    def error(self) -> BaseException | None:
        return self.entry.error

    @property
    def message_id(self) -> str:
        """The id SQS gave the message ("" until it accepted it)."""
        return self.entry.message_id


@dataclass
class _Lane:
    fifo: bool
    queue: QueueRef
    cond: threading.Condition = field(init=False)
    pending: deque[_Pending] = field(default_factory=deque)
    in_flight: int = 0
    #: Confirmed publishers inside :meth:`GroupCommit.send` now.
    publishers: int = 0
    #: Most publishers seen at once since the last batch was taken.
    peak: int = 0
    #: Publishers of the last round: how many are likely to join the next batch.
    expected: int = 1
    #: A publisher is waiting for the others to join its batch.
    gathering: bool = False
    #: Wakes the gathering publisher once the expected ones are pending.
    gathered: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        lock = threading.Lock()
        self.cond = threading.Condition(lock)
        self.gathered = threading.Condition(lock)

    def should_gather(self) -> bool:
        """With ``cond`` held: whether to wait for more publishers before sending."""
        return self.in_flight == 0 and len(self.pending) < min(self.expected, MAX_BATCH_ENTRIES)

    def wait_time(self, now: float) -> float | None:
        """Seconds until a pending entry becomes ready (None: wait for a notify)."""
        waits = [p.not_before - now for p in self.pending if p.not_before > now]
        return min(waits) if waits else None

    def may_send(self, now: float) -> bool:
        ready = sum(1 for p in self.pending if p.not_before <= now)
        if not ready:
            # Lingering entries go early once a full batch is waiting.
            ready = len(self.pending) if len(self.pending) >= MAX_BATCH_ENTRIES else 0
        if not ready:
            return False
        if self.in_flight == 0:
            return True
        return not self.fifo and self.in_flight < MAX_IN_FLIGHT and ready >= MAX_BATCH_ENTRIES

    def take(self, now: float) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        kept: deque[_Pending] = deque()
        while self.pending:
            entry = self.pending.popleft()
            fits = len(batch) < MAX_BATCH_ENTRIES and size + entry.size <= MAX_BATCH_BYTES
            ready = entry.not_before <= now or (entry.lingering and entry.attempts == 0)
            if ready and fits and (not self.fifo or not kept):
                batch.append(entry)
                size += entry.size
            else:
                kept.append(entry)
        self.pending = kept
        self.expected, self.peak = self.peak, self.publishers
        return batch


class GroupCommit:
    """Shares ``SendMessageBatch`` calls among concurrent publishers (thread-safe)."""

    def __init__(self) -> None:
        self._lanes: dict[tuple[Any, ...], _Lane] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        #: Lingered messages given up after send failures (each logged as an error).
        self.lost = 0

    def _lane(self, queue: QueueRef) -> _Lane:
        key = (queue.url, *queue.scope)
        with self._lock:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane(fifo=queue.is_fifo, queue=queue)
            return lane

    def send(
        self,
        queue: QueueRef,
        params: dict[str, Any],
        size: int,
        *,
        published_at: float | None = None,
    ) -> str:
        """Send one message (``SendMessage`` parameters without ``QueueUrl``); return its id.

        ``published_at`` (monotonic): an application's publish made then, counted in the
        metrics once SQS accepted it."""
        lane = self._lane(queue)
        entry = _Pending(params=params, size=size, published_at=published_at)
        with lane.cond:
            lane.pending.append(entry)
            lane.publishers += 1
            lane.peak = max(lane.peak, lane.publishers)
            if lane.gathering and len(lane.pending) >= min(lane.expected, MAX_BATCH_ENTRIES):
                lane.gathered.notify()
            try:
                gathered = False
                while not entry.done:
                    if lane.gathering:
                        lane.cond.wait()  # the gathering publisher sends for us
                        continue
                    if not gathered and lane.should_gather():
                        # Others published with us last time: give them a moment to join.
                        gathered = lane.gathering = True
                        try:
                            lane.gathered.wait(GATHER_SECONDS)
                        except BaseException:  # e.g. KeyboardInterrupt: the others go on
                            lane.gathering = False
                            lane.cond.notify_all()
                            raise
                        lane.gathering = False
                        if not self._pump(lane):
                            lane.cond.notify_all()  # nothing sent: the others decide again
                        continue
                    if not self._pump(lane):
                        lane.cond.wait(lane.wait_time(time.monotonic()))
            finally:
                lane.publishers -= 1
        if entry.error is not None:
            raise entry.error
        return entry.message_id

    def send_later(
        self,
        queue: QueueRef,
        params: dict[str, Any],
        size: int,
        linger: float,
        *,
        owned: bool = False,
        on_refused: Callable[[], object] | None = None,
        published_at: float | None = None,
    ) -> Ticket:
        """Queue one message to be sent within ``linger`` seconds, without waiting.

        Unless ``owned`` (the caller reads the outcome from the returned ticket, see
        :meth:`settle`), errors can no longer reach the caller: a message that cannot be
        sent after the retries is logged as an error and counted in :attr:`lost`.
        ``on_refused`` runs (on a sender thread) if SQS refuses the message for good;
        ``published_at`` as for :meth:`send`.
        """
        lane = self._lane(queue)
        entry = _Pending(
            params=params,
            size=size,
            not_before=time.monotonic() + linger,
            published_at=published_at,
        )
        entry.lingering, entry.owned, entry.on_refused = True, owned, on_refused
        self._start_flusher()
        with lane.cond:
            while len(lane.pending) >= MAX_PENDING:
                self._wake.set()  # full batches are waiting: the flusher sends them
                lane.cond.wait(0.1)
            lane.pending.append(entry)
            lane.cond.notify_all()
        self._wake.set()
        return Ticket(lane, entry)

    def settle(self, tickets: Sequence[Ticket], deadline: float) -> bool:
        """Send the messages of ``tickets`` now (from this thread if no sender is free) and
        wait until each is settled; False if some were not by ``deadline`` (monotonic)."""
        by_lane: dict[int, tuple[_Lane, list[_Pending]]] = {}
        for ticket in tickets:
            by_lane.setdefault(id(ticket.lane), (ticket.lane, []))[1].append(ticket.entry)
        for lane, entries in by_lane.values():
            with lane.cond:
                for entry in entries:
                    if not entry.done and entry.attempts == 0:
                        entry.not_before = 0.0
                while not all(entry.done for entry in entries):
                    if time.monotonic() >= deadline:
                        return False
                    if not self._pump(lane):
                        lane.cond.wait(min(0.1, lane.wait_time(time.monotonic()) or 0.1))
        return True

    def withdraw(self, tickets: Sequence[Ticket]) -> None:
        """Take back the messages of ``tickets`` that no batch took yet: they are not sent
        (settled with an error saying so); those in flight or answered are left alone."""
        for ticket in tickets:
            lane, entry = ticket.lane, ticket.entry
            with lane.cond:
                if entry.done or not any(pending is entry for pending in lane.pending):
                    continue
                lane.pending = deque(pending for pending in lane.pending if pending is not entry)
                entry.error = SQSBusError(
                    f"withdrawn before it was sent to queue {lane.queue.name!r}"
                )
                entry.done = True
                lane.cond.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Send every lingering message now; True if all were settled in time."""
        deadline = time.monotonic() + timeout
        for lane in list(self._lanes.values()):
            with lane.cond:
                for entry in lane.pending:
                    if entry.lingering and entry.attempts == 0:
                        entry.not_before = 0.0
                while any(e.lingering for e in lane.pending) or lane.in_flight:
                    if time.monotonic() >= deadline:
                        return False
                    if not self._pump(lane):
                        lane.cond.wait(min(0.1, lane.wait_time(time.monotonic()) or 0.1))
        return True

    def _pump(self, lane: _Lane) -> bool:
        """With ``lane.cond`` held: send one batch if the lane allows; True if sent."""
        batch = self._take_batch(lane)
        if batch is None:
            return False
        lane.cond.release()
        try:
            self._send_and_settle(lane, batch)
        finally:
            lane.cond.acquire()
        return True

    def _take_batch(self, lane: _Lane) -> list[_Pending] | None:
        """With ``lane.cond`` held: the next batch if the lane allows one (then in flight)."""
        now = time.monotonic()
        if not lane.may_send(now):
            return None
        batch = lane.take(now)
        lane.in_flight += 1
        return batch

    def _send_and_settle(self, lane: _Lane, batch: list[_Pending]) -> None:
        """Without ``lane.cond``: send a batch taken by :meth:`_take_batch`, then settle it.

        Interrupted (e.g. Ctrl-C in the thread sending it), the batch is settled as
        unconfirmed before the interruption goes on: the lane never stays busy.
        """
        interrupted: BaseException | None = None
        try:
            retry = self._send_batch(lane.queue, batch)
        except Exception as exc:  # unforeseen: still answer every publisher of the batch
            for entry in batch:
                entry.error, entry.done = exc, True
            retry = []
        except BaseException as exc:
            interrupted, retry = exc, []
            for entry in batch:
                entry.error = TransientError(
                    f"sending to queue {lane.queue.name!r} was interrupted before SQS answered"
                )
                entry.done = True
        with lane.cond:
            lane.in_flight -= 1
            lane.pending.extendleft(reversed(retry))
            for entry in batch:
                if entry.done and entry.lingering and entry.error is not None and not entry.owned:
                    self._report_lost(lane.queue, entry)
            lane.cond.notify_all()
        for entry in batch:
            if entry.on_refused is not None and _refused(entry):
                try:
                    entry.on_refused()
                except Exception:  # cleanup only: the refusal itself is reported already
                    logger.exception(
                        "after SQS refused a message for queue %s",
                        lane.queue.name,
                        extra=message_fields("send", queue=lane.queue.name),
                    )
        if any(entry.lingering for entry in batch):
            self._wake.set()  # the flusher may send the next lingering batch now
        if interrupted is not None:
            raise interrupted

    def _report_lost(self, queue: QueueRef, entry: _Pending) -> None:
        self.lost += 1
        queue_metrics(queue.name).lingering_lost()
        if isinstance(entry.error, TransientError):
            # No answer (or only "retry") to the last attempt: SQS may have stored it anyway.
            outcome = f"was not confirmed after {entry.attempts} attempts and may be lost"
        else:
            outcome = "was refused and is lost"
        logger.error(
            "a message published with publish_linger_ms to queue %s %s: %s",
            queue.name,
            outcome,
            entry.error,
            extra=message_fields("send", queue=queue.name, attempt=entry.attempts),
        )

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(
                    target=self._flush_forever, name="sqsbus-linger", daemon=True
                )
                self._flusher.start()

    def _flush_forever(self) -> None:
        """Background scheduler of lingering messages whose time has come: their batches go
        to the sender threads, so full batches of a standard queue go up to
        ``MAX_IN_FLIGHT`` at once."""
        outbox: SimpleQueue[tuple[_Lane, list[_Pending]]] = SimpleQueue()
        for number in range(LINGER_SENDERS):
            threading.Thread(
                target=self._send_forever,
                args=(outbox,),
                name=f"sqsbus-linger-send-{number}",
                daemon=True,
            ).start()
        while True:
            timeout: float | None = None
            for lane in list(self._lanes.values()):
                with lane.cond:
                    while any(e.lingering for e in lane.pending):
                        batch = self._take_batch(lane)
                        if batch is None:
                            break
                        outbox.put((lane, batch))
                    if any(e.lingering for e in lane.pending):
                        wait = lane.wait_time(time.monotonic())
                        wait = 0.05 if wait is None else wait
                        timeout = wait if timeout is None else min(timeout, wait)
            self._wake.wait(timeout)
            self._wake.clear()

    def _send_forever(self, outbox: SimpleQueue[tuple[_Lane, list[_Pending]]]) -> None:
        while True:
            lane, batch = outbox.get()
            self._send_and_settle(lane, batch)

    def _send_batch(self, queue: QueueRef, batch: list[_Pending]) -> list[_Pending]:
        """One ``SendMessageBatch``; resolves entries, returns those to retry."""
        entries = [{"Id": str(index), **p.params} for index, p in enumerate(batch)]
        metrics = queue_metrics(queue.name)
        metrics.batch("SendMessageBatch", len(entries))
        try:
            answer = call(
                queue.client,
                "send_message_batch",
                f"send to queue {queue.name!r}",
                QueueUrl=queue.url,
                Entries=entries,
            )
        except TransientError as exc:
            return self._retry_or_fail(queue, batch, exc)
        except SQSBusError as exc:
            for pending in batch:
                pending.error, pending.done = exc, True
            return []
        confirmed = time.monotonic()
        for ok in answer.get("Successful") or []:
            pending = batch[int(ok["Id"])]
            pending.message_id, pending.done = str(ok.get("MessageId", "")), True
            if pending.published_at is not None:
                metrics.publish_confirmed(confirmed - pending.published_at)
        retry: list[_Pending] = []
        for failed in answer.get("Failed") or []:
            pending = batch[int(failed["Id"])]
            reason = f"{failed.get('Code', '')}: {failed.get('Message', '')}"
            if failed.get("SenderFault"):
                pending.error = DeliveryError(
                    f"SQS refused a message for queue {queue.name!r} ({reason}); nothing was sent"
                )
                pending.done = True
            else:
                retry += self._retry_or_fail(queue, [pending], TransientError(reason))
        for pending in batch:
            if not pending.done and pending not in retry:
                pending.error = DeliveryError(
                    f"SQS did not report on a message for queue {queue.name!r}; retry the publish"
                )
                pending.done = True
        return retry

    def _retry_or_fail(
        self, queue: QueueRef, batch: list[_Pending], exc: BaseException
    ) -> list[_Pending]:
        retry = []
        for pending in batch:
            pending.attempts += 1
            if SQS_BATCH_RETRY.exhausted(pending.attempts):
                pending.error, pending.done = exc, True
            else:
                pending.not_before = time.monotonic() + SQS_BATCH_RETRY.delay(pending.attempts)
                retry.append(pending)
        if retry:
            logger.warning(
                "sending %d message(s) to queue %s failed (%s); retrying",
                len(retry),
                queue.name,
                exc,
                extra=message_fields("send", queue=queue.name, attempt=retry[0].attempts),
            )
        return retry


def _refused(entry: _Pending) -> bool:
    """SQS answered that it will not take ``entry`` (not: no answer, or "retry")."""
    return isinstance(entry.error, SQSBusError) and not isinstance(entry.error, TransientError)


#: The process-wide group commit shared by every connection.
GROUP_COMMIT: Final = GroupCommit()


def _after_fork_in_child() -> None:
    """Lanes belong to the parent's threads; a forked child starts with none."""
    GROUP_COMMIT._lanes = {}
    GROUP_COMMIT._lock = threading.Lock()
    GROUP_COMMIT._wake = threading.Event()
    GROUP_COMMIT._flusher = None


reset_in_child(_after_fork_in_child)
atexit.register(GROUP_COMMIT.flush)
