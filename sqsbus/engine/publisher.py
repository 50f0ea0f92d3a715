"""Publishing messages to SQS queues, with the size and FIFO rules applied.

Sends go through :data:`~sqsbus.engine.group_commit.GROUP_COMMIT`, so concurrent
publishers share ``SendMessageBatch`` calls.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, Final

from sqsbus.engine.delays import MAX_DELAY_SECONDS
from sqsbus.engine.group_commit import GROUP_COMMIT
from sqsbus.errors import ConfigurationError, MessageTooLarge
from sqsbus.queues import QueueDirectory, QueueRef

logger = logging.getLogger(__name__)

#: SQS accepts at most 10 message attributes per message.
MAX_MESSAGE_ATTRIBUTES: Final = 10


def message_size(body: str, attributes: Mapping[str, Any]) -> int:
    """Bytes SQS counts against the size limit: body plus attribute names, types, values."""
    size = len(body.encode("utf-8"))
    for name, value in attributes.items():
        size += len(name.encode("utf-8"))
        if isinstance(value, Mapping):
            size += len(str(value.get("DataType", "")).encode("utf-8"))
            if "StringValue" in value:
                size += len(str(value["StringValue"]).encode("utf-8"))
            if "BinaryValue" in value:
                size += len(bytes(value["BinaryValue"]))
    return size


class Publisher:
    """Checks and sends messages; :meth:`send` returns only after SQS accepted it."""

    def __init__(
        self,
        directory: QueueDirectory,
        *,
        fifo_message_group_id: str = "default",
        linger_ms: int = 0,
    ) -> None:
        self.directory = directory
        self.fifo_message_group_id = fifo_message_group_id
        #: With a linger, :meth:`send` returns at once and the message is sent within
        #: ``linger_ms`` with others (fire and forget; see ``publish_linger_ms``).
        self.linger_ms = linger_ms

    def send(
        self,
        queue: QueueRef,
        body: str,
        *,
        message_attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        delay_seconds: int | None = None,
        confirm: bool = False,
    ) -> str:
        """Send ``body`` to ``queue``; return the SQS message id ("" when lingering).

        ``confirm`` waits for SQS to accept the message even with a linger (for moves,
        where the original is deleted next).
        """
        attributes = dict(message_attributes or {})
        if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
            raise ConfigurationError(
                f"message for queue {queue.name!r} has {len(attributes)} message attributes; "
                f"SQS allows at most {MAX_MESSAGE_ATTRIBUTES}. Move the rest into the body."
            )
        limit = self.directory.max_message_size(queue)
        size = message_size(body, attributes)
        if size > limit:
            raise MessageTooLarge(
                f"message of {size} bytes is over the {limit}-byte limit of queue "
                f"{queue.name!r}; nothing was sent. Make the payload smaller or send a "
                "reference to data stored elsewhere (e.g. S3)."
            )
        params: dict[str, Any] = {"MessageBody": body}
        if attributes:
            params["MessageAttributes"] = attributes
        if queue.is_fifo:
            params["MessageGroupId"] = group_id or self.fifo_message_group_id
            if deduplication_id:
                params["MessageDeduplicationId"] = deduplication_id
            elif not self.directory.content_based_deduplication(queue):
                params["MessageDeduplicationId"] = uuid.uuid4().hex
            if delay_seconds:
                logger.warning(
                    "FIFO queue %s takes no per-message delay; sending %s-second-delayed "
                    "message without delay (set DelaySeconds on the queue instead)",
                    queue.name,
                    delay_seconds,
                )
        else:
            if group_id:
                params["MessageGroupId"] = group_id  # SQS fair queues on standard queues
            if delay_seconds:
                params["DelaySeconds"] = max(0, min(MAX_DELAY_SECONDS, int(delay_seconds)))
        if self.linger_ms and not confirm:
            GROUP_COMMIT.send_later(queue, params, size, self.linger_ms / 1000)
            return ""
        return GROUP_COMMIT.send(queue, params, size)
