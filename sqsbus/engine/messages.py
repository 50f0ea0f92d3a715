"""The message objects the engine hands around."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqsbus.engine.pointer import PayloadPointer
from sqsbus.log_fields import message_fields
from sqsbus.queues import QueueRef


@dataclass
class Received:
    """One message received from SQS, not yet deleted."""

    queue: QueueRef
    #: The application-level queue name it was consumed under (e.g. Kombu's).
    name: str
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    message_attributes: dict[str, Any] = field(default_factory=dict)
    #: Priority band of the queue it came from (0 unless the queue has priorities).
    priority: int = 0
    #: Deleted, released or given a new visibility: no longer held by the application.
    settled: bool = False
    #: Set when the message was parked (see :mod:`sqsbus.engine.parking`): the queue it
    #: belongs to, while :attr:`queue` is the parking queue holding it.
    home: QueueRef | None = None
    #: Where the body was stored in S3, once resolved (large payloads); None otherwise.
    payload: PayloadPointer | None = None
    #: Given back by the application and buffered again for redelivery in this process.
    requeued: bool = False

    @property
    def ordered_group(self) -> tuple[str, str] | None:
        """(queue URL, MessageGroupId) of a FIFO queue's message: those of one group are
        handed out one at a time, in order; None for a standard queue's."""
        group = self.attributes.get("MessageGroupId")
        return (self.queue.url, group) if group and self.queue.is_fifo else None

    @property
    def redelivered(self) -> bool:
        """Delivered before: received more than once, or requeued by the application."""
        return self.requeued or self.receive_count > 1

    @property
    def receive_count(self) -> int:
        """How many times SQS has delivered this message (1 on first delivery)."""
        try:
            return int(self.attributes.get("ApproximateReceiveCount", "1"))
        except ValueError:
            return 1

    def string_attributes(self) -> dict[str, str]:
        """Message attributes of type String/Number, as plain strings."""
        result: dict[str, str] = {}
        for key, value in self.message_attributes.items():
            if isinstance(value, dict) and "StringValue" in value:
                result[key] = str(value["StringValue"])
        return result

    @property
    def sent_at(self) -> float | None:
        """When it was sent (epoch seconds, from SQS's SentTimestamp)."""
        try:
            return int(self.attributes["SentTimestamp"]) / 1000
        except (KeyError, ValueError):
            return None

    def log_fields(self, operation: str) -> dict[str, object]:
        """``extra`` of a log record about this message (:mod:`sqsbus.log_fields`): its
        queue (a parked message's home), id and delivery count."""
        return message_fields(
            operation,
            queue=(self.home or self.queue).name,
            message_id=self.message_id,
            attempt=self.receive_count,
        )

    @classmethod
    def from_sqs(cls, queue: QueueRef, name: str, raw: dict[str, Any]) -> Received:
        return cls(
            queue=queue,
            name=name,
            message_id=str(raw.get("MessageId", "")),
            receipt_handle=str(raw["ReceiptHandle"]),
            body=str(raw.get("Body", "")),
            attributes={str(k): str(v) for k, v in (raw.get("Attributes") or {}).items()},
            message_attributes=dict(raw.get("MessageAttributes") or {}),
        )


def batch_log_fields(
    messages: Sequence[Received], operation: str, *, attempt: int | None = None
) -> dict[str, object]:
    """``extra`` of a log record about several messages of one queue: their ids,
    comma-separated; ``attempt`` is the try of the operation sqsbus retries (if any)."""
    if len(messages) == 1 and attempt is None:
        return messages[0].log_fields(operation)
    first = messages[0] if messages else None
    return message_fields(
        operation,
        queue=(first.home or first.queue).name if first is not None else None,
        message_id=",".join(m.message_id for m in messages) or None,
        attempt=attempt,
    )
