"""Kombu channel over the sqsbus engine.

Kombu's virtual-transport contract (``_put``, ``_get``, ``_size``, ``basic_*``)
is mapped onto the engine: publishing through :class:`~sqsbus.engine.publisher.Publisher`,
consuming through background :class:`~sqsbus.engine.receiver.Receiver` threads
that fill this channel's :class:`~sqsbus.engine.receiver.Inbox`, and settling
through :class:`~sqsbus.engine.acker.Acker`.  Wire format and
``delivery_info`` keys (``sqs_message``, ``sqs_queue``) match Kombu's SQS
transport, so producers and consumers of both interoperate.
"""

from __future__ import annotations

import binascii
import logging
import sys
import time
from datetime import datetime
from queue import Empty
from typing import TYPE_CHECKING, Any

from kombu.exceptions import DecodeError
from kombu.serialization import loads
from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments

from sqsbus import codec
from sqsbus.aws import call
from sqsbus.engine import delays, operations
from sqsbus.engine.forwarding import Forwarder
from sqsbus.engine.messages import Received
from sqsbus.engine.publisher import MAX_MESSAGE_ATTRIBUTES
from sqsbus.engine.receiver import BandGate, Inbox, Receiver
from sqsbus.errors import (
    AccessDeniedError,
    ConfigurationError,
    PayloadMissing,
    QueueDoesNotExist,
    SQSBusError,
    UnreadablePayload,
    UnsupportedExchangeType,
)
from sqsbus.kombu.queue_arguments import QueueArguments
from sqsbus.queues import QueueRef, band_of, band_queue, priority_bands
from sqsbus.routing.exchanges import FilterCondition, topic_condition

if TYPE_CHECKING:
    from sqsbus.kombu.transport import Transport

logger = logging.getLogger(__name__)

#: Seconds ``basic_get`` long-polls: long enough to see every SQS server, short
#: enough not to block a synchronous caller.
BASIC_GET_WAIT_SECONDS = 1


#: Exchange types whose bindings are shared by every process, as SNS subscriptions.
SUPPORTED_EXCHANGE_TYPES = frozenset({"direct", "fanout", "topic"})


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
        self.options = connection.options
        self.directory = connection.directory
        self.publisher = connection.publisher
        self.acker = connection.acker
        self.leases = connection.leases
        self.payloads = connection.payloads
        self.forwarder = Forwarder(connection.directory, connection.publisher, connection.acker)
        self.router = connection.router
        # Created now: receiver threads read QoS and must not race its creation.
        self._channel_qos = self.qos
        self.inbox = Inbox(connection.waker, self._demand)
        #: Kombu queue name -> its receivers (one per priority band).
        self._receivers: dict[str, list[Receiver]] = {}
        self._noack_queues: set[str] = set()
        #: delivery tag -> message, for messages handed to the application.
        self._unsettled: dict[str, Received] = {}
        #: delivery tag -> why its body could not be decoded (see :class:`Message`).
        self._undecodable: dict[str, str] = {}

    # -- queues ---------------------------------------------------------------

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
            refs = [declare(name, parsed.expires_ms) for name in self._bands(queue)]
        else:
            refs = [self.directory.ensure(name) for name in self._bands(queue)]
        return refs[0]

    def _bands(self, queue: str) -> list[str]:
        """Kombu names of the SQS queues behind ``queue``: itself, then its priority bands."""
        arguments = self.connection.queue_arguments.get(queue)
        if arguments is None or not arguments.max_priority:
            return [queue]
        bands = priority_bands(arguments.max_priority, self.options.priority_steps)
        return [band_queue(queue, band) for band in bands]

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.directory.exists(queue)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        if self.options.predefined_queues:
            return  # predefined queues are never created nor deleted here
        for name in self._bands(queue):
            self.connection.drop_queue(name)

    def _size(self, queue: str) -> int:
        total = 0
        for name in self._bands(queue):
            ref = self.directory.ensure(name)
            attributes = self.directory.attributes(ref, fresh=True)
            total += int(attributes.get("ApproximateNumberOfMessages", 0))
        return total

    def _purge(self, queue: str) -> int:
        size = self._size(queue)
        for name in self._bands(queue):
            ref = self.directory.ensure(name)
            call(ref.client, "purge_queue", f"purge queue {ref.name!r}", QueueUrl=ref.url)
        return size

    # -- publishing -----------------------------------------------------------

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
        delay = _delay_seconds(properties)
        if delay is None and self.options.native_delays and not ref.is_fifo:
            delay, attributes = _native_delay(message.get("headers"), attributes)
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

    # -- consuming ------------------------------------------------------------

    def _demand(self) -> int | None:
        """How many more messages this channel's consumers may take (None: no limit)."""
        qos = self._channel_qos
        if not qos.prefetch_count:
            return None
        return max(0, int(qos.can_consume_max_estimate() or 0))

    def basic_consume(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any
    ) -> Any:
        names = self._bands(queue)
        refs = [self.directory.ensure(name) for name in names]
        if no_ack:
            self._noack_queues.add(queue)
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        running = self._receivers.get(queue) or []
        if len(running) == len(refs) and all(receiver.alive for receiver in running):
            return result
        for receiver in running:
            receiver.stop()
        arguments = self.connection.queue_arguments.get(queue)
        steps = (
            priority_bands(arguments.max_priority, self.options.priority_steps)
            if arguments is not None and arguments.max_priority
            else [0]
        )
        gate = BandGate(steps) if len(refs) > 1 else None
        self._receivers[queue] = [
            Receiver(
                self.inbox,
                ref,
                queue,
                wait_time_seconds=self.options.wait_time_seconds,
                polling_interval=self.options.polling_interval,
                coalesce_seconds=self.options.receive_coalesce_ms / 1000,
                leases=self.leases,
                release=self.acker.release,
                on_received=self._on_received,
                priority=step,
                gate=gate,
                acks_room=self.acker.wait_for_room,
            )
            for ref, step in zip(refs, steps, strict=True)
        ]
        for receiver in self._receivers[queue]:
            receiver.start()
        return result

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._noack_queues.discard(queue)
            for receiver in self._receivers.pop(queue, []):
                receiver.stop()
            self.acker.release(self.inbox.remove(queue))
        return result

    def _on_received(self, messages: list[Received]) -> list[Received]:
        """Receiver hook (its thread): prepare the messages, delete no-ack ones."""
        messages = self._prepare(messages)
        if messages and messages[0].name in self._noack_queues:
            self.acker.delete(messages)
        return messages

    def _prepare(self, messages: list[Received]) -> list[Received]:
        """Of just received messages, those to deliver: delayed ones that surfaced early
        hop, large payloads are read from S3."""
        if self.options.native_delays:
            messages = [m for m in messages if not self.forwarder.hop_if_early(m)]
        return self._resolve_payloads(messages)

    def _resolve_payloads(self, messages: list[Received]) -> list[Received]:
        """Replace S3 pointers by their payloads; hold back messages whose payload failed.

        A message whose object does not exist goes to the queue's dead-letter queue if
        it has one; otherwise, like one whose object cannot be read now, it stays in SQS
        and is received again after its visibility timeout (or lease). One without a
        valid pointer is unreadable.  Nothing is deleted silently.
        """
        readable: list[Received] = []
        for message in messages:
            try:
                readable.append(self.payloads.resolve(message))
            except UnreadablePayload as exc:
                self._discard_unreadable(message, str(exc))
            except SQSBusError as exc:
                moved = isinstance(exc, PayloadMissing) and self.forwarder.dead_letter(
                    message, f"payload missing: {exc}"
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
                )
        return readable

    def deliver_buffered(self) -> int:
        """Hand buffered messages to consumers while QoS allows; return how many."""
        delivered = 0
        callbacks = self.connection._callbacks
        while self._channel_qos.can_consume():
            taken = self.inbox.take(1)
            if not taken:
                break
            received = taken[0]
            callback = callbacks.get(received.name)
            if callback is None:
                self.acker.release([received])
                continue
            payload = self._to_payload(received)
            if payload is None or self._expired(received, payload):
                continue
            if not self._matches_bindings(received.name, payload):
                # A topic subscription's prefix filter lets through a superset.
                self.acker.delete([received])
                continue
            if received.name not in self._noack_queues:
                self._unsettled[payload["properties"]["delivery_tag"]] = received
            callback(payload)
            delivered += 1
        self.inbox.raise_error()
        return delivered

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

    def _to_payload(self, received: Received) -> dict[str, Any] | None:
        """The Kombu payload of ``received``, or None if it is unreadable (then settled)."""
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
        problem = _envelope_problem(payload)
        if problem is not None:
            self._discard_unreadable(received, problem)
            return None
        try:
            if payload.get("body"):
                decoded_body = self.decode_body(payload["body"], properties.get("body_encoding"))
                # Kombu's Message decodes the same body again next: it gets this result.
                self._last_decoded = (payload["body"], decoded_body)
        except (binascii.Error, ValueError, TypeError, AttributeError) as exc:
            self._discard_unreadable(received, f"its body cannot be decoded ({exc})")
            return None
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
        return payload

    def decode_body(self, body: Any, encoding: str | None = None) -> Any:
        last = self._last_decoded
        if last is not None and last[0] is body:
            self._last_decoded = None
            return last[1]
        return super().decode_body(body, encoding)

    def _discard_unreadable(self, received: Received, reason: str) -> None:
        """Take an unreadable message out of circulation without losing it silently."""
        if received.name in self._noack_queues:
            logger.error(
                "message %s on no-ack queue %s is unreadable: %s. Body: %.200r",
                received.message_id,
                received.queue.name,
                reason,
                received.body,
            )
            return
        if self.forwarder.dead_letter(received, f"unreadable: {reason}"):
            return
        logger.error(
            "message %s on queue %s is unreadable: %s; deleting it. Body: %.200r",
            received.message_id,
            received.queue.name,
            reason,
            received.body,
        )
        self.acker.delete([received])

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        # A consumer of the same queue may already hold it in the prefetch buffer.
        received = self.inbox.take_named(queue) or self._receive_one(queue)
        if received is None:
            return None
        if no_ack:
            self.acker.delete([received])
        payload = self._to_payload(received)
        if payload is None or self._expired(received, payload):
            return None
        message = self.Message(payload, channel=self)
        if not no_ack:
            self._unsettled[message.delivery_tag] = received
            self.qos.append(message, message.delivery_tag)
        return message

    def _receive_one(self, queue: str) -> Received | None:
        """One message of ``queue``, highest priority band first; None if none is ready."""
        names = self._bands(queue)
        for index, name in enumerate(reversed(names)):
            last = index == len(names) - 1
            messages = operations.receive(
                self.directory.ensure(name),
                queue,
                max_messages=1,
                wait_time_seconds=(
                    min(BASIC_GET_WAIT_SECONDS, self.options.wait_time_seconds or 1) if last else 0
                ),
                visibility_timeout=None if self.leases is None else self.leases.lease_seconds,
            )
            if not messages:
                continue
            if self.leases is not None:
                self.leases.hold(messages)
            prepared = self._prepare(messages)
            return prepared[0] if prepared else None
        return None

    def _expired(self, received: Received, payload: dict[str, Any]) -> bool:
        """Settle ``received`` if its TTL (message ``expiration`` or queue
        ``x-message-ttl``) has passed: dead-letter it if its queue has a DLQ, else delete."""
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
        sent = received.sent_at
        if not limits or sent is None:
            return False
        ttl = min(limits)
        age = (time.time() - sent) * 1000
        if age < ttl:
            return False
        logger.info(
            "message %s of queue %s expired (%.0f ms old, TTL %.0f ms); not delivered",
            received.message_id,
            received.queue.name,
            age,
            ttl,
        )
        if received.name in self._noack_queues:
            return True  # deleted on receipt already
        if not self.forwarder.dead_letter(received, f"expired (TTL {ttl:.0f} ms)"):
            self.acker.delete([received])
        return True

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        raise Empty()  # consumption goes through receivers and basic_get

    def basic_qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False
    ) -> None:
        super().basic_qos(prefetch_size, prefetch_count, apply_global)
        self._on_demand_changed()

    def _on_demand_changed(self) -> None:
        if self.inbox.notify():
            self.connection.waker.wake()

    # -- settling -------------------------------------------------------------

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
                reason = f"unreadable: its body cannot be decoded ({undecodable})"
                if not self.forwarder.dead_letter(received, reason):
                    self.acker.delete([received])
            elif received is not None:
                self.acker.delete([received])
        finally:
            super().basic_ack(delivery_tag, multiple)
            self._on_demand_changed()

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            if not requeue:
                self._settle_rejected(delivery_tag)
        finally:
            super().basic_reject(delivery_tag, requeue=requeue)
            self._unsettled.pop(delivery_tag, None)
            self._undecodable.pop(delivery_tag, None)
            self._on_demand_changed()

    def _settle_rejected(self, delivery_tag: str) -> None:
        received = self._unsettled.get(delivery_tag)
        if received is None:
            return
        backoff = self._backoff_seconds(delivery_tag, received)
        if backoff is not None:
            self.acker.set_visibility([received], backoff)
        elif not self.forwarder.dead_letter(received, "rejected without requeue"):
            self.acker.delete([received])

    def _backoff_seconds(self, delivery_tag: str, received: Received) -> int | None:
        """Visibility from the queue's ``backoff_policy`` if its task is listed."""
        predefined = received.queue.predefined
        if predefined is None or not predefined.backoff_policy:
            return None
        try:
            message = self.qos.get(delivery_tag)
        except KeyError:
            return None
        task = (message.headers or {}).get("task")
        if task not in predefined.backoff_tasks:
            return None
        return predefined.backoff_policy.get(received.receive_count)

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
        parking = self.connection.parking
        if received.home is not None and parking is not None:
            parking.send_home([received])  # parked at the 12-hour cap: back where it belongs
            return
        self.acker.set_visibility([received], 0)

    def close(self) -> None:
        if self.closed:
            return
        receivers = [receiver for group in self._receivers.values() for receiver in group]
        transport = self.connection  # super().close() detaches it
        super().close()  # cancels consumers (stopping receivers), restores unacked
        for receiver in receivers:
            receiver.stop()
        self.acker.release(self.inbox.take(None))
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


def _envelope_problem(payload: dict[str, Any]) -> str | None:
    """Why a Kombu envelope cannot become a Kombu message (wrong field types), or None."""
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        return f"its body is a JSON {type(body).__name__}, not a string"
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return f"its headers are a JSON {type(headers).__name__}, not an object"
    for key in ("content-type", "content-encoding"):
        value = payload.get(key)
        if value is not None and not isinstance(value, str):
            return f"its {key} is a JSON {type(value).__name__}, not a string"
    encoding = payload["properties"].get("body_encoding")
    if encoding is not None and not isinstance(encoding, str):
        return f"its body_encoding is a JSON {type(encoding).__name__}, not a string"
    return None


def _native_delay(
    headers: Any, attributes: dict[str, Any] | None
) -> tuple[int | None, dict[str, Any] | None]:
    """DelaySeconds (and hop attribute) for a Celery message with a future ``eta`` header.

    A naive ``eta`` (no time zone) is left to the worker: guessing its zone could
    deliver the message late.
    """
    eta_text = headers.get("eta") if isinstance(headers, dict) else None
    if not isinstance(eta_text, str):
        return None, attributes
    try:
        eta_time = datetime.fromisoformat(eta_text)
    except ValueError:
        return None, attributes
    if eta_time.tzinfo is None:
        return None, attributes
    eta = eta_time.timestamp()
    delay = delays.delay_for(eta)
    if not delay:
        return None, attributes
    if eta - time.time() > delays.MAX_DELAY_SECONDS:
        attributes = dict(attributes or {})
        if len(attributes) < MAX_MESSAGE_ATTRIBUTES:
            attributes[delays.ETA_ATTRIBUTE] = delays.eta_attribute(eta)
    return delay, attributes


def _delay_seconds(properties: dict[str, Any]) -> int | None:
    """Kombu's ``delay_seconds``/``DelaySeconds`` message property, validated."""
    for key in ("delay_seconds", "DelaySeconds"):
        value = properties.get(key)
        if value is None:
            continue
        try:
            delay = int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"message property {key!r} must be a number of seconds, got {value!r}"
            ) from None
        if delay < 0:
            raise ConfigurationError(f"message property {key!r} must be >= 0, got {delay}")
        return delay
    return None
