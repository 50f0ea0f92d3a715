"""Consuming and settling, for one application-level consumer (a Kombu channel, say).

A :class:`Consumer` owns everything between SQS and the adapter that hands messages to the
application:

* **receiving**: one :class:`~sqsbus.engine.receiver.Receiver` thread per consumed queue and
  priority band (with the bands' :class:`~sqsbus.engine.receiver.BandGate`), filling one
  bounded :class:`~sqsbus.engine.receiver.Inbox`; every receive holds what it got under a
  lease (:mod:`sqsbus.engine.leases`); :meth:`Consumer.get` is the single receive of a
  synchronous ``get``;
* **preparing** (on the receiver thread, before buffering): a delayed message that surfaced
  early hops on (:meth:`~sqsbus.engine.forwarding.Forwarder.hop_if_early`), a large payload is
  read from S3 (:mod:`sqsbus.engine.payloads`), a message that cannot be read goes to the
  dead-letter queue, and a no-ack queue's messages are deleted on receipt;
* **settling**, by the adapter's verdict on a delivered message: :meth:`~Consumer.ack`,
  :meth:`~Consumer.requeue`, :meth:`~Consumer.reject` (the predefined queue's
  ``backoff_policy``, else the dead-letter queue, else delete), :meth:`~Consumer.discard`
  (unreadable) and :meth:`~Consumer.expire` (past its TTL).

It speaks only in engine types (:class:`~sqsbus.engine.messages.Received`, queue refs, names),
so it can be driven without Kombu.  Names are the adapter's queue names (a Kombu queue name);
each maps to one SQS queue per priority band.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from sqsbus.engine import operations
from sqsbus.engine.acker import Acker
from sqsbus.engine.forwarding import Forwarder
from sqsbus.engine.leases import LeaseKeeper
from sqsbus.engine.messages import Received
from sqsbus.engine.parking import Parking
from sqsbus.engine.payloads import PayloadStore
from sqsbus.engine.publisher import Publisher
from sqsbus.engine.receiver import BandGate, Demand, Inbox, PollSettings, Receiver, Waker
from sqsbus.errors import PayloadMissing, SQSBusError, UnreadablePayload
from sqsbus.queues import QueueDirectory, QueueRef
from sqsbus.telemetry import QueueMetrics, watch_prefetch
from sqsbus.telemetry import queue as queue_metrics

logger = logging.getLogger(__name__)

#: Seconds a single receive (:meth:`Consumer.get`) long-polls its last band: long enough to
#: see every SQS server, short enough not to block a synchronous caller.
GET_WAIT_SECONDS: Final = 1


@dataclass(frozen=True)
class Band:
    """One SQS queue behind a consumed name, and the lowest priority it holds."""

    queue: QueueRef
    priority: int = 0


@dataclass(frozen=True)
class ConsumeSettings:
    """How receivers poll, and whether native delays are honoured on receipt."""

    poll: PollSettings
    native_delays: bool = True


class Consumer:
    """Receives, prepares and settles the messages of the queues one consumer reads."""

    def __init__(
        self,
        *,
        directory: QueueDirectory,
        publisher: Publisher,
        acker: Acker,
        leases: LeaseKeeper | None,
        payloads: PayloadStore,
        parking: Callable[[], Parking | None],
        waker: Waker,
        demand: Demand,
        settings: ConsumeSettings,
    ) -> None:
        self.acker = acker
        self.leases = leases
        self.payloads = payloads
        self.settings = settings
        #: The transport's parking (made again with its acker on reconnect).
        self._parking = parking
        self.forwarder = Forwarder(directory, publisher, acker)
        self.inbox = Inbox(waker, demand)
        self._receivers: dict[str, list[Receiver]] = {}
        #: FIFO message groups with a message handed out and not settled yet: the next
        #: message of such a group waits in the buffer (one at a time, in order).
        self._busy_groups: dict[tuple[str, str], Received] = {}
        #: Receivers stopped by a cancel, until they have ended.
        self._stopping: list[Receiver] = []
        self._no_ack: set[str] = set()
        watch_prefetch(self)

    # -- consuming -------------------------------------------------------------------------

    def consume(self, name: str, bands: Sequence[Band], *, no_ack: bool = False) -> None:
        """Receive ``name``'s messages (its bands, highest priority first) in the background;
        a name already consumed keeps its receivers (restarted if they died)."""
        if no_ack:
            self._no_ack.add(name)
        running = self._receivers.get(name) or []
        if len(running) == len(bands) and all(receiver.alive for receiver in running):
            return
        for receiver in running:
            receiver.stop()
        gate = BandGate(band.priority for band in bands) if len(bands) > 1 else None
        self._receivers[name] = [
            Receiver(self, band.queue, name, band.priority, gate) for band in bands
        ]
        for receiver in self._receivers[name]:
            receiver.start()

    def cancel(self, name: str) -> None:
        """Stop receiving ``name``; its buffered messages are released (visible again)."""
        self._no_ack.discard(name)
        stopped = self._receivers.pop(name, [])
        for receiver in stopped:
            receiver.stop()
        self._stopping = [r for r in self._stopping if r.alive] + stopped
        self.acker.release(self.inbox.remove(name))

    def take(self) -> Received | None:
        """The next buffered message (highest band first), or None; a FIFO queue's message
        only once the earlier one of its group was settled."""
        if self._busy_groups:
            message = self.inbox.take_first(self._free)
        else:
            taken = self.inbox.take(1)
            message = taken[0] if taken else None
        if message is not None:
            self._hand_out(message)
            _delivering(message)
        return message

    def _free(self, message: Received) -> bool:
        return message.ordered_group not in self._busy_groups

    def _hand_out(self, message: Received) -> None:
        group = message.ordered_group
        if group is not None and message.name not in self._no_ack:
            self._busy_groups[group] = message

    def _settled(self, message: Received) -> None:
        """``message`` is no longer handed out: the next of its FIFO group may go."""
        group = message.ordered_group
        if group is not None and self._busy_groups.get(group) is message:
            del self._busy_groups[group]

    def get(self, name: str, bands: Sequence[Band], *, no_ack: bool = False) -> Received | None:
        """One message of ``name``, prepared: a buffered one, else one single receive per
        band, highest first (the last one long-polls briefly); None if none is ready.

        With ``no_ack`` it is deleted at once.
        """
        message = self.inbox.take_first(lambda m: m.name == name and self._free(m))
        for index, band in enumerate(reversed(bands)):
            if message is not None:
                break
            last = index == len(bands) - 1
            wait = min(GET_WAIT_SECONDS, self.settings.poll.wait_time_seconds or 1) if last else 0
            prepared = self.prepare(self.receive(band.queue, name, band.priority, 1, wait))
            message = prepared[0] if prepared else None
        if message is not None:
            _delivering(message)
        if message is not None and no_ack:
            self.acker.delete([message])
        elif message is not None:
            self._hand_out(message)
        return message

    def no_ack(self, name: str) -> bool:
        """True if ``name`` is consumed without acknowledgements."""
        return name in self._no_ack

    def demand_changed(self) -> None:
        """The consumer may take more now (an ack, a new prefetch): wake receivers waiting for
        room, and the application if messages are already buffered."""
        if self.inbox.notify():
            self.inbox.waker.wake()

    def raise_error(self) -> None:
        """Raise what a receiver could not get past (e.g. the queue was deleted)."""
        self.inbox.raise_error()

    def prefetched(self) -> dict[str, int]:
        """Buffered messages per SQS queue (0 for a consumed queue with none buffered)."""
        counts = {
            receiver.queue.name: 0
            for receivers in list(self._receivers.values())
            for receiver in receivers
        }
        for name, count in self.inbox.depths().items():
            counts[name] = counts.get(name, 0) + count
        return counts

    def close(self) -> list[Receiver]:
        """Stop every receiver and release every buffered message; return the receivers,
        whose last long poll may still be in flight (join them before going away)."""
        receivers = [receiver for group in self._receivers.values() for receiver in group]
        self._receivers.clear()
        for receiver in receivers:
            receiver.stop()
        self.acker.release(self.inbox.take(None))
        stopping, self._stopping = self._stopping, []
        return [*receivers, *(r for r in stopping if r.alive)]

    # -- what receivers call (their thread) ------------------------------------------------

    @property
    def poll(self) -> PollSettings:
        return self.settings.poll

    def receive(
        self, queue: QueueRef, name: str, priority: int, max_messages: int, wait: int
    ) -> list[Received]:
        """One ``ReceiveMessage``; what it got is held under a lease from now on."""
        messages = operations.receive(
            queue,
            name,
            max_messages=max_messages,
            wait_time_seconds=wait,
            visibility_timeout=None if self.leases is None else self.leases.lease_seconds,
        )
        for message in messages:
            message.priority = priority
        queue_metrics(queue.name).received(len(messages))
        if self.leases is not None:
            self.leases.hold(messages)
        return messages

    def on_received(self, messages: list[Received]) -> list[Received]:
        """What a receiver buffers of what it received: the prepared messages; those of a
        no-ack queue are deleted now."""
        messages = self.prepare(messages)
        if messages and messages[0].name in self._no_ack:
            self.acker.delete(messages)
        return messages

    def prepare(self, messages: list[Received]) -> list[Received]:
        """Of just received messages, those to deliver: early delayed ones hop on, large
        payloads are read from S3 (those that fail are settled, see below)."""
        if self.settings.native_delays:
            messages = [m for m in messages if not self.forwarder.hop_if_early(m)]
        return [m for m in messages if self._resolve_payload(m)]

    def release(self, messages: list[Received]) -> None:
        """Give back messages never handed to the application (visible again now)."""
        for message in messages:
            self._settled(message)
        self.acker.release(messages)

    def acks_room(self, timeout: float) -> bool:
        """Wait while settled messages' deletes are backlogged (receive no more till then)."""
        return self.acker.wait_for_room(timeout)

    def _resolve_payload(self, message: Received) -> bool:
        """Replace ``message``'s S3 pointer by its payload; False if it cannot be delivered.

        A pointer that is invalid or not allowed makes the message unreadable (see
        :meth:`discard`). One whose object does not exist goes to the dead-letter queue if
        the queue has one; otherwise, like one whose object cannot be read now, it stays in
        SQS and is received again after its lease. Nothing is deleted silently.
        """
        try:
            self.payloads.resolve(message)
        except UnreadablePayload as exc:
            self.discard(message, str(exc))
            return False
        except SQSBusError as exc:
            moved = isinstance(exc, PayloadMissing) and self.forwarder.dead_letter(
                message, f"payload missing: {exc}", cause="payload_missing"
            )
            if not moved and self.leases is not None:
                self.leases.forget([message])  # back in SQS when its lease ends
            logger.error(
                "message %s on queue %s is not delivered: cannot %s; %s",
                message.message_id,
                message.queue.name,
                exc,
                "it goes to the dead-letter queue"
                if moved
                else "it stays in the queue and is received again when its visibility ends",
                extra=message.log_fields("receive"),
            )
            return False
        return True

    # -- verdicts on delivered messages ----------------------------------------------------

    def ack(self, message: Received) -> None:
        """Processed: delete it (batched)."""
        self._settled(message)
        _metrics_of(message).acked()
        self.acker.delete([message])

    def requeue(self, message: Received, *, closing: bool = False) -> None:
        """Give it back: delivered again at once, and once.

        A message of a name this consumer receives goes back to the front of its buffer
        (still held under its lease), so the next delivery or :meth:`get` hands it out again
        in this process, as Redis and RabbitMQ users expect; any other is made visible in
        SQS now, for the next receive (``closing``: soon, batched with the others given back
        by a consumer going away). One parked at SQS's 12-hour visibility cap is sent home.
        """
        self._settled(message)
        _metrics_of(message).requeued()
        parking = self._parking()
        if message.home is not None and parking is not None:
            parking.send_home([message])
        elif message.name in self._receivers and not closing:
            message.requeued = True
            self.inbox.put_back(message)
        elif closing:
            self.acker.set_visibility([message], 0)
        else:
            self.acker.release([message])

    def reject(self, message: Received, *, task: str | None = None) -> None:
        """Failed, not to be requeued: retried later if its predefined queue's
        ``backoff_policy`` lists ``task``, else moved to the dead-letter queue, else deleted."""
        self._settled(message)
        backoff = _backoff_seconds(message, task)
        if backoff is not None:
            self.acker.set_visibility([message], backoff)
        elif not self.forwarder.dead_letter(message, "rejected without requeue", cause="rejected"):
            self.acker.delete([message])

    def discard(self, message: Received, reason: str) -> None:
        """Unreadable (``reason`` says why): to the dead-letter queue, else logged with its
        body and deleted (a no-ack queue's message was deleted on receipt: just logged)."""
        self._settled(message)
        if message.name in self._no_ack:
            logger.error(
                "message %s on no-ack queue %s is unreadable: %s. Body: %.200r",
                message.message_id,
                message.queue.name,
                reason,
                message.body,
                extra=message.log_fields("deliver"),
            )
            return
        if self.forwarder.dead_letter(message, f"unreadable: {reason}", cause="unreadable"):
            return
        logger.error(
            "message %s on queue %s is unreadable: %s; deleting it. Body: %.200r",
            message.message_id,
            message.queue.name,
            reason,
            message.body,
            extra=message.log_fields("deliver"),
        )
        self.acker.delete([message])

    def expire(self, message: Received, ttl_ms: float | None) -> bool:
        """True, after settling it, if ``message`` outlived ``ttl_ms`` (counted from SQS's
        ``SentTimestamp``): it goes to the dead-letter queue, else it is deleted."""
        sent = message.sent_at
        if ttl_ms is None or sent is None:
            return False
        age = (time.time() - sent) * 1000
        if age < ttl_ms:
            return False
        self._settled(message)
        _metrics_of(message).expired()
        logger.info(
            "message %s of queue %s expired (%.0f ms old, TTL %.0f ms); not delivered",
            message.message_id,
            message.queue.name,
            age,
            ttl_ms,
            extra=message.log_fields("deliver"),
        )
        if message.name in self._no_ack:
            return True  # deleted on receipt already
        if not self.forwarder.dead_letter(
            message, f"expired (TTL {ttl_ms:.0f} ms)", cause="expired"
        ):
            self.acker.delete([message])
        return True


def _metrics_of(message: Received) -> QueueMetrics:
    """The metrics of the queue ``message`` belongs to (its home, if parked)."""
    return queue_metrics((message.home or message.queue).name)


def _delivering(message: Received) -> None:
    """``message`` goes to the application now: its lag since SQS took it, in the metrics
    (not again for one given back and delivered again from the buffer)."""
    sent = message.sent_at
    if sent is not None and not message.requeued:
        _metrics_of(message).delivered(max(0.0, time.time() - sent))


def _backoff_seconds(message: Received, task: str | None) -> int | None:
    """Visibility from the predefined queue's ``backoff_policy`` if ``task`` is listed."""
    predefined = message.queue.predefined
    if predefined is None or not predefined.backoff_policy or task is None:
        return None
    if task not in predefined.backoff_tasks:
        return None
    return predefined.backoff_policy.get(message.receive_count)
