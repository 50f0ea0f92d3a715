"""Kombu channel over the sqsbus engine.

Kombu's virtual-transport contract (``_put``, ``basic_*``, exchanges and bindings) is mapped
onto the engine: publishing through :class:`~sqsbus.engine.publisher.Publisher`, consuming and
settling through one :class:`~sqsbus.engine.consumer.Consumer` per channel, exchanges through
:class:`~sqsbus.routing.exchanges.ExchangeRouter`.  What stays here is Kombu's: envelopes and
``delivery_info`` (keys ``sqs_message``/``sqs_queue`` as in Kombu's SQS transport, so producers
and consumers of both interoperate), QoS, delivery tags, exchanges and bindings.
"""

from __future__ import annotations

import logging
from queue import Empty
from typing import TYPE_CHECKING, Any

from kombu.transport.base import to_rabbitmq_queue_arguments

from sqsbus import codec
from sqsbus.aws import call
from sqsbus.engine import delays
from sqsbus.engine.consumer import Band, Consumer, ConsumeSettings
from sqsbus.engine.messages import Received
from sqsbus.engine.receiver import Inbox, PollSettings
from sqsbus.errors import QueueDoesNotExist
from sqsbus.kombu import envelope, worker_shutdown
from sqsbus.kombu.exchanges import ExchangeChannel
from sqsbus.kombu.message import Message
from sqsbus.kombu.queue_arguments import QueueArguments
from sqsbus.queues import QueueRef, band_of, band_queue, priority_bands

if TYPE_CHECKING:
    from sqsbus.kombu.transport import Transport

logger = logging.getLogger(__name__)


class Channel(ExchangeChannel):
    """A Kombu channel whose queues are SQS queues."""

    Message = Message
    connection: Transport
    do_restore = True
    supports_fanout = True
    #: (encoded body, decoded body) of the message being delivered: decoded once.
    _last_decoded: tuple[Any, Any] | None = None

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.options = options = connection.options
        self.directory = connection.directory
        self.publisher = connection.publisher
        self.router = connection.router
        # Created now: receiver threads read QoS and must not race its creation.
        self._channel_qos = self.qos
        poll = PollSettings(
            wait_time_seconds=options.wait_time_seconds,
            polling_interval=options.polling_interval,
            coalesce_seconds=options.receive_coalesce_ms / 1000,
        )
        self.consumer = Consumer(
            directory=connection.directory,
            publisher=connection.publisher,
            acker=connection.acker,
            leases=connection.leases,
            payloads=connection.payloads,
            parking=lambda: connection.parking,
            waker=connection.waker,
            demand=self._demand,
            settings=ConsumeSettings(poll, native_delays=options.native_delays),
        )
        #: delivery tag -> message, for messages handed to the application.
        self._unsettled: dict[str, Received] = {}
        #: delivery tag -> why its body could not be decoded (see :class:`Message`).
        self._undecodable: dict[str, str] = {}

    @property
    def inbox(self) -> Inbox:
        """Received messages not yet handed to the application."""
        return self.consumer.inbox

    # -- exchanges and bindings ---------------------------------------------------------

    # -- queues -------------------------------------------------------------------------

    def after_reply_message_received(self, queue: str) -> None:
        """Keep reply queues for the next request (SQS forbids reusing a name for 60 s)."""

    def prepare_queue_arguments(self, arguments: Any, **kwargs: Any) -> Any:
        """Keep ``expires``/``message_ttl``/``max_priority`` as AMQP ``x-`` arguments."""
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    def _new_queue(self, queue: str, **kwargs: Any) -> QueueRef:
        arguments = kwargs.get("arguments") or {}
        parsed = QueueArguments.parse(queue, arguments)
        if parsed != QueueArguments():
            self.connection.queue_arguments[queue] = parsed
        # Private to this connection (e.g. Celery's pidbox and reply queues)?
        temporary = bool(
            kwargs.get("exclusive") or (kwargs.get("auto_delete") and "x-expires" in arguments)
        )
        if temporary:
            declare = self.connection.declare_temporary_queue
            refs = [declare(name, parsed.expires_ms) for name in self._band_names(queue)]
        else:
            refs = [self.directory.ensure(name) for name in self._band_names(queue)]
        return refs[0]

    def _band_names(self, queue: str) -> list[str]:
        """Kombu names of the SQS queues behind ``queue``: itself, then its priority bands."""
        arguments = self.connection.queue_arguments.get(queue)
        if arguments is None or not arguments.max_priority:
            return [queue]
        bands = priority_bands(arguments.max_priority, self.options.priority_steps)
        return [band_queue(queue, band) for band in bands]

    def _bands(self, queue: str) -> list[Band]:
        """The SQS queues behind ``queue``, lowest priority first (created if needed)."""
        arguments = self.connection.queue_arguments.get(queue)
        steps = (
            priority_bands(arguments.max_priority, self.options.priority_steps)
            if arguments is not None and arguments.max_priority
            else [0]
        )
        names = self._band_names(queue)
        return [
            Band(self.directory.ensure(name), step) for name, step in zip(names, steps, strict=True)
        ]

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.directory.exists(queue)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        if self.options.predefined_queues:
            return  # predefined queues are never created nor deleted here
        for name in self._band_names(queue):
            self.connection.drop_queue(name)

    def _size(self, queue: str) -> int:
        total = 0
        for band in self._bands(queue):
            attributes = self.directory.attributes(band.queue, fresh=True)
            total += int(attributes.get("ApproximateNumberOfMessages", 0))
        return total

    def _purge(self, queue: str) -> int:
        size = self._size(queue)
        for band in self._bands(queue):
            ref = band.queue
            call(ref.client, "purge_queue", f"purge queue {ref.name!r}", QueueUrl=ref.url)
        return size

    # -- publishing ---------------------------------------------------------------------

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        properties = message.get("properties") or {}
        arguments = self.connection.queue_arguments.get(queue)
        if arguments is not None and arguments.max_priority:
            band = band_of(
                properties.get("priority"), arguments.max_priority, self.options.priority_steps
            )
            queue = band_queue(queue, band)
        ref = self.directory.ensure(queue)
        attributes = properties.pop("message_attributes", None)
        delay = delays.delay_property(properties)
        if delay is None and self.options.native_delays and not ref.is_fifo:
            delay, attributes = delays.native_delay(message.get("headers"), attributes)
        body = codec.encode_body(message, base64_encoding=self.options.base64_encoding)

        def send(target: QueueRef) -> None:
            self.publisher.send(
                target,
                body,
                message_attributes=attributes,
                group_id=properties.get("MessageGroupId"),
                deduplication_id=properties.get("MessageDeduplicationId"),
                delay_seconds=delay,
            )

        try:
            send(ref)
        except QueueDoesNotExist:
            if self.options.predefined_queues:
                raise
            # Deleted since we cached its URL (or the endpoint lost its state):
            # declare it again, as the publish would have on a fresh connection.
            logger.warning("queue %s disappeared; declaring it again", ref.name)
            self.directory.forget(ref.name)
            send(self.directory.ensure(queue))

    # -- consuming ----------------------------------------------------------------------

    def _demand(self) -> int | None:
        """How many more messages this channel's consumers may take (None: no limit)."""
        qos = self._channel_qos
        if not qos.prefetch_count:
            return None
        return max(0, int(qos.can_consume_max_estimate() or 0))

    def basic_consume(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any
    ) -> Any:
        bands = self._bands(queue)
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        self.consumer.consume(queue, bands, no_ack=no_ack)
        return result

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self.consumer.cancel(queue)
        return result

    def deliver_buffered(self) -> int:
        """Hand buffered messages to consumers while QoS allows; return how many (one at most
        once the Celery worker of this process is shutting down, see
        :mod:`sqsbus.kombu.worker_shutdown`: the others are released when it closes)."""
        delivered = 0
        callbacks = self.connection._callbacks
        while self._channel_qos.can_consume():
            received = self.consumer.take()
            if received is None:
                break
            callback = callbacks.get(received.name)
            if callback is None:
                self.consumer.release([received])
                continue
            payload = self._deliverable(received)
            if payload is None:
                continue
            unbound = self._unbound_reason(received.name, payload)
            if unbound is not None:
                logger.info(
                    "dropping message %s: %s",
                    received.message_id,
                    unbound,
                    extra=received.log_fields("deliver"),
                )
                self.consumer.ack(received)
                continue
            if not self.consumer.no_ack(received.name):
                self._unsettled[payload["properties"]["delivery_tag"]] = received
            callback(payload)
            delivered += 1
            if worker_shutdown.shutting_down():
                break  # one at a time: Celery stops between deliveries (solo runs tasks here)
        self.consumer.raise_error()
        return delivered

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        received = self.consumer.get(queue, self._bands(queue), no_ack=no_ack)
        payload = None if received is None else self._deliverable(received)
        if received is None or payload is None:
            return None
        message = self.Message(payload, channel=self)
        if not no_ack:
            self._unsettled[message.delivery_tag] = received
            self.qos.append(message, message.delivery_tag)
        return message

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        raise Empty()  # consumption goes through the consumer's receivers and basic_get

    def _deliverable(self, received: Received) -> dict[str, Any] | None:
        """The Kombu payload of ``received``; None if it was settled instead (unreadable or
        expired)."""
        payload, problem = envelope.to_payload(received, self._decode_once)
        if payload is None:
            self.consumer.discard(received, problem)
            return None
        arguments = self.connection.queue_arguments.get(received.name)
        queue_ttl = None if arguments is None else arguments.message_ttl_ms
        if self.consumer.expire(received, envelope.ttl_ms(received, payload, queue_ttl)):
            return None
        return payload

    def _decode_once(self, body: Any, encoding: str | None) -> Any:
        """Decode a delivered body; Kombu's Message, decoding it again next, gets this."""
        decoded = super().decode_body(body, encoding)
        self._last_decoded = (body, decoded)
        return decoded

    def decode_body(self, body: Any, encoding: str | None = None) -> Any:
        last = self._last_decoded
        if last is not None and last[0] is body:
            self._last_decoded = None
            return last[1]
        return super().decode_body(body, encoding)

    def basic_qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False
    ) -> None:
        super().basic_qos(prefetch_size, prefetch_count, apply_global)
        self.consumer.demand_changed()

    # -- settling -----------------------------------------------------------------------

    def note_undecodable(self, delivery_tag: str, reason: str) -> None:
        """The body of the delivered message ``delivery_tag`` could not be decoded."""
        if delivery_tag in self._unsettled:
            self._undecodable[delivery_tag] = reason

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        received = self._unsettled.pop(delivery_tag, None)
        undecodable = self._undecodable.pop(delivery_tag, None)
        try:
            if received is not None and undecodable is not None:
                # Acknowledged because it cannot be read (Celery does so): keep it aside.
                self.consumer.discard(received, f"its body cannot be decoded ({undecodable})")
            elif received is not None:
                self.consumer.ack(received)
        finally:
            super().basic_ack(delivery_tag, multiple)
            self.consumer.demand_changed()

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            received = self._unsettled.get(delivery_tag)
            if not requeue and received is not None:
                self.consumer.reject(received, task=self._task_of(delivery_tag))
        finally:
            super().basic_reject(delivery_tag, requeue=requeue)
            self._unsettled.pop(delivery_tag, None)
            self._undecodable.pop(delivery_tag, None)
            self.consumer.demand_changed()

    def _task_of(self, delivery_tag: str) -> str | None:
        """The Celery task name of a delivered message (its ``task`` header), if any."""
        try:
            message = self.qos.get(delivery_tag)
        except KeyError:
            return None
        task = (message.headers or {}).get("task")
        return task if isinstance(task, str) else None

    def _restore(self, message: Any) -> None:
        """Requeue: make the SQS message visible again now (no re-send, no copy)."""
        received = self._unsettled.pop(message.delivery_tag, None)
        self._undecodable.pop(message.delivery_tag, None)
        if received is None:
            delivery_info = message.delivery_info
            for key in ("sqs_message", "sqs_queue"):
                delivery_info.pop(key, None)
            super()._restore(message)
            return
        self.consumer.requeue(received, closing=self.closed)

    def close(self) -> None:
        if self.closed:
            return
        transport = self.connection  # super().close() detaches it
        super().close()  # cancels consumers, restores unacked
        receivers = self.consumer.close()
        # A long poll still in flight may yet return messages; the transport waits for
        # it at close so that they are released rather than left invisible.
        if transport is not None:
            transport.stopping_receivers.extend(receivers)
