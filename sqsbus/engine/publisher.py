"""Publishing messages to SQS queues, with the size and FIFO rules applied.

Sends go through :data:`~sqsbus.engine.group_commit.GROUP_COMMIT`, so concurrent
publishers share ``SendMessageBatch`` calls.  A message too large for its queue
goes through S3 first when a :class:`~sqsbus.engine.payloads.PayloadStore` has a
bucket (then only its small pointer joins a batch); otherwise it is refused.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqsbus.codec import REFUSED_CHARACTERS
from sqsbus.engine.group_commit import GROUP_COMMIT, Ticket
from sqsbus.engine.messages import Received
from sqsbus.engine.payloads import PayloadStore
from sqsbus.engine.pointer import (
    RESERVED_ATTRIBUTES,
    PayloadPointer,
    parse_pointer,
    reserved_attribute,
)
from sqsbus.engine.publish_batch import BATCH_LINGER_MS, current_batch
from sqsbus.errors import ConfigurationError, MessageTooLarge, SQSBusError, TransientError
from sqsbus.limits import MAX_ATTRIBUTE_NAME_LENGTH, MAX_DELAY_SECONDS, MAX_MESSAGE_ATTRIBUTES
from sqsbus.log_fields import message_fields
from sqsbus.queues import QueueAttributes, QueueRef

logger = logging.getLogger(__name__)

#: Message system attribute carrying the X-Ray trace header (a copy keeps it).
TRACE_HEADER: Final = "AWSTraceHeader"
#: Seconds :meth:`Publisher.resend_all` waits for SQS's answers by default.
RESEND_TIMEOUT: Final = 60.0
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


@dataclass(frozen=True)
class Copy:
    """A received message to send on elsewhere, with the body and attributes it carries."""

    message: Received
    body: str
    attributes: Mapping[str, Any]
    #: Deduplicates the copy on a FIFO queue (default: the message's id).
    deduplication_id: str | None = None
    #: Seconds SQS keeps the copy invisible (a standard queue's ``DelaySeconds``).
    delay_seconds: int | None = None


@dataclass(frozen=True)
class _Outgoing:
    """A message checked (and offloaded to S3 if it had to be), ready to send."""

    body: str
    attributes: dict[str, Any]
    size: int
    #: Where its payload went in S3 (None: not offloaded), and how to delete it.
    stored: PayloadPointer | None = None
    discard: Callable[[], object] | None = None

    def failed(self, error: SQSBusError) -> None:
        """Delete the offloaded payload once the send failed, unless SQS may have the
        message anyway (a transient failure)."""
        if self.discard is None:
            return
        if isinstance(error, TransientError):
            logger.warning(
                "keeping payload %s of a message whose send may have failed",
                self.stored,
                extra=message_fields("send"),
            )
        else:
            self.discard()


class Publisher:
    """Checks and sends messages; :meth:`send` returns only after SQS accepted it.

    Copies of received messages (dead letters, parked messages, moves between queues) go
    through :meth:`resend` or :meth:`resend_all` and nowhere else: same checks, same
    batches, and each keeps its body, attributes, message group and trace header.
    """

    def __init__(
        self,
        directory: QueueAttributes,
        *,
        fifo_message_group_id: str = "default",
        linger_ms: int = 0,
        payloads: PayloadStore | None = None,
    ) -> None:
        #: Reads each queue's size limit and deduplication setting.
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
        published: bool = True,
    ) -> str:
        """Send ``body`` to ``queue``; return the SQS message id ("" when lingering).

        ``confirm`` waits for SQS to accept the message even with a linger (for moves,
        where the original is deleted next). ``published`` counts it in the metrics as a
        message the application published (not, say, a delayed message's hop).
        """
        started = time.monotonic() if published else None
        outgoing = self._prepare(queue, body, message_attributes or {})
        try:
            params = self._params(queue, outgoing, group_id, deduplication_id, delay_seconds)
            return self._dispatch(queue, params, outgoing, confirm, started)
        except SQSBusError as exc:
            outgoing.failed(exc)
            raise

    def resend(
        self,
        queue: QueueRef,
        message: Received,
        body: str,
        attributes: Mapping[str, Any],
        *,
        deduplication_id: str | None = None,
        delay_seconds: int | None = None,
    ) -> str:
        """Send a copy of the received ``message`` to ``queue``, confirmed, in its message group.

        On a FIFO queue the copy is deduplicated by ``deduplication_id`` (by default the
        message's id), so sending it again after an unanswered call stores it once.
        ``delay_seconds`` delays the copy (delay hops).
        """
        copy = Copy(message, body, attributes, deduplication_id, delay_seconds)
        outgoing = self._prepare(queue, body, attributes)
        try:
            return GROUP_COMMIT.send(queue, self._copy_params(queue, copy, outgoing), outgoing.size)
        except SQSBusError as exc:
            outgoing.failed(exc)
            raise

    def resend_all(
        self, queue: QueueRef, copies: Sequence[Copy], *, timeout: float = RESEND_TIMEOUT
    ) -> list[str | BaseException]:
        """Send ``copies`` to ``queue`` as :meth:`resend` does, in shared batches (up to 10
        and 1 MiB per call, in order on a FIFO queue), and wait for SQS's answers.

        Returns, for each copy in order, its SQS message id or the error that kept it out;
        a :class:`TransientError` when SQS may have taken it anyway (no answer after the
        retries, or none within ``timeout`` seconds).
        """
        outcomes: list[str | BaseException] = []
        tickets: dict[int, Ticket] = {}
        for index, copy in enumerate(copies):
            outgoing = None
            try:
                outgoing = self._prepare(queue, copy.body, copy.attributes)
                params = self._copy_params(queue, copy, outgoing)
            except SQSBusError as exc:
                if outgoing is not None:
                    outgoing.failed(exc)
                outcomes.append(exc)
                continue
            outcomes.append("")
            tickets[index] = GROUP_COMMIT.send_later(
                queue, params, outgoing.size, timeout, owned=True, on_refused=outgoing.discard
            )
        try:
            GROUP_COMMIT.settle(list(tickets.values()), time.monotonic() + timeout)
        except BaseException:  # e.g. Ctrl-C: copies not sent yet must not go later
            GROUP_COMMIT.withdraw(list(tickets.values()))
            raise
        for index, ticket in tickets.items():
            if ticket.error is not None:
                outcomes[index] = ticket.error
            elif ticket.done:
                outcomes[index] = ticket.message_id
            else:
                outcomes[index] = TransientError(
                    f"SQS did not answer within {timeout:g} s for a message to queue "
                    f"{queue.name!r}; it may still be sent"
                )
        return outcomes

    def _prepare(self, queue: QueueRef, body: str, attributes: Mapping[str, Any]) -> _Outgoing:
        """Check ``body`` and ``attributes`` for ``queue``; offload the body to S3 if it
        is too large and a bucket is configured, else refuse it."""
        checked = dict(attributes)
        check_message_attributes(f"queue {queue.name!r}", checked)
        forwarded = _is_forwarded_pointer(queue, body, checked)
        limit = self.directory.max_message_size(queue)
        size = message_size(body, checked)
        payloads = self.payloads
        if not forwarded and payloads is not None and payloads.wants(size, limit):
            body, checked, stored = payloads.offload(body, checked, queue=queue.name)
            # Run once SQS refuses the pointer for good: now (raised) or later (queued).
            return _Outgoing(
                body,
                checked,
                message_size(body, checked),
                stored,
                lambda: payloads.discard([stored]),
            )
        if size > limit:
            raise MessageTooLarge(
                f"message of {size} bytes is over the {limit}-byte limit of queue "
                f"{queue.name!r}; nothing was sent. Set the transport option "
                "large_payload_bucket to send large payloads through S3 (docs/large-payloads.md), "
                "or make the payload smaller."
            )
        return _Outgoing(body, checked, size)

    def _params(
        self,
        queue: QueueRef,
        outgoing: _Outgoing,
        group_id: str | None,
        deduplication_id: str | None,
        delay_seconds: int | None,
    ) -> dict[str, Any]:
        """``SendMessage`` parameters (without ``QueueUrl``) under the queue's FIFO rules."""
        params: dict[str, Any] = {"MessageBody": outgoing.body}
        if outgoing.attributes:
            params["MessageAttributes"] = outgoing.attributes
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
                    extra=message_fields("send", queue=queue.name),
                )
        else:
            if group_id:
                params["MessageGroupId"] = group_id  # SQS fair queues on standard queues
            if delay_seconds:
                params["DelaySeconds"] = max(0, min(MAX_DELAY_SECONDS, int(delay_seconds)))
        return params

    def _copy_params(self, queue: QueueRef, copy: Copy, outgoing: _Outgoing) -> dict[str, Any]:
        """Parameters of a copy: the message's group, deduplicated by the copy's id on a
        FIFO queue, with the message's X-Ray trace header."""
        message = copy.message
        deduplication_id = (copy.deduplication_id or message.message_id) if queue.is_fifo else None
        group_id = message.attributes.get("MessageGroupId")
        params = self._params(queue, outgoing, group_id, deduplication_id, copy.delay_seconds)
        trace = message.attributes.get(TRACE_HEADER)
        if trace:
            params["MessageSystemAttributes"] = {
                TRACE_HEADER: {"DataType": "String", "StringValue": trace}
            }
        return params

    def _dispatch(
        self,
        queue: QueueRef,
        params: dict[str, Any],
        outgoing: _Outgoing,
        confirm: bool,
        published_at: float | None,
    ) -> str:
        """Send, or queue to send (lingering, in a publish batch); a queued message that
        SQS then refuses has its offloaded payload deleted (a refusal while waiting raises
        instead)."""
        if confirm:
            return GROUP_COMMIT.send(queue, params, outgoing.size, published_at=published_at)
        batch = current_batch()
        if batch is not None:
            linger = (self.linger_ms or BATCH_LINGER_MS) / 1000
            ticket = GROUP_COMMIT.send_later(
                queue,
                params,
                outgoing.size,
                linger,
                owned=True,
                on_refused=outgoing.discard,
                published_at=published_at,
            )
            batch.add(ticket)
            return ""
        if self.linger_ms:
            linger = self.linger_ms / 1000
            GROUP_COMMIT.send_later(
                queue,
                params,
                outgoing.size,
                linger,
                on_refused=outgoing.discard,
                published_at=published_at,
            )
            return ""
        return GROUP_COMMIT.send(queue, params, outgoing.size, published_at=published_at)
