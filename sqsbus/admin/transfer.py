"""Move messages between queues, client-side.

Client-side moves receive a batch, send it with ``SendMessageBatch`` (body and message
attributes unchanged) and delete from the source only the entries the destination accepted.
A message is therefore never lost; it can be delivered twice only if its delete fails after
it was sent (counted as ``duplicated``). Entries the destination refuses stay in the source
and are made visible again at the end. Into a FIFO queue a message keeps its group id (or
gets ``fifo_message_group_id``) and is deduplicated by its source message id, so a retried
send cannot duplicate it and an old deduplication id cannot swallow it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from sqsbus.aws import call
from sqsbus.engine import delays, operations
from sqsbus.engine.messages import Received
from sqsbus.errors import ConfigurationError, SQSBusError
from sqsbus.limits import MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_RECEIVE_MESSAGES
from sqsbus.queues import QueueRef

__all__ = ["Mover", "ProgressCallback", "Route", "TransferResult", "move"]

#: Seconds a received message stays invisible while it is being moved.
MOVE_VISIBILITY_SECONDS: Final = 120
RECEIVE_WAIT_SECONDS: Final = 1
_KEPT_ATTRIBUTE_KEYS: Final = ("DataType", "StringValue", "BinaryValue")
_MAX_ERRORS: Final = 5


@dataclass
class TransferResult:
    """Counts of a move; ``error`` is set when it stopped early because of one."""

    moved: int = 0
    failed: int = 0
    #: Sent to the destination, but the delete from the source failed: delivered twice.
    duplicated: int = 0
    #: The destination queue (None: each message's own source, by SQS's move task).
    destination: str | None = None
    #: Messages expected (the source's visible count, or the limit), for progress.
    total: int | None = None
    native: bool = False
    error: str | None = None
    #: Stopped by Ctrl-C (the messages it held are back in the source).
    interrupted: bool = False
    #: Distinct reasons entries were refused.
    reasons: list[str] = field(default_factory=list)
    #: Destination queue name -> messages moved there (client-side moves).
    per_destination: dict[str, int] = field(default_factory=dict)

    def note_reason(self, reason: str) -> None:
        if reason not in self.reasons and len(self.reasons) < _MAX_ERRORS:
            self.reasons.append(reason)


ProgressCallback = Callable[[TransferResult], None]
#: Where a received message goes; None when that is unknown (it stays where it is, failed).
Route = Callable[[Received], "QueueRef | None"]


def move(
    source: QueueRef,
    destination: QueueRef,
    *,
    limit: int | None = None,
    fifo_group_id: str = "default",
    on_progress: ProgressCallback | None = None,
    total: int | None = None,
) -> TransferResult:
    """Move up to ``limit`` messages (all when None) from ``source`` to ``destination``."""
    if source.url == destination.url:
        raise ConfigurationError(f"source and destination are the same queue ({source.name!r})")
    mover = Mover(source, lambda message: destination, fifo_group_id=fifo_group_id)
    mover.result.destination = destination.name
    return mover.run(limit=limit, on_progress=on_progress, total=total)


class Mover:
    """One client-side move: receive, send to each message's destination, delete what was sent."""

    def __init__(
        self,
        source: QueueRef,
        route: Route,
        *,
        fifo_group_id: str,
        unroutable: str = "no destination",
    ) -> None:
        self.source = source
        self.route = route
        self.fifo_group_id = fifo_group_id
        self.unroutable = unroutable
        self.result = TransferResult()
        self.skipped: set[str] = set()  # refused, unroutable, or possibly duplicated
        self.unsettled: dict[str, Received] = {}  # received and still in the source

    def run(
        self, *, limit: int | None, on_progress: ProgressCallback | None, total: int | None
    ) -> TransferResult:
        result = self.result
        result.total = total if limit is None else min(limit, total or limit)
        try:
            while limit is None or result.moved + result.failed < limit:
                remaining = None if limit is None else limit - result.moved - result.failed
                batch = operations.receive(
                    self.source,
                    self.source.name,
                    max_messages=min(MAX_RECEIVE_MESSAGES, remaining or MAX_RECEIVE_MESSAGES),
                    wait_time_seconds=RECEIVE_WAIT_SECONDS,
                    visibility_timeout=MOVE_VISIBILITY_SECONDS,
                )
                fresh = [message for message in batch if message.message_id not in self.skipped]
                self.unsettled.update((message.message_id, message) for message in batch)
                if not fresh:
                    break
                self._dispatch(fresh)
                if on_progress is not None:
                    on_progress(result)
        except SQSBusError as exc:
            result.error = str(exc)
        except KeyboardInterrupt:
            result.error, result.interrupted = "interrupted", True
        finally:
            operations.release(list(self.unsettled.values()))
        return result

    def _dispatch(self, messages: list[Received]) -> None:
        by_destination: dict[str, tuple[QueueRef, list[Received]]] = {}
        for message in messages:
            destination = self.route(message)
            if destination is None or destination.url == self.source.url:
                self._failed(message, self.unroutable)
                continue
            by_destination.setdefault(destination.url, (destination, []))[1].append(message)
        for destination, group in by_destination.values():
            for chunk in _chunks(group):
                self._send(destination, chunk)

    def _failed(self, message: Received, reason: str) -> None:
        self.skipped.add(message.message_id)
        self.result.failed += 1
        self.result.note_reason(reason)

    def _send(self, destination: QueueRef, chunk: list[Received]) -> None:
        entries = [
            _send_entry(m, destination, self.fifo_group_id, str(i)) for i, m in enumerate(chunk)
        ]
        answer = call(
            destination.client,
            "send_message_batch",
            f"send to queue {destination.name!r}",
            QueueUrl=destination.url,
            Entries=entries,
        )
        for failure in answer.get("Failed") or []:
            reason = f"{failure.get('Code', '')}: {failure.get('Message', '')}"
            self._failed(chunk[int(failure["Id"])], reason)
        sent = [chunk[int(entry["Id"])] for entry in answer.get("Successful") or []]
        if not sent:
            return
        for message in sent:
            self.unsettled.pop(message.message_id, None)  # never released: it is moved
            self.skipped.add(message.message_id)
        try:
            failures = operations.delete(self.source, [m.receipt_handle for m in sent])
        except SQSBusError:
            self.result.duplicated += len(sent)
            raise
        result = self.result
        result.duplicated += len(failures)
        result.moved += len(sent) - len(failures)
        result.per_destination[destination.name] = (
            result.per_destination.get(destination.name, 0) + len(sent) - len(failures)
        )
        for failure in failures:
            result.note_reason(f"delete from the source failed: {failure.code}")


def _send_entry(
    message: Received, destination: QueueRef, fifo_group_id: str, entry_id: str
) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
    attributes = delays.resendable_attributes(message)
    if attributes:
        entry["MessageAttributes"] = attributes
    trace = message.attributes.get("AWSTraceHeader")
    if trace:
        entry["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": trace}
        }
    if destination.is_fifo:
        entry["MessageGroupId"] = message.attributes.get("MessageGroupId") or fifo_group_id
        entry["MessageDeduplicationId"] = message.message_id
    return entry


def _size(message: Received) -> int:
    size = len(message.body.encode("utf-8"))
    for name, value in message.message_attributes.items():
        size += len(name.encode("utf-8"))
        if isinstance(value, dict):
            size += sum(len(str(value.get(key, ""))) for key in _KEPT_ATTRIBUTE_KEYS)
    return size


def _chunks(messages: list[Received]) -> Iterator[list[Received]]:
    """Groups of at most 10 messages and :data:`MAX_BATCH_BYTES` each."""
    chunk: list[Received] = []
    chunk_bytes = 0
    for message in messages:
        size = _size(message)
        if chunk and (len(chunk) == MAX_BATCH_ENTRIES or chunk_bytes + size > MAX_BATCH_BYTES):
            yield chunk
            chunk, chunk_bytes = [], 0
        chunk.append(message)
        chunk_bytes += size
    if chunk:
        yield chunk
