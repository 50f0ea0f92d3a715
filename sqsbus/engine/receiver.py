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
import os
import random
import select
import threading
from collections import deque
from collections.abc import Callable
from typing import Final

from sqsbus.engine import operations
from sqsbus.engine.leases import LeaseKeeper
from sqsbus.engine.messages import Received
from sqsbus.errors import SQSBusError, TransientError
from sqsbus.queues import QueueRef

logger = logging.getLogger(__name__)

#: How many messages may wait in a buffer whose consumer has no prefetch limit.
UNLIMITED_BUFFER: Final = 10
#: Consecutive failed receives tolerated (with backoff) before the error is raised
#: to the consuming thread, which makes Kombu/Celery reconnect and log it.
FAILURES_BEFORE_RAISE: Final = 3
MAX_BACKOFF_SECONDS: Final = 10.0


class ReceiveFailed(TransientError):
    """A receiver could not receive from its queue; reconnecting may help."""


class Waker:
    """A self-pipe: :meth:`wake` from any thread makes :meth:`fileno` readable."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._lock = threading.Lock()
        self._pending = False
        self._closed = False

    def fileno(self) -> int:
        return self._read

    @property
    def closed(self) -> bool:
        return self._closed

    def wake(self) -> None:
        with self._lock:
            if self._pending or self._closed:
                return
            self._pending = True
            with contextlib.suppress(BlockingIOError):  # full pipe: already readable
                os.write(self._write, b"\0")

    def clear(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending = False
            try:
                while os.read(self._read, 512):
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
            os.close(self._read)
            os.close(self._write)


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
        self._errors: deque[BaseException] = deque()
        self._cond = threading.Condition()

    def room(self) -> int:
        demand = self._demand()
        limit = UNLIMITED_BUFFER if demand is None else demand
        with self._cond:
            return max(0, limit - len(self._items))

    def wait_for_room(self, stopped: threading.Event, timeout: float = 1.0) -> int:
        """Wait (up to ``timeout``) until there is room; return it (0 if none)."""
        with self._cond:
            room = self.room()
            if room or stopped.is_set():
                return room
            self._cond.wait(timeout)
        return self.room()

    def notify(self) -> None:
        """Tell waiting receivers that demand may have grown (after an ack)."""
        with self._cond:
            self._cond.notify_all()

    def put(self, messages: list[Received]) -> None:
        if not messages:
            return
        with self._cond:
            self._items.extend(messages)
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
        """Remove up to ``limit`` messages (all when ``None``) in arrival order."""
        with self._cond:
            count = len(self._items) if limit is None else min(limit, len(self._items))
            taken = [self._items.popleft() for _ in range(count)]
            if taken:
                self._cond.notify_all()
        return taken

    def take_named(self, name: str) -> Received | None:
        """Remove and return the oldest buffered message consumed under ``name``."""
        with self._cond:
            for index, message in enumerate(self._items):
                if message.name == name:
                    del self._items[index]
                    self._cond.notify_all()
                    return message
        return None

    def remove(self, name: str) -> list[Received]:
        """Remove and return every buffered message consumed under ``name``."""
        with self._cond:
            kept = deque(m for m in self._items if m.name != name)
            removed = [m for m in self._items if m.name == name]
            self._items = kept
            self._cond.notify_all()
        return removed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Receiver:
    """A thread long-polling one queue into an :class:`Inbox`."""

    def __init__(
        self,
        inbox: Inbox,
        queue: QueueRef,
        name: str,
        *,
        wait_time_seconds: int,
        polling_interval: float,
        coalesce_seconds: float = 0.0,
        leases: LeaseKeeper | None = None,
        release: Callable[[list[Received]], None] = operations.release,
        on_received: Callable[[list[Received]], list[Received]] | None = None,
    ) -> None:
        self.inbox = inbox
        self.queue = queue
        self.name = name
        self.wait_time_seconds = wait_time_seconds
        self.polling_interval = polling_interval
        #: After a receive that got some messages but fewer than it asked for, wait
        #: this long so that the next one finds more (fewer requests, more latency).
        self.coalesce_seconds = coalesce_seconds
        #: Receives ask for this keeper's lease and hand it what they buffer.
        self.leases = leases
        self.release = release
        #: Called in the receiver thread before buffering (e.g. delete for no-ack);
        #: returns the messages to buffer.
        self.on_received = on_received
        self.stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sqsbus-receiver-{queue.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.inbox.notify()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _receive(self, room: int) -> list[Received]:
        messages = operations.receive(
            self.queue,
            self.name,
            max_messages=room,
            wait_time_seconds=self.wait_time_seconds,
            visibility_timeout=None if self.leases is None else self.leases.lease_seconds,
        )
        if self.leases is not None:
            self.leases.hold(messages)
        if self.on_received is not None and messages and not self.stopped.is_set():
            # If this fails (e.g. the no-ack delete), the messages are not buffered:
            # SQS delivers them again after their visibility timeout.
            messages = self.on_received(messages)
        return messages

    def _run(self) -> None:
        failures = 0
        while not self.stopped.is_set():
            room = self.inbox.wait_for_room(self.stopped)
            if not room or self.stopped.is_set():
                continue
            try:
                messages = self._receive(room)
            except SQSBusError as exc:
                if self.stopped.is_set():
                    return
                failures += 1
                if failures >= FAILURES_BEFORE_RAISE or not isinstance(exc, TransientError):
                    logger.error("receiving from queue %s failed: %s", self.queue.name, exc)
                    self.inbox.report(
                        ReceiveFailed(f"receiving from queue {self.queue.name!r}: {exc}")
                    )
                    self.stopped.set()
                    return
                delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
                logger.warning(
                    "receiving from queue %s failed (%s); retrying in %.1fs",
                    self.queue.name,
                    exc,
                    delay,
                )
                self.stopped.wait(delay)
                continue
            except Exception as exc:  # a bug must not kill consumption silently
                logger.exception("receiver for queue %s crashed", self.queue.name)
                self.inbox.report(ReceiveFailed(f"receiver for queue {self.queue.name!r}: {exc!r}"))
                self.stopped.set()
                return
            failures = 0
            if self.stopped.is_set():
                self.release(messages)
                return
            self.inbox.put(messages)
            if not messages and self.polling_interval:
                self.stopped.wait(self.polling_interval)
            elif messages and len(messages) < room and self.coalesce_seconds:
                self.stopped.wait(self.coalesce_seconds)
