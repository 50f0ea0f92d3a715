"""The fields of sqsbus log records about messages, for structured (JSON) log handlers.

Every record sqsbus logs about a message passes ``extra=message_fields(...)``, so it carries
the same four attributes, whatever its text says (the text stays for people)::

    sqsbus_queue        the SQS queue name (a parked message's home queue)
    sqsbus_message_id   the SQS message id (ids of a batch, comma-separated; None if unsent)
    sqsbus_operation    what sqsbus was doing: one of OPERATIONS
    sqsbus_attempt      a received message's delivery count (SQS's ApproximateReceiveCount),
                        or the try of a send or settle sqsbus retries; None if unknown

The names start with ``sqsbus_`` so they never collide with ``LogRecord``'s own attributes or
an application's. Queue names and message ids can come from messages (untrusted), so they are
bounded and kept to printable ASCII here, and scrubbed of registered secrets.
"""

from __future__ import annotations

import re
from typing import Final

from sqsbus.redact import scrub

__all__ = [
    "ATTEMPT",
    "FIELDS",
    "MESSAGE_ID",
    "OPERATION",
    "OPERATIONS",
    "QUEUE",
    "message_fields",
]

QUEUE: Final = "sqsbus_queue"
MESSAGE_ID: Final = "sqsbus_message_id"
OPERATION: Final = "sqsbus_operation"
ATTEMPT: Final = "sqsbus_attempt"
#: Every field a record about a message carries.
FIELDS: Final = (QUEUE, MESSAGE_ID, OPERATION, ATTEMPT)

#: What sqsbus was doing with the message.
OPERATIONS: Final = frozenset(
    {
        "send",  # publishing to a queue (SendMessageBatch)
        "publish",  # publishing to an exchange's SNS topic
        "receive",  # taking it in: S3 payloads, delay hops decided, unreadable ones
        "deliver",  # handing it to the application: envelope, TTL, bindings
        "lease",  # keeping it invisible while held
        "park",  # moving it to the parking queue at SQS's 12-hour cap
        "send-home",  # sending a parked message back to its queue
        "delay-hop",  # re-sending a delayed message that surfaced early
        "dead-letter",  # moving it to the dead-letter queue
        "delete",  # deleting it (ack)
        "change-visibility",  # releasing it or setting its visibility (requeue, backoff)
        "delete-payload",  # deleting its large payload from S3
    }
)

#: Longest queue name or message id (list) kept in a field.
MAX_FIELD_LENGTH: Final = 512
_UNPRINTABLE: Final = re.compile(r"[^\x21-\x7e ]")


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    text = _UNPRINTABLE.sub("?", scrub(str(value)))
    if len(text) > MAX_FIELD_LENGTH:
        text = text[: MAX_FIELD_LENGTH - 3] + "..."
    return text


def message_fields(
    operation: str,
    *,
    queue: str | None = None,
    message_id: str | None = None,
    attempt: int | None = None,
) -> dict[str, object]:
    """The ``extra`` of a log record about a message: all of :data:`FIELDS`, always.

    ``operation`` must be one of :data:`OPERATIONS` (a ``ValueError`` otherwise: the set is
    what dashboards filter on).
    """
    if operation not in OPERATIONS:
        raise ValueError(f"unknown sqsbus log operation {operation!r}; one of {sorted(OPERATIONS)}")
    return {
        QUEUE: _clean(queue),
        MESSAGE_ID: _clean(message_id),
        OPERATION: operation,
        ATTEMPT: attempt if isinstance(attempt, int) and attempt >= 0 else None,
    }
