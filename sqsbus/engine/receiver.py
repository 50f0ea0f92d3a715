"""Background long-poll receivers feeding a bounded buffer, with a wake-up fd.

One :class:`Receiver` thread per consumed queue long-polls SQS and puts what it
gets into an :class:`Inbox`.  The inbox is bounded by the consumer's demand
(its prefetch allowance), so nothing is fetched that the application could not
take.  Each put signals a :class:`Waker`, a pipe whose read end an event loop
(Kombu's hub) watches, so the consuming thread never blocks on HTTP.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from sqsbus.backoff import RECEIVE_RETRY
from sqsbus.engine.messages import Received
from sqsbus.errors import ReceiveFailed, SQSBusError, TransientError
from sqsbus.limits import MAX_RECEIVE_MESSAGES
from sqsbus.log_fields import message_fields
from sqsbus.queues import QueueRef

logger = logging.getLogger(__name__)

#: How many messages may wait in a buffer whose consumer has no prefetch limit.
UNLIMITED_BUFFER: Final = 10
#: Room for this many messages is worth a receive while the buffer is not empty.
REFILL_BATCH: Final = 10


class Waker:
    """A socket pair: :meth:`wake` from any thread makes :meth:`fileno` readable.

    A socket, not a pipe, so that ``select`` and event loops take it on every platform
    (Windows selects on sockets only).
    """

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._lock = threading.Lock()
        self._pending = False
        self._closed = False

    def fileno(self) -> int:
        return self._read.fileno()

    @property
    def closed(self) -> bool:
        return self._closed

    def wake(self) -> None:
        with self._lock:
            if self._pending or self._closed:
                return
            self._pending = True
            with contextlib.suppress(BlockingIOError):  # full buffer: already readable
                self._write.send(b"\0")

    def clear(self) -> None:
        with self._lock:
            if self._closed or not self._pending:
                return  # nothing was written since the last clear
            self._pending = False
            try:
                while self._read.recv(512):
                    pass
            except BlockingIOError:
                pass

    def wait(self, timeout: float | None) -> bool:
        """Block until woken or ``timeout``; True if woken."""
        if self._closed:
            return False
        readable, _, _ = select.select([self._read], [], [], timeout)
        return bool(readable)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._read.close()
            self._write.close()


Demand = Callable[[], int | None]


class Inbox:
    """Messages received for one consumer (a Kombu channel), bounded by its demand.

    ``demand()`` returns how many more messages the consumer may hold
    (``None`` for no limit).  Receivers fetch only while the buffer is below it.
    """

    def __init__(self, waker: Waker, demand: Demand) -> None:
        self.waker = waker
        self._demand = demand
        self._items: deque[Received] = deque()
        #: Buffered messages of a band above 0 (when none, take() is plain FIFO).
        self._prioritized = 0
        self._errors: deque[BaseException] = deque()
        self._cond = threading.Condition()
        #: Receivers waiting in :meth:`wait_for_room`.
        self._waiting = 0

    def room(self) -> int:
        demand = self._demand()
        limit = UNLIMITED_BUFFER if demand is None else demand
        with self._cond:
            return max(0, limit - len(self._items))

    def wait_for_room(self, stopped: threading.Event, timeout: float = 1.0) -> int:
        """Wait (up to ``timeout``) until a receive is worth making; return the room (0: not).

        While the buffer still holds messages, wait until there is room for a fair batch
        (half the limit, up to 10): receiving one message each time one is acked would
        cost a request per message.  An empty buffer takes whatever room there is.
        """
        with self._cond:
            room = self._room_worth_receiving()
            if room or stopped.is_set():
                return room
            self._waiting += 1
            try:
                self._cond.wait(timeout)
            finally:
                self._waiting -= 1
            return self._room_worth_receiving()

    def _room_worth_receiving(self) -> int:
        """With ``_cond`` held (it runs at every message taken): asks ``demand`` once."""
        demand = self._demand()
        buffered = len(self._items)
        if demand is None:
            limit, room = UNLIMITED_BUFFER, max(0, UNLIMITED_BUFFER - buffered)
        else:
            limit, room = demand + buffered, max(0, demand - buffered)
        if not buffered:
            return room
        return room if room >= min(REFILL_BATCH, max(1, limit // 2)) else 0

    def notify(self) -> int:
        """Tell waiting receivers that demand may have grown (after an ack); return how
        many messages are buffered."""
        with self._cond:
            self._wake_receivers()
            return len(self._items)

    def wake_all(self) -> None:
        """Wake every waiting receiver (one is stopping)."""
        with self._cond:
            self._cond.notify_all()

    def _wake_receivers(self) -> None:
        """With ``_cond`` held: wake waiting receivers once a receive is worth making
        (not at every ack: each wake-up costs a thread switch)."""
        if self._waiting and self._room_worth_receiving():
            self._cond.notify_all()

    def put(self, messages: list[Received]) -> None:
        if not messages:
            return
        with self._cond:
            self._items.extend(messages)
            self._prioritized += sum(1 for m in messages if m.priority)
        self.waker.wake()

    def put_back(self, message: Received) -> None:
        """Buffer a message given back by the application, ahead of the others."""
        with self._cond:
            self._items.appendleft(message)
            self._prioritized += 1 if message.priority else 0
        self.waker.wake()

    def report(self, error: BaseException) -> None:
        with self._cond:
            self._errors.append(error)
        self.waker.wake()

    def raise_error(self) -> None:
        """Raise the oldest error a receiver reported, if any."""
        with self._cond:
            error = self._errors.popleft() if self._errors else None
        if error is not None:
            raise error

    def take(self, limit: int | None) -> list[Received]:
        """Remove up to ``limit`` messages (all when ``None``): highest priority band
        first, in arrival order within a band."""
        with self._cond:
            count = len(self._items) if limit is None else min(limit, len(self._items))
            taken = [self._pop_next() for _ in range(count)]
            if taken:
                self._wake_receivers()
        return taken

    def _pop_next(self) -> Received:
        if not self._prioritized:
            return self._items.popleft()
        index = max(range(len(self._items)), key=lambda i: (self._items[i].priority, -i))
        message = self._items[index]
        del self._items[index]
        if message.priority:
            self._prioritized -= 1
        return message

    def take_named(self, name: str) -> Received | None:
        """Remove and return the oldest buffered message consumed under ``name``."""
        return self.take_first(lambda message: message.name == name)

    def take_first(self, accept: Callable[[Received], bool]) -> Received | None:
        """Remove and return the first buffered message ``accept`` takes: highest priority
        band first, in arrival order within a band."""
        with self._cond:
            candidates = [i for i, m in enumerate(self._items) if accept(m)]
            if not candidates:
                return None
            index = max(candidates, key=lambda i: (self._items[i].priority, -i))
            message = self._items[index]
            del self._items[index]
            if message.priority:
                self._prioritized -= 1
            self._wake_receivers()
            return message

    def remove(self, name: str) -> list[Received]:
        """Remove and return every buffered message consumed under ``name``."""
        with self._cond:
            kept = deque(m for m in self._items if m.name != name)
            removed = [m for m in self._items if m.name == name]
            self._items = kept
            self._prioritized = sum(1 for m in kept if m.priority)
            self._wake_receivers()
        return removed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def depths(self) -> dict[str, int]:
        """Buffered messages per SQS queue name."""
        with self._cond:
            items = list(self._items)
        counts: dict[str, int] = {}
        for message in items:
            counts[message.queue.name] = counts.get(message.queue.name, 0) + 1
        return counts


class BandGate:
    """Strict priority between the receivers of one queue's priority bands.

    A band's receiver polls only while no higher band is *busy*: a band is busy
    until its first receive, and after a receive that came back full (more is
    probably waiting); idle after one that came back short, a failure, or its
    receiver stopping.  Busy receivers poll without waiting, so this is quick.
    """

    def __init__(self, bands: Iterable[int] = ()) -> None:
        self._busy: dict[int, bool] = dict.fromkeys(bands, True)
        self._lock = threading.Lock()

    def report(self, band: int, busy: bool) -> None:
        with self._lock:
            self._busy[band] = busy

    def higher_busy(self, band: int) -> bool:
        with self._lock:
            return any(busy for other, busy in self._busy.items() if other > band)


#: Seconds a lower band's receiver waits before looking at the higher bands again.
BAND_YIELD_SECONDS: Final = 0.05


@dataclass(frozen=True)
class PollSettings:
    """How a receiver polls its queue."""

    #: Long-poll duration of each receive (0-20 s).
    wait_time_seconds: int
    #: Seconds to wait after an empty receive.
    polling_interval: float
    #: After a receive that got some messages but fewer than it asked for, wait this long
    #: so that the next one finds more (fewer requests, a little more latency).
    coalesce_seconds: float = 0.0


class ReceiverOwner(Protocol):
    """What a :class:`Receiver` works for (:class:`sqsbus.engine.consumer.Consumer`)."""

    inbox: Inbox

    @property
    def poll(self) -> PollSettings: ...

    def receive(
        self, queue: QueueRef, name: str, priority: int, max_messages: int, wait: int
    ) -> list[Received]:
        """One receive, its messages held under a lease."""

    def on_received(self, messages: list[Received]) -> list[Received]:
        """Prepare just received messages (receiver thread); return those to buffer.

        If this raises, nothing is buffered: SQS delivers the messages again later."""

    def release(self, messages: list[Received]) -> None:
        """Give back messages received while stopping."""

    def acks_room(self, timeout: float) -> bool:
        """Wait (up to ``timeout``) while settled messages' deletes are backlogged; False if
        they still are. Nothing more is received until they are sent (bounds memory, keeps
        deletes ahead of lease expiry)."""


class Receiver:
    """A thread long-polling one SQS queue (one priority band of a consumed name) into its
    owner's :class:`Inbox`."""

    def __init__(
        self,
        owner: ReceiverOwner,
        queue: QueueRef,
        name: str,
        priority: int = 0,
        gate: BandGate | None = None,
    ) -> None:
        self.owner = owner
        self.inbox = owner.inbox
        self.queue = queue
        self.name = name
        #: Priority band of this queue, and the gate it shares with the other bands.
        self.priority = priority
        self.gate = gate
        #: A gated receiver whose last receive came back full (or that has not received
        #: yet) polls without waiting next, so lower bands learn quickly when it is drained.
        self._busy = gate is not None
        self.stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sqsbus-receiver-{queue.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.inbox.wake_all()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _receive(self, room: int) -> list[Received]:
        wait = 0 if self._busy else self.owner.poll.wait_time_seconds
        messages = self.owner.receive(self.queue, self.name, self.priority, room, wait)
        if self.gate is not None:
            self._busy = len(messages) >= min(room, MAX_RECEIVE_MESSAGES)
            self.gate.report(self.priority, self._busy)
        if messages and not self.stopped.is_set():
            messages = self.owner.on_received(messages)
        return messages

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            if self.gate is not None:
                self.gate.report(self.priority, False)

    def _loop(self) -> None:
        poll = self.owner.poll
        failures = 0
        while not self.stopped.is_set():
            if self.gate is not None and self.gate.higher_busy(self.priority):
                self.stopped.wait(BAND_YIELD_SECONDS)
                continue
            if not self.owner.acks_room(1.0):
                continue
            room = self.inbox.wait_for_room(self.stopped)
            if not room or self.stopped.is_set():
                continue
            try:
                messages = self._receive(room)
            except SQSBusError as exc:
                if self.stopped.is_set():
                    return
                if self.gate is not None:
                    self._busy = False
                    self.gate.report(self.priority, False)
                failures += 1
                if RECEIVE_RETRY.exhausted(failures) or not isinstance(exc, TransientError):
                    logger.error(
                        "receiving from queue %s failed: %s",
                        self.queue.name,
                        exc,
                        extra=message_fields("receive", queue=self.queue.name),
                    )
                    self.inbox.report(
                        ReceiveFailed(f"receiving from queue {self.queue.name!r}: {exc}")
                    )
                    self.stopped.set()
                    return
                delay = RECEIVE_RETRY.delay(failures)
                logger.warning(
                    "receiving from queue %s failed (%s); retrying in %.1fs",
                    self.queue.name,
                    exc,
                    delay,
                    extra=message_fields("receive", queue=self.queue.name, attempt=failures),
                )
                self.stopped.wait(delay)
                continue
            except Exception as exc:  # a bug must not kill consumption silently
                logger.exception(
                    "receiver for queue %s crashed",
                    self.queue.name,
                    extra=message_fields("receive", queue=self.queue.name),
                )
                self.inbox.report(ReceiveFailed(f"receiver for queue {self.queue.name!r}: {exc!r}"))
                self.stopped.set()
                return
            failures = 0
            if self.stopped.is_set():
                self.owner.release(messages)
                return
            self.inbox.put(messages)
            if not messages and poll.polling_interval:
                self.stopped.wait(poll.polling_interval)
            elif messages and len(messages) < room and poll.coalesce_seconds:
                self.stopped.wait(poll.coalesce_seconds)
