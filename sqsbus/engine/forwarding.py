"""Sending a received message on instead of delivering it: delay hops and dead letters.

Both send a copy (confirmed by SQS) before the original is deleted, so a failure
can only repeat a message, never lose it.  A large payload travels as its S3
pointer, so the copy refers to the same object.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from sqsbus.engine import delays
from sqsbus.engine.acker import Acker
from sqsbus.engine.messages import Received
from sqsbus.engine.parking import home_attributes
from sqsbus.engine.payloads import as_sent
from sqsbus.engine.publisher import Publisher, message_size
from sqsbus.errors import SQSBusError
from sqsbus.limits import MAX_MESSAGE_ATTRIBUTES
from sqsbus.queues import QueueDirectory
from sqsbus.telemetry import queue as queue_metrics

logger = logging.getLogger(__name__)

#: Message attributes telling why and from where a message was dead-lettered.
DEAD_LETTER_REASON_ATTRIBUTE: Final = "sqsbus.dead-letter-reason"
DEAD_LETTER_SOURCE_ATTRIBUTE: Final = "sqsbus.dead-letter-source"
#: Seconds a message waits before another try when its move to the DLQ failed.
DEAD_LETTER_RETRY_SECONDS: Final = 30


class Forwarder:
    """Hops early delayed messages and moves messages to dead-letter queues."""

    def __init__(self, directory: QueueDirectory, publisher: Publisher, acker: Acker) -> None:
        self.directory = directory
        self.publisher = publisher
        self.acker = acker

    def hop_if_early(self, received: Received) -> bool:
        """Send ``received`` again with its remaining delay if it is not due yet (a native
        delay longer than SQS's 15 minutes); True if it was taken out of delivery."""
        if received.queue.is_fifo:
            # sqsbus never delays a FIFO message natively (SQS takes no per-message delay
            # there): a due time on one came from some other sender, and a hop would come
            # straight back, again and again.
            return False
        remaining = delays.surfaced_early(received)
        if remaining is None:
            return False
        eta = time.time() + remaining
        try:
            # The one resend path: group and trace header travel with the hop.
            self.publisher.resend(
                received.queue,
                received,
                received.body,
                delays.resendable_attributes(received),
                delay_seconds=delays.delay_for(eta),
            )
        except SQSBusError as exc:
            # Keep the original out of sight instead (counts one more receive).
            logger.warning(
                "could not re-send delayed message %s of queue %s (%s); hiding it for "
                "its remaining delay instead",
                received.message_id,
                received.queue.name,
                exc,
                extra=received.log_fields("delay-hop"),
            )
            self.acker.set_visibility([received], delays.delay_for(eta))
            return True
        queue_metrics(received.queue.name).delay_hop()
        self.acker.delete([received])
        return True

    def dead_letter(self, received: Received, reason: str, *, cause: str) -> bool:
        """Move ``received`` to its queue's dead-letter queue with ``reason``.

        False if the queue has none (or it cannot be reached): the caller decides.
        The copy is confirmed by SQS before the original is deleted. ``cause`` is the
        reason's short name in the metrics (``rejected``, ``unreadable``, ...).
        """
        source = received.home or received.queue
        dead = self.directory.dead_letter_queue_of(source)
        if dead is None:
            return False
        attributes = home_attributes(received)  # without parking attributes
        attributes.pop(delays.ETA_ATTRIBUTE, None)
        # A large payload moves as its pointer: the copy refers to the same S3 object.
        body, attributes = as_sent(received, attributes)
        # Reason and source as attributes where they fit (SQS: 10 attributes, and the
        # message must stay within the dead-letter queue's size limit); the log has both.
        limit = self.directory.max_message_size(dead)
        for name, value in (
            (DEAD_LETTER_REASON_ATTRIBUTE, reason[:1024]),
            (DEAD_LETTER_SOURCE_ATTRIBUTE, source.name),
        ):
            extra = {name: {"DataType": "String", "StringValue": value}}
            if (
                len(attributes) < MAX_MESSAGE_ATTRIBUTES
                and message_size(body, {**attributes, **extra}) <= limit
            ):
                attributes.update(extra)
        try:
            self.publisher.resend(dead, received, body, attributes)
        except SQSBusError as exc:
            logger.error(
                "could not move message %s of queue %s to dead-letter queue %s (%s); "
                "trying again when it is delivered again (SQS moves it after its "
                "maximum receives)",
                received.message_id,
                received.queue.name,
                dead.name,
                exc,
                extra=received.log_fields("dead-letter"),
            )
            self.acker.set_visibility([received], DEAD_LETTER_RETRY_SECONDS)
            return True
        logger.warning(
            "moved message %s of queue %s to dead-letter queue %s: %s",
            received.message_id,
            received.queue.name,
            dead.name,
            reason,
            extra=received.log_fields("dead-letter"),
        )
        queue_metrics(source.name).dead_lettered(cause)
        received.payload = None  # its S3 object now belongs to the dead-letter copy
        self.acker.delete([received])
        return True
