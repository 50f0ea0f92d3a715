"""The SQS calls of the data path: receive, delete, change visibility.

This is the one module that sends ``DeleteMessageBatch`` and
``ChangeMessageVisibilityBatch`` (sends go through :mod:`sqsbus.engine.group_commit`;
``tests/test_one_path.py`` checks both).  Its :func:`delete`, :func:`change_visibility`
and :func:`release` are called by:

* the :class:`~sqsbus.engine.acker.Acker`, the one way the data path settles a message
  it handed to the application (ack, reject, requeue, backoff, the original of a
  forwarded message): batched, retried, and followed by ``on_deleted`` (S3 payloads);
* as the one documented exception, callers that need each entry's answer at once, so
  call synchronously: the lease keeper (an extension's answer says whether the lease is
  lost), parking (the original of a parked message goes without ``on_deleted``: its S3
  payload now belongs to the copy), :func:`release` (messages never handed out, from
  the acker and receivers), and the operator tools ``peek`` and ``move``/``redrive``,
  which report on each message.

Each function is one counted AWS call with errors translated into
:mod:`sqsbus.errors`.  Batch variants report per-entry failures instead of
dropping them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqsbus.aws import call
from sqsbus.engine.messages import Received, batch_log_fields
from sqsbus.limits import MAX_BATCH_ENTRIES, MAX_RECEIVE_MESSAGES
from sqsbus.queues import QueueRef
from sqsbus.telemetry import queue as queue_metrics

logger = logging.getLogger(__name__)

#: Error codes meaning a receipt handle no longer refers to a message we hold.
STALE_RECEIPT_CODES: Final = frozenset(
    {"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"}
)


@dataclass(frozen=True)
class EntryFailure:
    """A batch entry SQS refused."""

    index: int
    code: str
    message: str
    sender_fault: bool

    @property
    def stale_receipt(self) -> bool:
        return self.code in STALE_RECEIPT_CODES


def receive(
    queue: QueueRef,
    name: str,
    *,
    max_messages: int,
    wait_time_seconds: int,
    visibility_timeout: int | None = None,
    system_attributes: Sequence[str] = ("All",),
) -> list[Received]:
    """``ReceiveMessage`` of up to ``max_messages`` (capped at 10)."""
    params: dict[str, Any] = {
        "QueueUrl": queue.url,
        "MaxNumberOfMessages": max(1, min(MAX_RECEIVE_MESSAGES, max_messages)),
        "WaitTimeSeconds": wait_time_seconds,
        "MessageSystemAttributeNames": list(system_attributes),
        "MessageAttributeNames": ["All"],
    }
    if visibility_timeout is not None:
        params["VisibilityTimeout"] = visibility_timeout
    answer = call(queue.client, "receive_message", f"receive from queue {queue.name!r}", **params)
    return [Received.from_sqs(queue, name, raw) for raw in answer.get("Messages") or []]


#: The API name (``rpc.method``) of each batch operation.
_METHODS: Final = {
    "delete_message_batch": "DeleteMessageBatch",
    "change_message_visibility_batch": "ChangeMessageVisibilityBatch",
}


def _batch(
    queue: QueueRef,
    operation: str,
    action: str,
    entries: list[dict[str, Any]],
) -> list[EntryFailure]:
    failures: list[EntryFailure] = []
    metrics = queue_metrics(queue.name)
    method = _METHODS[operation]
    for start in range(0, len(entries), MAX_BATCH_ENTRIES):
        chunk = entries[start : start + MAX_BATCH_ENTRIES]
        for offset, entry in enumerate(chunk):
            entry["Id"] = str(start + offset)
        metrics.batch(method, len(chunk))
        answer = call(queue.client, operation, action, QueueUrl=queue.url, Entries=chunk)
        for failed in answer.get("Failed") or []:
            failures.append(
                EntryFailure(
                    index=int(failed["Id"]),
                    code=str(failed.get("Code", "")),
                    message=str(failed.get("Message", "")),
                    sender_fault=bool(failed.get("SenderFault", False)),
                )
            )
    return failures


def delete(queue: QueueRef, receipt_handles: Sequence[str]) -> list[EntryFailure]:
    """``DeleteMessageBatch``; returns the entries SQS refused."""
    entries = [{"ReceiptHandle": handle} for handle in receipt_handles]
    return _batch(queue, "delete_message_batch", f"delete from queue {queue.name!r}", entries)


def change_visibility(
    queue: QueueRef, receipt_handles: Sequence[str], seconds: int
) -> list[EntryFailure]:
    """``ChangeMessageVisibilityBatch`` to ``seconds``; returns refused entries."""
    entries = [
        {"ReceiptHandle": handle, "VisibilityTimeout": seconds} for handle in receipt_handles
    ]
    return _batch(
        queue,
        "change_message_visibility_batch",
        f"change visibility in queue {queue.name!r}",
        entries,
    )


def release(messages: Sequence[Received]) -> None:
    """Make received messages visible again now (best effort, logged on failure).

    A message that cannot be released becomes visible anyway when its
    visibility timeout expires: delayed, never lost.
    """
    by_queue: dict[str, list[Received]] = {}
    for message in messages:
        by_queue.setdefault(message.queue.url, []).append(message)
    for group in by_queue.values():
        queue = group[0].queue
        try:
            failures = change_visibility(queue, [m.receipt_handle for m in group], 0)
        except Exception as exc:
            logger.warning(
                "could not release %d message(s) of queue %s (they return after their "
                "visibility timeout): %s",
                len(group),
                queue.name,
                exc,
                extra=batch_log_fields(group, "change-visibility"),
            )
            continue
        for failure in failures:
            if not failure.stale_receipt:
                logger.warning(
                    "could not release message %s of queue %s: %s",
                    group[failure.index].message_id,
                    queue.name,
                    failure.code,
                    extra=group[failure.index].log_fields("change-visibility"),
                )
