"""Publishing messages to SQS queues, with the size and FIFO rules applied.

Sends go through :data:`~sqsbus.engine.group_commit.GROUP_COMMIT`, so concurrent
publishers share ``SendMessageBatch`` calls.  A message too large for its queue
goes through S3 first when a :class:`~sqsbus.engine.payloads.PayloadStore` has a
bucket (then only its small pointer joins a batch); otherwise it is refused.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from sqsbus.codec import REFUSED_CHARACTERS
from sqsbus.engine.group_commit import GROUP_COMMIT
from sqsbus.engine.messages import Received
from sqsbus.engine.payloads import PayloadStore
from sqsbus.engine.pointer import RESERVED_ATTRIBUTES, parse_pointer, reserved_attribute
from sqsbus.engine.publish_batch import BATCH_LINGER_MS, current_batch
from sqsbus.errors import ConfigurationError, MessageTooLarge, SQSBusError, TransientError
from sqsbus.limits import MAX_ATTRIBUTE_NAME_LENGTH, MAX_DELAY_SECONDS
from sqsbus.limits import MAX_MESSAGE_ATTRIBUTES as MAX_MESSAGE_ATTRIBUTES  # re-exported: Kombu
from sqsbus.queues import QueueDirectory, QueueRef

logger = logging.getLogger(__name__)

_ATTRIBUTE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")
_ATTRIBUTE_TYPE: Final = re.compile(r"(String|Number|Binary)(\.[A-Za-z0-9_.-]+)?")


def check_message_attributes(target: str, attributes: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigurationError` for what SQS would refuse in message attributes
    of a message for ``target`` (``"queue 'q'"``, ``"exchange 'x'"``).

    SQS's rules: at most 10; names of letters, digits, ``_``, ``-`` and ``.`` (not at
    either end, never two in a row), at most 256 long, not starting with ``AWS.`` or
    ``Amazon.``; a type of ``String``, ``Number`` or ``Binary`` (with an optional custom
    suffix) and its value; string values of the characters SQS accepts in a body.
    """
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        raise ConfigurationError(
            f"message for {target} has {len(attributes)} message attributes; "
            f"SQS allows at most {MAX_MESSAGE_ATTRIBUTES}. Move the rest into the body."
        )
    for name, value in attributes.items():
        where = f"message attribute {name!r} of a message for {target}"
        if (
            not isinstance(name, str)
            or len(name) > MAX_ATTRIBUTE_NAME_LENGTH
            or not _ATTRIBUTE_NAME.fullmatch(name)
            or name.startswith(".")
            or name.endswith(".")
            or ".." in name
            or name.lower().startswith(("aws.", "amazon."))
        ):
            raise ConfigurationError(
                f"{where}: SQS takes names of at most {MAX_ATTRIBUTE_NAME_LENGTH} letters, "
                "digits, '_', '-' and '.' ('.' not first, last or doubled), not starting "
                "with 'AWS.' or 'Amazon.'; rename it"
            )
        data_type = value.get("DataType") if isinstance(value, Mapping) else None
        if not isinstance(data_type, str) or not _ATTRIBUTE_TYPE.fullmatch(data_type):
            raise ConfigurationError(
                f"{where} must be a dict like {{'DataType': 'String', 'StringValue': '...'}} "
                "(DataType String, Number or Binary)"
            )
        assert isinstance(value, Mapping)
        if data_type.startswith("Binary"):
            if not isinstance(value.get("BinaryValue"), bytes | bytearray):
                raise ConfigurationError(f"{where} is Binary: give its bytes as 'BinaryValue'")
            continue
        text = value.get("StringValue")
        if not isinstance(text, str) or not text:
            raise ConfigurationError(f"{where} is {data_type}: give a non-empty 'StringValue'")
        refused = REFUSED_CHARACTERS.search(text)
        if refused is not None:
            raise ConfigurationError(
                f"{where} contains the character U+{ord(refused.group()):04X}, which SQS "
                "refuses; send such values in the body or as a Binary attribute"
            )


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


def _is_forwarded_pointer(queue: QueueRef, body: str, attributes: Mapping[str, Any]) -> bool:
    """True for a message already in the S3 pointer format (moved or hopped as is).

    The size attribute with any other body would make consumers look for an S3 object.
    """
    reserved = reserved_attribute(attributes)
    if reserved is None:
        return False
    try:
        parse_pointer(body)
    except ValueError:
        raise ConfigurationError(
            f"message for queue {queue.name!r} has the message attribute {reserved!r}, "
            f"which marks payloads stored in S3 ({' and '.join(RESERVED_ATTRIBUTES)} are "
            "reserved); rename it"
        ) from None
    return True


class Publisher:
    """Checks and sends messages; :meth:`send` returns only after SQS accepted it."""

    def __init__(
        self,
        directory: QueueDirectory,
        *,
        fifo_message_group_id: str = "default",
        linger_ms: int = 0,
        payloads: PayloadStore | None = None,
    ) -> None:
        self.directory = directory
        #: Where large payloads go (``large_payload_bucket``); None: nowhere.
        self.payloads = payloads
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
        check_message_attributes(f"queue {queue.name!r}", attributes)
        forwarded = _is_forwarded_pointer(queue, body, attributes)
        limit = self.directory.max_message_size(queue)
        size = message_size(body, attributes)
        stored = None
        if not forwarded and self.payloads is not None and self.payloads.wants(size, limit):
            body, attributes, stored = self.payloads.offload(body, attributes, queue=queue.name)
            size = message_size(body, attributes)
        elif size > limit:
            raise MessageTooLarge(
                f"message of {size} bytes is over the {limit}-byte limit of queue "
                f"{queue.name!r}; nothing was sent. Set the transport option "
                "large_payload_bucket to send large payloads through S3 (docs/large-payloads.md), "
                "or make the payload smaller."
            )
        payloads = self.payloads
        # Run once SQS refuses the pointer for good: now (raised here) or later (queued).
        discard_payload = (
            None if stored is None or payloads is None else lambda: payloads.discard([stored])
        )
        try:
            return self._send(
                queue,
                body,
                attributes,
                size,
                group_id,
                deduplication_id,
                delay_seconds,
                confirm,
                discard_payload,
            )
        except SQSBusError as exc:
            if discard_payload is not None:
                if isinstance(exc, TransientError):
                    # SQS may have taken the message after all: keep what it points to.
                    logger.warning("keeping payload %s of a send that may have failed", stored)
                else:
                    discard_payload()
            raise

    def resend(
        self,
        queue: QueueRef,
        message: Received,
        body: str,
        attributes: Mapping[str, Any],
        *,
        deduplication_id: str | None = None,
    ) -> str:
        """Send a copy of the received ``message`` to ``queue``, confirmed, in its message group.

        On a FIFO queue the copy is deduplicated by ``deduplication_id`` (by default the
        message's id), so sending it again after an unanswered call stores it once.
        """
        return self.send(
            queue,
            body,
            message_attributes=attributes,
            group_id=message.attributes.get("MessageGroupId"),
            deduplication_id=(deduplication_id or message.message_id) if queue.is_fifo else None,
            confirm=True,
        )

    def _send(
        self,
        queue: QueueRef,
        body: str,
        attributes: dict[str, Any],
        size: int,
        group_id: str | None,
        deduplication_id: str | None,
        delay_seconds: int | None,
        confirm: bool,
        on_refused: Callable[[], object] | None = None,
    ) -> str:
        """Send, or queue to send (lingering, in a publish batch); ``on_refused`` runs if a
        queued message is then refused (a refusal while waiting raises instead)."""
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
        if confirm:
            return GROUP_COMMIT.send(queue, params, size)
        batch = current_batch()
        if batch is not None:
            linger = (self.linger_ms or BATCH_LINGER_MS) / 1000
            ticket = GROUP_COMMIT.send_later(
                queue, params, size, linger, owned=True, on_refused=on_refused
            )
            batch.add(ticket)
            return ""
        if self.linger_ms:
            linger = self.linger_ms / 1000
            GROUP_COMMIT.send_later(queue, params, size, linger, on_refused=on_refused)
            return ""
        return GROUP_COMMIT.send(queue, params, size)
