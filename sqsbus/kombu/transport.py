"""Kombu transport for SQS, backed by the sqsbus engine.

Asynchronous without pycurl: receiver threads do the HTTP (botocore) and wake
Kombu's hub through a pipe, so a Celery worker's event loop never blocks on
the network.  Without a hub, :meth:`Transport.drain_events` waits on the same
pipe.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from typing import Any

import botocore.session
from kombu.transport import virtual

from sqsbus.aws import (
    AWS,
    RequestStats,
    call,
    configured_region,
    require_credentials,
    unknown_region_error,
)
from sqsbus.config import Options, parse_options
from sqsbus.engine.acker import Acker
from sqsbus.engine.group_commit import GROUP_COMMIT
from sqsbus.engine.leases import LeaseKeeper
from sqsbus.engine.messages import Received
from sqsbus.engine.parking import PARKING_QUEUE_PREFIX, Parking, empty_parking_queue
from sqsbus.engine.payloads import PayloadStore
from sqsbus.engine.publisher import Publisher
from sqsbus.engine.receiver import Receiver, Waker
from sqsbus.engine.side_jobs import SideJobs
from sqsbus.errors import (
    QueueDoesNotExist,
    SQSBusError,
    TransientError,
)
from sqsbus.expiry import EXIT_CLEANUP, QueueExpiry, SweepReport
from sqsbus.kombu import worker_shutdown
from sqsbus.kombu.channel import Channel
from sqsbus.kombu.exchanges import SUPPORTED_EXCHANGE_TYPES
from sqsbus.kombu.queue_arguments import QueueArguments
from sqsbus.log_fields import message_fields
from sqsbus.queues import QueueDirectory, QueueRef
from sqsbus.routing.exchanges import ExchangeRouter

logger = logging.getLogger(__name__)


#: Seconds between idle wake-ups of Kombu's hub (and of a waiting ``drain_events``), so a
#: Celery worker notices a shutdown request promptly even when no message arrives.
HUB_TICK_SECONDS = 1.0
#: Longest wait of a ``drain_events`` once the Celery worker of this process is shutting
#: down: a real wait, so that green threads still take turns (gevent, eventlet pools).
SHUTDOWN_DRAIN_SECONDS = 0.1


def _noop() -> None:
    """Hub tick: returning to the loop is the point (Celery checks for shutdown)."""


class Transport(virtual.Transport):
    """``sqsbus://`` — Amazon SQS for Kombu and Celery."""

    Channel = Channel

    driver_type = "sqs"
    driver_name = "sqsbus"
    default_port = None
    polling_interval = 1.0

    implements = virtual.Transport.implements.extend(
        asynchronous=True,
        exchange_type=SUPPORTED_EXCHANGE_TYPES,
        heartbeats=False,
    )

    #: Errors after which Kombu/Celery reconnect and retry: network, throttling, 5xx.
    connection_errors = (  # type: ignore[assignment]
        *virtual.Transport.connection_errors,
        TransientError,
    )
    channel_errors = (  # type: ignore[assignment]
        *virtual.Transport.channel_errors,
        SQSBusError,
    )
    #: Only these make Kombu tear down and retry; a bad message or option (e.g.
    #: MessageTooLarge, ConfigurationError) is raised to the caller as is.
    recoverable_connection_errors = connection_errors
    recoverable_channel_errors = ()

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.options: Options = parse_options(
            client.transport_options,
            hostname=client.hostname or None,
            port=client.port or None,
            userid=client.userid or None,
            password=client.password or None,
            default_region=configured_region(client.transport_options),
        )
        self.polling_interval = self.options.polling_interval
        self.aws = AWS(self.options)
        self.directory = QueueDirectory(self.aws, self.options)
        self.payloads = PayloadStore(
            lambda: self.aws.client("s3"),
            bucket=self.options.large_payload_bucket,
            prefix=self.options.large_payload_prefix,
            threshold=self.options.large_payload_threshold,
            always=self.options.large_payload_always,
            delete_after_ack=self.options.large_payload_delete_after_ack,
            allowed_buckets=self.options.followed_buckets,
            max_bytes=self.options.large_payload_max_bytes,
        )
        self.publisher = Publisher(
            self.directory,
            fifo_message_group_id=self.options.fifo_message_group_id,
            linger_ms=self.options.publish_linger_ms,
            payloads=self.payloads,
        )
        self.leases: LeaseKeeper | None = None
        self.parking: Parking | None = None
        #: This connection's parking queue (see sqsbus.engine.parking), made on first use.
        self.parking_queue_name = f"{PARKING_QUEUE_PREFIX}{uuid.uuid4().hex[:12]}"
        #: Parking and S3 deletes, off the lease keeper's and the acker's threads.
        self.side_jobs = SideJobs()
        self.acker = self._new_acker()
        self.router = ExchangeRouter(self.aws, self.options, self.directory)
        if not self.options.supports_fanout:
            # No SNS at all: direct exchanges routed within the process, as in Kombu.
            self.implements = self.implements.extend(exchange_type=frozenset({"direct"}))
        #: Queues private to this connection (exclusive, or auto-delete with x-expires):
        #: deleted, with their subscriptions, when the connection closes; kept alive
        #: meanwhile, and swept by others if this process dies (see sqsbus.expiry).
        self.temporary_queues: set[str] = set()
        #: AMQP arguments (TTL, priority, expiry) of the queues declared in this process.
        self.queue_arguments: dict[str, QueueArguments] = {}
        self.expiry = QueueExpiry(self.aws, self.options, self.directory)
        self.router.on_subscribed = self.expiry.subscribed
        #: Receivers of closed channels whose last long poll may still be in flight.
        self.stopping_receivers: list[Receiver] = []
        self.waker = Waker()
        worker_shutdown.watch()
        self._loop: Any = None
        self._tick: Any = None

    @property
    def stats(self) -> RequestStats:
        """Counted AWS requests of this connection (:class:`sqsbus.aws.RequestStats`)."""
        return self.aws.stats

    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {"port": self.default_port}

    def driver_version(self) -> str:
        return str(botocore.__version__)

    def establish_connection(self) -> Any:
        """Check credentials and reach the endpoint once, so failures show at connect."""
        if self.waker.closed:  # reconnecting after close_connection
            self.waker = Waker()
            self.acker = self._new_acker()
        require_credentials(self.aws)
        if not self.options.predefined_queues:
            try:
                self.directory.refresh()
            except TransientError as exc:
                clearer = unknown_region_error(self.options, exc)
                if clearer is None:
                    raise
                raise clearer from exc
        return super().establish_connection()

    def _new_acker(self) -> Acker:
        """A settler, with a lease keeper (and parking) unless ``lease_seconds`` is 0."""
        if self.options.lease_seconds:
            self.leases = LeaseKeeper(self.options.lease_seconds, on_cap=self._park)
            self.parking = Parking(
                publisher=self.publisher,
                leases=self.leases,
                parking_queue=lambda: self.declare_temporary_queue(self.parking_queue_name),
                resolve_home=self.directory.queue_in_scope,
            )
        return Acker(leases=self.leases, on_deleted=self._delete_payloads)

    def _delete_payloads(self, messages: list[Received]) -> None:
        """Acker hook: SQS deleted ``messages``; their S3 payloads go on a side thread."""
        if any(message.payload is not None for message in messages):
            self.side_jobs.submit(lambda: self.payloads.delete_acked(messages))

    def _park(self, message: Received) -> None:
        """Lease keeper hook: ``message`` reached SQS's 12-hour cap while held; it is parked
        on a side thread, so that the keeper goes on extending the other leases."""
        parking = self.parking
        if parking is not None:
            self.side_jobs.submit(lambda: parking.park(message))

    def declare_temporary_queue(self, queue: str, x_expires: Any = None) -> QueueRef:
        """Declare a queue private to this connection, ``x-expires`` in milliseconds."""
        self.temporary_queues.add(queue)
        EXIT_CLEANUP.track(self)  # deleted at exit if this connection is never closed
        return self.expiry.declare(queue, x_expires)

    def sweep_orphan_queues(self, limit: int | None = None) -> SweepReport:
        """Delete the temporary queues of dead processes now (see :mod:`sqsbus.expiry`).

        Reads the tags of at most ``limit`` candidates (default: all of them).
        """
        return self.expiry.sweeper.sweep(limit=limit)

    def drop_queue(self, queue: str) -> None:
        """Delete ``queue`` and its exchange subscriptions, if it exists (still, or at all).

        A parking queue is emptied first (its messages sent home); one that cannot be
        emptied, or still has messages in flight or delayed, is kept, to be swept once
        expired.
        """
        self.temporary_queues.discard(queue)
        self.expiry.release(queue)
        try:
            ref = self.directory.get(queue)
        except QueueDoesNotExist:
            return
        if queue == self.parking_queue_name:
            if empty_parking_queue(ref, self.publisher, self.directory.queue_in_scope):
                logger.error(
                    "kept parking queue %s: some messages could not be sent home",
                    queue,
                    extra=message_fields("send-home", queue=ref.name),
                )
                return
            held = self.directory.held_messages(ref)
            if held is not None:
                logger.warning("kept parking queue %s: %s", queue, held)
                return
        for exchange in self.router.subscribed_exchanges(ref):
            self.router.unsubscribe(exchange, ref)
        # Gone already: deleted meanwhile, e.g. by another connection that declared it too.
        with contextlib.suppress(QueueDoesNotExist):
            call(ref.client, "delete_queue", f"delete queue {ref.name!r}", QueueUrl=ref.url)
        self.directory.forget(ref.name)

    def drop_temporary_queues(self) -> None:
        """Delete this connection's temporary queues, with their subscriptions, and stop
        keeping them alive: at close, or at interpreter exit if it is still open."""
        for queue in list(self.temporary_queues):
            try:
                self.drop_queue(queue)
            except SQSBusError as exc:
                logger.warning("could not delete temporary queue %s: %s", queue, exc)
        self.expiry.close()

    def close_connection(self, connection: Any) -> None:
        try:
            self.side_jobs.drain()  # a parking under way ends before its message is given back
            super().close_connection(connection)  # closes channels, releasing unacked messages
        finally:
            self._join_receivers()
            if self.options.publish_linger_ms and not GROUP_COMMIT.flush():
                logger.warning(
                    "lingering messages were still unsent when the connection closed",
                    extra=message_fields("send"),
                )
            self.acker.close()  # pending acks and releases are sent before anything is deleted
            if self.leases is not None:
                self.leases.stop()
            if not self.side_jobs.drain():
                logger.warning(
                    "parking or S3 deletes were still running when the connection closed"
                )
            self.drop_temporary_queues()
            self.router.close()
            if self._loop is not None:
                self.unregister_from_event_loop(connection, self._loop)
            self.waker.close()

    def _join_receivers(self) -> None:
        """Wait for in-flight long polls (at most one poll's duration) to end and release.

        Not those of this connection's temporary queues (Celery's pidbox and reply queues):
        deleted at close with whatever they hold, they have nothing to release.
        """
        deadline = time.monotonic() + self.options.wait_time_seconds + 2
        while self.stopping_receivers:
            receiver = self.stopping_receivers.pop()
            if receiver.name in self.temporary_queues:
                continue
            receiver.join(max(0.0, deadline - time.monotonic()))

    # -- delivery -------------------------------------------------------------

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        self._loop = loop
        loop.add_reader(self.waker.fileno(), self.on_readable, connection, loop)
        if self._tick is None:
            self._tick = loop.call_repeatedly(HUB_TICK_SECONDS, _noop)

    def unregister_from_event_loop(self, connection: Any, loop: Any) -> None:
        if self._loop is loop:
            self._loop = None
            loop.remove_reader(self.waker.fileno())
            if self._tick is not None:
                self._tick.cancel()
                self._tick = None

    def on_readable(self, connection: Any = None, loop: Any = None) -> None:
        """Hub callback: hand every deliverable buffered message to its consumer."""
        self.waker.clear()
        self._deliver_buffered()

    def _deliver_buffered(self) -> int:
        delivered = 0
        for channel in list(self.channels):
            if delivered and worker_shutdown.shutting_down():
                break  # one message per call while the worker is shutting down
            if isinstance(channel, Channel) and not channel.closed:
                delivered += channel.deliver_buffered()
        return delivered

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        """Deliver buffered messages, waiting up to ``timeout`` for some to arrive.

        Once this process's Celery worker is shutting down, waits at most
        :data:`SHUTDOWN_DRAIN_SECONDS` (see :mod:`sqsbus.kombu.worker_shutdown`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.waker.clear()
            if self._deliver_buffered():
                return
            now = time.monotonic()
            if worker_shutdown.shutting_down():
                deadline = min(
                    math.inf if deadline is None else deadline, now + SHUTDOWN_DRAIN_SECONDS
                )
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                raise TimeoutError()  # socket.timeout, which Kombu expects
            # In ticks, so that a shutdown that began meanwhile is noticed.
            self.waker.wait(
                HUB_TICK_SECONDS if remaining is None else min(remaining, HUB_TICK_SECONDS)
            )
