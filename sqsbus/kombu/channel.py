"""Kombu channel over the sqsbus engine.

Kombu's virtual-transport contract (``_put``, ``basic_*``, exchanges and bindings) is mapped
onto the engine: publishing through :class:`~sqsbus.engine.publisher.Publisher`, consuming and
settling through one :class:`~sqsbus.engine.consumer.Consumer` per channel, exchanges through
:class:`~sqsbus.routing.exchanges.ExchangeRouter`.  What stays here is Kombu's: envelopes and
``delivery_info`` (keys ``sqs_message``/``sqs_queue`` as in Kombu's SQS transport, so producers
and consumers of both interoperate), QoS, delivery tags, exchanges and bindings.
"""

from __future__ import annotations

import binascii
import logging
import sys
from queue import Empty
from typing import TYPE_CHECKING, Any

from kombu.exceptions import DecodeError
from kombu.serialization import loads
from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments

from sqsbus import codec
from sqsbus.aws import call
from sqsbus.engine import delays
from sqsbus.engine.consumer import Band, Consumer, ConsumeSettings
from sqsbus.engine.messages import Received
from sqsbus.engine.receiver import Inbox, PollSettings
from sqsbus.errors import AccessDeniedError, QueueDoesNotExist, SQSBusError
from sqsbus.kombu.queue_arguments import QueueArguments
from sqsbus.queues import QueueRef, band_of, band_queue, priority_bands
from sqsbus.routing.exchanges import FilterCondition, topic_condition

if TYPE_CHECKING:
    from sqsbus.kombu.transport import Transport

logger = logging.getLogger(__name__)

#: Exchange types whose bindings are shared by every process, as SNS subscriptions.
SUPPORTED_EXCHANGE_TYPES = frozenset({"direct", "fanout", "topic"})


class UnsupportedExchangeType(SQSBusError, NotImplementedError):
    """The exchange type is not available on this transport."""


class Message(virtual.Message):
    """A received message that tells its channel when its body cannot be decoded.

    Celery acknowledges a message it cannot decode (so that it does not loop); the
    channel then moves it to the dead-letter queue instead of deleting it, if there is one.
    """

    channel: Channel

    def __init__(self, payload: Any, channel: Any = None, **kwargs: Any) -> None:
        super().__init__(payload, channel=channel, **kwargs)
        problem = _task_shape_problem(self)
        if problem is not None:
            # Consumers report it through on_decode_error (Celery logs and acks it).
            try:
                raise DecodeError(f"malformed Celery task message: {problem}")
            except DecodeError as exc:
                self.errors.append(sys.exc_info())
                channel.note_undecodable(self.delivery_tag, str(exc))

    def _decode(self) -> Any:
        try:
            return super()._decode()
        except Exception as exc:
            self.channel.note_undecodable(self.delivery_tag, f"{type(exc).__name__}: {exc}")
            raise


class Channel(virtual.Channel):
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

    @property
    def uses_sns(self) -> bool:
        """Bindings are kept in SNS (``supports_fanout``, on by default)."""
        return bool(self.options.supports_fanout)

    def exchange_declare(  # type: ignore[override]
        self, exchange: str | None = None, type: str = "direct", **kwargs: Any
    ) -> Any:
        supported = self.connection.implements.exchange_type
        if type not in supported:
            hint = "" if self.uses_sns else " (fanout needs supports_fanout=True)"
            raise UnsupportedExchangeType(
                f"exchange {exchange!r} is of type {type!r}; sqsbus supports "
                f"{' and '.join(sorted(supported))} exchanges{hint}"
            )
        result = super().exchange_declare(exchange, type, **kwargs)
        if type == "fanout" and exchange and not kwargs.get("passive"):
            self.router.topic_arn(exchange)
        return result

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        """Record the binding in AWS (an SNS subscription), so every process can route."""
        if not exchange or not self.uses_sns:
            return  # the default exchange routes by queue name
        kind = self.typeof(exchange).type
        condition: FilterCondition | None = routing_key
        if kind == "fanout":
            condition = None
        elif kind == "topic":
            condition = topic_condition(routing_key)
        try:
            self.router.subscribe(exchange, self.directory.ensure(queue), condition)
        except AccessDeniedError as exc:
            if kind != "direct":
                raise
            # Direct routing still works within this process, as in Kombu's transport.
            logger.warning(
                "binding queue %s to exchange %s stays local to this process: %s "
                "(grant the SNS permissions in docs, or set supports_fanout=False)",
                queue,
                exchange,
                exc,
            )

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: Any = None,
        **kwargs: Any,
    ) -> None:
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)
        if exchange and self.uses_sns:
            self.router.unsubscribe(exchange, self.directory.ensure(queue))

    def basic_publish(
        self, message: dict[str, Any], exchange: str, routing_key: str, **kwargs: Any
    ) -> Any:
        """Direct: local bindings when known, else the exchange's SNS topic (any process).

        Topic exchanges always go through SNS; fanout through ``_put_fanout``.
        """
        kind = self.typeof(exchange).type if exchange else "direct"
        if (
            exchange
            and self.uses_sns
            and kind != "fanout"
            and (kind == "topic" or not self._bound_here(exchange, routing_key))
        ):
            self._inplace_augment_message(message, exchange, routing_key)
            return self._put_exchange(exchange, message, routing_key)
        return super().basic_publish(message, exchange, routing_key, **kwargs)

    def _bound_here(self, exchange: str, routing_key: str) -> bool:
        """True if this process knows a queue bound to ``exchange`` with ``routing_key``."""
        table = self.state.exchanges.get(exchange, {}).get("table") or []
        return any(key == routing_key for key, _pattern, _queue in table)

    def _put_fanout(
        self, exchange: str, message: dict[str, Any], routing_key: str, **kwargs: Any
    ) -> None:
        self._put_exchange(exchange, message, None)

    def _put_exchange(
        self, exchange: str, message: dict[str, Any], routing_key: str | None
    ) -> None:
        properties = message.get("properties") or {}
        attributes = properties.pop("message_attributes", None)
        self.router.publish(
            exchange,
            codec.encode_body(message, base64_encoding=self.options.base64_encoding),
            routing_key=routing_key,
            message_attributes=attributes,
            group_id=properties.get("MessageGroupId"),
            deduplication_id=properties.get("MessageDeduplicationId"),
        )

    def _matches_bindings(self, queue: str, payload: dict[str, Any]) -> bool:
        """False for a topic-exchange message that none of ``queue``'s patterns match."""
        delivery_info = payload["properties"]["delivery_info"]
        exchange = delivery_info.get("exchange")
        if not exchange or exchange not in self.state.exchanges:
            return True
        exchange_type = self.typeof(exchange)
        if exchange_type.type != "topic":
            return True
        table = self.get_table(exchange)
        if not any(bound == queue for _key, _pattern, bound in table):
            return True  # bound by another process: its patterns are not known here
        matched = exchange_type.lookup(table, exchange, delivery_info.get("routing_key", ""), None)
        return queue in matched

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
        """Hand buffered messages to consumers while QoS allows; return how many."""
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
            if not self._matches_bindings(received.name, payload):
                # A topic subscription's prefix filter lets through a superset.
                self.consumer.ack(received)
                continue
            if not self.consumer.no_ack(received.name):
                self._unsettled[payload["properties"]["delivery_tag"]] = received
            callback(payload)
            delivered += 1
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
        payload, problem = self._to_payload(received)
        if payload is None:
            self.consumer.discard(received, problem)
            return None
        if self.consumer.expire(received, self._ttl_ms(received, payload)):
            return None
        return payload

    def _to_payload(self, received: Received) -> tuple[dict[str, Any] | None, str]:
        """The Kombu payload of ``received``, or None and why it cannot be read."""
        decoded = codec.decode_body(received.body)
        if decoded.envelope is not None:
            payload = decoded.envelope
        else:
            logger.info(
                "message %s on queue %s was not produced by Kombu; delivering its body as %s",
                received.message_id,
                received.queue.name,
                decoded.kind,
            )
            payload = codec.foreign_envelope(decoded, received.string_attributes())
        properties = payload.setdefault("properties", {})
        if not isinstance(properties.get("delivery_info"), dict):
            properties["delivery_info"] = {}
        problem = codec.envelope_problem(payload)
        if problem is not None:
            return None, problem
        try:
            if payload.get("body"):
                decoded_body = self.decode_body(payload["body"], properties.get("body_encoding"))
                # Kombu's Message decodes the same body again next: it gets this result.
                self._last_decoded = (payload["body"], decoded_body)
        except (binascii.Error, ValueError, TypeError, AttributeError) as exc:
            return None, f"its body cannot be decoded ({exc})"
        delivery_info = properties["delivery_info"]
        delivery_info.setdefault("routing_key", received.name)
        delivery_info.setdefault("exchange", "")
        delivery_info.update(
            sqs_message={
                "MessageId": received.message_id,
                "ReceiptHandle": received.receipt_handle,
                "Attributes": received.attributes,
                "MessageAttributes": received.message_attributes,
            },
            sqs_queue=received.queue.url,
            redelivered=received.receive_count > 1,
        )
        properties["delivery_tag"] = received.receipt_handle
        return payload, ""

    def decode_body(self, body: Any, encoding: str | None = None) -> Any:
        last = self._last_decoded
        if last is not None and last[0] is body:
            self._last_decoded = None
            return last[1]
        return super().decode_body(body, encoding)

    def _ttl_ms(self, received: Received, payload: dict[str, Any]) -> float | None:
        """The message's TTL: the shorter of its ``expiration`` and its queue's
        ``x-message-ttl``; None if it has neither."""
        limits: list[float] = []
        expiration = payload["properties"].get("expiration")
        if expiration is not None:
            try:
                limits.append(float(expiration))
            except (TypeError, ValueError):
                logger.warning(
                    "message %s has an unreadable expiration %r; ignoring it",
                    received.message_id,
                    expiration,
                )
        arguments = self.connection.queue_arguments.get(received.name)
        if arguments is not None and arguments.message_ttl_ms is not None:
            limits.append(arguments.message_ttl_ms)
        return min(limits) if limits else None

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
        self.consumer.requeue(received)

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


def _task_shape_problem(message: Any) -> str | None:
    """What is wrong with a JSON Celery task message (protocol 2: ``task`` and ``id``
    headers), whose body must be ``[args, kwargs, embed]``; None if nothing is.

    Celery's worker dies on such a body instead of rejecting it.
    """
    headers = message.headers
    if not ("task" in headers and "id" in headers) or message.content_type != "application/json":
        return None
    try:
        body = loads(message.body, message.content_type, message.content_encoding)
    except Exception as exc:
        return f"its body cannot be decoded ({exc})"
    if not (
        isinstance(body, list)
        and len(body) == 3
        and isinstance(body[0], list)
        and isinstance(body[1], dict)
        and isinstance(body[2], dict | None)
    ):
        return f"its body must be [args, kwargs, embed], got {str(body)[:100]}"
    return None
