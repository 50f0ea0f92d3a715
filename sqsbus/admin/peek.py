"""Look at messages without consuming them, as far as SQS allows.

SQS has no peek: messages are received with a short visibility timeout and made visible
again at once (``ChangeMessageVisibilityBatch`` to 0). Side effects that cannot be avoided:

* each message shown counts one receive (``ApproximateReceiveCount`` goes up by one);
* while held (a second or two) the messages are invisible to consumers, and on a FIFO queue
  their message groups are blocked.

On a queue with a redrive policy a message whose receive count reaches ``maxReceiveCount``
is moved to the dead-letter queue on its next receive instead of reaching a worker. A
message's count is only known once it is received, so unless ``allow_dead_letter`` is set,
:func:`peek` refuses up front when ``maxReceiveCount`` is 1 (every message shown would go to
the DLQ), and otherwise receives one message at a time and stops at the first one it brought
to the limit.

Receives and the visibility change go through :mod:`sqsbus.engine.operations`
(synchronously: the ids that could not be released are reported).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Final

from sqsbus.admin.describe import MessageSummary, summarize
from sqsbus.admin.inventory import dead_letter_policy
from sqsbus.admin.session import AdminSession
from sqsbus.engine import operations
from sqsbus.engine.forwarding import DEAD_LETTER_REASON_ATTRIBUTE, DEAD_LETTER_SOURCE_ATTRIBUTE
from sqsbus.engine.messages import Received
from sqsbus.errors import PeekRefused, SQSBusError
from sqsbus.queues import QueueRef

__all__ = ["PeekResult", "PeekedMessage", "peek"]

#: Seconds a peeked message stays invisible if the release after the peek fails.
PEEK_VISIBILITY_SECONDS: Final = 30
#: Long-poll seconds of each receive (0 would sample only some SQS servers).
PEEK_WAIT_SECONDS: Final = 1


@dataclass(frozen=True)
class PeekedMessage:
    """One message seen by :func:`peek`."""

    message_id: str
    #: SQS's ApproximateReceiveCount, this peek included.
    receive_count: int
    sent_at: datetime.datetime | None
    #: Body size in bytes.
    size: int
    summary: MessageSummary
    group_id: str | None
    #: This peek used the message's last receive: its next receive moves it to the DLQ.
    at_dead_letter_limit: bool
    #: Why and from where sqsbus moved it here, when it is a dead letter moved by sqsbus.
    dead_letter_reason: str | None = None
    dead_letter_source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "receive_count": self.receive_count,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "size": self.size,
            "group_id": self.group_id,
            "at_dead_letter_limit": self.at_dead_letter_limit,
            "dead_letter_reason": self.dead_letter_reason,
            "dead_letter_source": self.dead_letter_source,
            **self.summary.to_json(),
        }


@dataclass
class PeekResult:
    messages: list[PeekedMessage] = field(default_factory=list)
    max_receive_count: int | None = None
    #: Stopped before ``count`` messages because one reached the dead-letter limit.
    stopped_at_limit: bool = False
    #: Ids of messages that could not be made visible again (they return after the timeout).
    not_released: list[str] = field(default_factory=list)


def peek(
    session: AdminSession, ref: QueueRef, count: int, *, allow_dead_letter: bool = False
) -> PeekResult:
    """Up to ``count`` messages of ``ref``, left in the queue (see the module doc)."""
    attributes = session.directory.attributes(ref, fresh=True)
    policy = dead_letter_policy(attributes)
    result = PeekResult(max_receive_count=policy.max_receive_count if policy else None)
    if policy is not None and policy.max_receive_count <= 1 and not allow_dead_letter:
        raise PeekRefused(
            f"queue {ref.name!r} dead-letters a message after {policy.max_receive_count} "
            f"receive: peeking receives each message it shows, so every one of them would go "
            f"to {policy.target_name!r} instead of a worker. Pass --allow-dead-letter to peek "
            "anyway."
        )
    # Receive counts are only known once received: on a queue with a redrive policy, one
    # message per receive, so that at most one message is brought to the limit.
    careful = policy is not None and not allow_dead_letter
    held: list[Received] = []
    seen: set[str] = set()
    try:
        while len(result.messages) < count and not result.stopped_at_limit:
            batch_size = 1 if careful else count - len(result.messages)
            batch = operations.receive(
                ref,
                ref.name,
                max_messages=batch_size,
                wait_time_seconds=PEEK_WAIT_SECONDS,
                visibility_timeout=PEEK_VISIBILITY_SECONDS,
            )
            held.extend(batch)
            fresh = [message for message in batch if message.message_id not in seen]
            if not fresh:
                break
            for message in fresh:
                seen.add(message.message_id)
                peeked = _peeked(message, result.max_receive_count)
                result.messages.append(peeked)
                if peeked.at_dead_letter_limit and not allow_dead_letter:
                    result.stopped_at_limit = True
    finally:
        result.not_released = _release(ref, held)
    return result


def _peeked(message: Received, max_receive_count: int | None) -> PeekedMessage:
    count = message.receive_count
    labels = message.string_attributes()
    return PeekedMessage(
        message_id=message.message_id,
        receive_count=count,
        sent_at=_timestamp(message.attributes.get("SentTimestamp")),
        size=len(message.body.encode("utf-8")),
        summary=summarize(message.body),
        group_id=message.attributes.get("MessageGroupId"),
        at_dead_letter_limit=max_receive_count is not None and count >= max_receive_count,
        dead_letter_reason=labels.get(DEAD_LETTER_REASON_ATTRIBUTE),
        dead_letter_source=labels.get(DEAD_LETTER_SOURCE_ATTRIBUTE),
    )


def _timestamp(millis: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromtimestamp(int(millis or "") / 1000, datetime.UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _release(ref: QueueRef, held: list[Received]) -> list[str]:
    """Make every held message visible again; return the ids that could not be."""
    latest = list({message.message_id: message for message in held}.values())
    if not latest:
        return []
    try:
        failures = operations.change_visibility(ref, [m.receipt_handle for m in latest], 0)
    except SQSBusError:
        return [m.message_id for m in latest]
    return [latest[failure.index].message_id for failure in failures]
