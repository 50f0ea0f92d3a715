"""Parking: keep a message held past SQS's 12-hour visibility cap out of sight.

SQS lets a received message stay invisible for at most 12 hours after its
receive.  When the :class:`~sqsbus.engine.leases.LeaseKeeper` reaches that cap
for a message the application still holds, :meth:`Parking.park` moves it to a
*parking queue* private to this process: it sends a copy there, receives that
copy (a fresh receive, so a fresh 12 hours), swaps the held message over to the
copy and deletes the original.  Nobody else consumes the parking queue, so the
message is never delivered twice while it is held; acking deletes the copy.

A parked message the application gives back (requeue, or unacked at close) is
sent home to its source queue (:meth:`Parking.send_home`).  Copies carry their
source queue's URL in :data:`PARKED_FROM_ATTRIBUTE`, so the copies of a process
that died are sent home by whoever sweeps its orphaned parking queue.  That URL is
untrusted (anyone who can send to a parking queue writes it): it is resolved through
``resolve_home``, which accepts only queues of the connection's own scope, and a copy
whose home is refused stays in the parking queue.  A large payload travels as its S3
pointer (:func:`~sqsbus.engine.payloads.as_sent`).

Copies are sent with :meth:`~sqsbus.engine.publisher.Publisher.resend`; originals and
copies are deleted with :func:`delete_one`, synchronously and not through the acker,
whose ``on_deleted`` would delete the S3 payload the other one still points to.  A delete
SQS still refuses after the retries is logged as an error with what follows from it: the
original, or a copy sent home, is delivered once more.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Final

from sqsbus.backoff import SQS_BATCH_RETRY
from sqsbus.engine import operations
from sqsbus.engine.delays import resendable_attributes
from sqsbus.engine.leases import LeaseKeeper
from sqsbus.engine.messages import Received
from sqsbus.engine.payloads import as_sent
from sqsbus.engine.publisher import Publisher
from sqsbus.errors import SQSBusError, TransientError
from sqsbus.limits import MAX_MESSAGE_ATTRIBUTES, MAX_RECEIVE_MESSAGES
from sqsbus.queues import QueueRef
from sqsbus.telemetry import queue as queue_metrics

logger = logging.getLogger(__name__)

#: Message attribute: URL of the queue a parked copy belongs to.
PARKED_FROM_ATTRIBUTE: Final = "sqsbus.parked-from"
#: Message attribute: identifies one parking, so the receive finds its own copy.
PARKING_TOKEN_ATTRIBUTE: Final = "sqsbus.parking-token"
#: Name (after the queue name prefix) of every parking queue: one per connection.
PARKING_QUEUE_PREFIX: Final = "sqsbus-parking-"
#: Seconds :meth:`Parking.park` keeps receiving before it gives up on its copy.
RECEIVE_COPY_SECONDS: Final = 30.0


def home_attributes(message: Received) -> dict[str, object]:
    """``message``'s attributes without the parking ones, ready to send home."""
    attributes = resendable_attributes(message)
    attributes.pop(PARKED_FROM_ATTRIBUTE, None)
    attributes.pop(PARKING_TOKEN_ATTRIBUTE, None)
    return attributes


class Parking:
    """Moves held messages into this process's parking queue, and back home."""

    def __init__(
        self,
        *,
        publisher: Publisher,
        leases: LeaseKeeper,
        parking_queue: Callable[[], QueueRef],
        resolve_home: Callable[[str], QueueRef],
    ) -> None:
        self.publisher = publisher
        self.leases = leases
        #: Creates (once) and returns the parking queue of this process.
        self._parking_queue = parking_queue
        #: A queue ref for a home queue URL (from :data:`PARKED_FROM_ATTRIBUTE`); raises
        #: :class:`SQSBusError` for a URL outside the connection's scope.
        self._resolve_home = resolve_home
        #: Messages parked so far.
        self.parked = 0

    def park(self, message: Received) -> None:
        """Move ``message`` (held, at its visibility cap) to the parking queue."""
        body, attributes = as_sent(message, home_attributes(message))
        if len(attributes) > MAX_MESSAGE_ATTRIBUTES - 2:
            logger.warning(
                "message %s of queue %s reached SQS's 12-hour visibility cap but has too many "
                "attributes to be parked; SQS will deliver it again",
                message.message_id,
                message.queue.name,
                extra=message.log_fields("park"),
            )
            return
        home = message.home or message.queue
        parking = self._parking_queue()
        token = uuid.uuid4().hex
        attributes[PARKED_FROM_ATTRIBUTE] = {"DataType": "String", "StringValue": home.url}
        attributes[PARKING_TOKEN_ATTRIBUTE] = {"DataType": "String", "StringValue": token}
        self.publisher.resend(parking, message, body, attributes, deduplication_id=token)
        copy = self._receive_copy(parking, message.name, token)
        if copy is None:
            logger.error(
                "parked a copy of message %s of queue %s but could not receive it back; "
                "SQS will deliver the original again and the copy returns home when the "
                "parking queue is swept",
                message.message_id,
                home.name,
                extra=message.log_fields("park"),
            )
            return
        original_queue, original_handle = message.queue, message.receipt_handle
        # Settled while we parked it: the copy is not needed.  Settled after this check:
        # the settle acts on the copy (or finds its handle stale), the original goes below.
        settled = message.settled
        if not settled:
            message.queue = copy.queue
            message.receipt_handle = copy.receipt_handle
            message.message_attributes = copy.message_attributes
            message.home = home
        if settled:
            problem = delete_one(parking, copy.receipt_handle)
            if problem:
                logger.error(
                    "message %s of queue %s was settled while it was being parked, and its "
                    "copy could not be deleted from %s (%s); the copy goes back to queue %s "
                    "when the parking queue is next read or swept",
                    message.message_id,
                    home.name,
                    parking.name,
                    problem,
                    home.name,
                    extra=message.log_fields("park"),
                )
            return
        self.leases.hold([message])
        problem = delete_one(original_queue, original_handle)
        if problem:
            logger.error(
                "parked message %s of queue %s, but its original could not be deleted (%s); "
                "SQS will deliver the original again while the parked copy is still held",
                message.message_id,
                home.name,
                problem,
                extra=message.log_fields("park"),
            )
            return
        # Counted once the original is gone: the move is complete.
        self.parked += 1
        queue_metrics(home.name).parked()
        logger.info(
            "message %s of queue %s reached SQS's 12-hour visibility cap; parked in %s",
            message.message_id,
            home.name,
            parking.name,
            extra=message.log_fields("park"),
        )

    def _receive_copy(self, parking: QueueRef, name: str, token: str) -> Received | None:
        deadline = time.monotonic() + RECEIVE_COPY_SECONDS
        while time.monotonic() < deadline:
            for received in operations.receive(
                parking,
                name,
                max_messages=MAX_RECEIVE_MESSAGES,
                wait_time_seconds=1,
                visibility_timeout=self.leases.lease_seconds,
            ):
                value = received.message_attributes.get(PARKING_TOKEN_ATTRIBUTE) or {}
                if value.get("StringValue") == token:
                    return received
                # Another parking's copy nobody holds (its parking gave up): send it home.
                send_home_by_attribute(self.publisher, received, self._resolve_home)
        return None

    def send_home(self, messages: Sequence[Received]) -> list[Received]:
        """Send parked ``messages`` back to their home queues (visible at once) and delete
        the parked copies; return the messages that are not parked (nothing done)."""
        others: list[Received] = []
        for message in messages:
            home = message.home
            if home is None:
                others.append(message)
                continue
            self.leases.forget([message])
            message.settled = True
            send_home(self.publisher, message, home)
        return others


def parked_from(message: Received) -> str | None:
    """The home queue URL a parked copy carries."""
    value = message.message_attributes.get(PARKED_FROM_ATTRIBUTE)
    url = value.get("StringValue") if isinstance(value, dict) else None
    return str(url) if url else None


def send_home_by_attribute(
    publisher: Publisher, message: Received, resolve_home: Callable[[str], QueueRef]
) -> bool:
    """Send a parked copy home to the queue its attribute names, if that queue is one
    ``resolve_home`` accepts; False (the copy stays where it is) otherwise."""
    url = parked_from(message)
    try:
        if url is None:
            raise SQSBusError(f"it has no {PARKED_FROM_ATTRIBUTE} attribute")
        home = resolve_home(url)
    except SQSBusError as exc:
        logger.error(
            "message %s in parking queue %s cannot be sent home: %s; it stays there",
            message.message_id,
            message.queue.name,
            exc,
            extra=message.log_fields("send-home"),
        )
        return False
    return send_home(publisher, message, home)


def send_home(publisher: Publisher, message: Received, home: QueueRef) -> bool:
    """Send a parked copy to ``home`` (confirmed), then delete it; False if sending failed."""
    body, attributes = as_sent(message, home_attributes(message))
    try:
        publisher.resend(home, message, body, attributes)
    except SQSBusError as exc:
        logger.error(
            "could not send parked message %s home to queue %s (%s); it stays in %s",
            message.message_id,
            home.name,
            exc,
            message.queue.name,
            extra=message.log_fields("send-home"),
        )
        return False
    problem = delete_one(message.queue, message.receipt_handle)
    if problem:
        logger.error(
            "sent parked message %s home to queue %s, but its copy could not be deleted from "
            "%s (%s); the copy is sent home again when the parking queue is next read or swept",
            message.message_id,
            home.name,
            message.queue.name,
            problem,
            extra=message.log_fields("send-home"),
        )
    return True


def delete_one(queue: QueueRef, receipt_handle: str) -> str | None:
    """Delete one message now, retrying what SQS refuses for a transient reason; None once
    it is deleted, else what went wrong (a stale receipt handle is not retried)."""
    failures = 0
    while True:
        try:
            refused = operations.delete(queue, [receipt_handle])
        except TransientError as exc:
            problem = str(exc)
        except SQSBusError as exc:
            return str(exc)
        else:
            if not refused:
                return None
            failure = refused[0]
            problem = f"{failure.code}: {failure.message}" if failure.message else failure.code
            if failure.sender_fault or failure.stale_receipt:
                return problem
        failures += 1
        if SQS_BATCH_RETRY.exhausted(failures):
            return f"{problem}, after {failures} attempts"
        time.sleep(SQS_BATCH_RETRY.delay(failures))


def empty_parking_queue(
    parking: QueueRef, publisher: Publisher, resolve_home: Callable[[str], QueueRef]
) -> int:
    """Send every visible message of a parking queue home; return how many could not be.

    For parking queues nobody holds any more (closing, or its process died).
    """
    failed = 0
    while True:
        messages = operations.receive(
            parking,
            parking.name,
            max_messages=MAX_RECEIVE_MESSAGES,
            wait_time_seconds=0,
            visibility_timeout=60,
        )
        if not messages:
            return failed
        for message in messages:
            if not send_home_by_attribute(publisher, message, resolve_home):
                failed += 1
