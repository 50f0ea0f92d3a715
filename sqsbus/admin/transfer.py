"""Move messages between queues, client-side.

Client-side moves receive a batch, send copies through the engine's one resend path
(:meth:`~sqsbus.engine.publisher.Publisher.resend_all`: body, message attributes and trace
header unchanged, the same checks and batching as every send) and delete from the source
only the copies the destination accepted. A message is therefore never lost; it can be
delivered twice only if its delete fails after it was sent (counted as ``duplicated``).
Copies the destination refuses stay in the source and are made visible again at the end;
a send SQS may or may not have taken (no answer after the retries) stops the move. Into a
FIFO queue a message keeps its group id (or gets ``fifo_message_group_id``) and is
deduplicated by its source message id, so a retried send cannot duplicate it and an old
deduplication id cannot swallow it.

Deletes and visibility changes go through :mod:`sqsbus.engine.operations` synchronously:
a move counts what was moved from each answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from sqsbus.engine import delays, operations
from sqsbus.engine.messages import Received
from sqsbus.engine.publisher import Copy, Publisher
from sqsbus.errors import ConfigurationError, DeliveryError, MessageTooLarge, SQSBusError
from sqsbus.limits import MAX_RECEIVE_MESSAGES
from sqsbus.queues import QueueAttributes, QueueRef

__all__ = ["Mover", "ProgressCallback", "Route", "TransferResult", "move"]

#: Seconds a received message stays invisible while it is being moved.
MOVE_VISIBILITY_SECONDS: Final = 120
RECEIVE_WAIT_SECONDS: Final = 1
#: Errors that keep one message out (SQS's answer for its entry, or the checks before
#: sending): it stays in the source and the move goes on.  Any other error stops the move.
REFUSALS: Final = (DeliveryError, MessageTooLarge, ConfigurationError)
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
        #: Sends the copies: the engine's resend path, reading each destination's limits.
        self.publisher = Publisher(QueueAttributes(), fifo_message_group_id=fifo_group_id)
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
            self._send(destination, group)

    def _failed(self, message: Received, reason: str) -> None:
        self.skipped.add(message.message_id)
        self.result.failed += 1
        self.result.note_reason(reason)

    def _send(self, destination: QueueRef, messages: list[Received]) -> None:
        """Send copies of ``messages`` to ``destination``; delete from the source those it
        accepted; raise the first error that is not a refusal of one message."""
        copies = [Copy(m, m.body, delays.resendable_attributes(m)) for m in messages]
        outcomes = self.publisher.resend_all(destination, copies)
        sent: list[Received] = []
        stop: BaseException | None = None
        for message, outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, str):
                sent.append(message)
            elif isinstance(outcome, REFUSALS):
                self._failed(message, str(outcome))
            elif stop is None:
                stop = outcome  # the message stays in the source, released at the end
        if sent:
            self._settle_sent(destination, sent)
        if stop is not None:
            raise stop

    def _settle_sent(self, destination: QueueRef, sent: list[Received]) -> None:
        """Delete from the source what ``destination`` accepted, and count it."""
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
