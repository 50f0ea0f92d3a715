"""Batched publishing with one confirmation point: :func:`batched_publishing`.

Inside ``with batched_publishing():`` a thread's publishes return at once and go to SQS
in full ``SendMessageBatch`` calls, as with ``publish_linger_ms``; leaving the block
sends what is left and waits until SQS accepted every message, or raises
:class:`~sqsbus.errors.PublishBatchError` naming what was not. One thread publishing
many messages (a Celery ``group``, a loop of ``apply_async``) costs a tenth of the
requests and round trips, and loses nothing silently.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Final

from sqsbus.engine.group_commit import GROUP_COMMIT, Ticket
from sqsbus.errors import PublishBatchError, TransientError

#: Milliseconds a partial batch waits inside the block for more messages (unless the
#: connection's ``publish_linger_ms`` says otherwise): full batches go at once.
BATCH_LINGER_MS: Final = 5.0
#: Seconds leaving the block waits for SQS's answers by default.
DEFAULT_TIMEOUT: Final = 60.0

_local = threading.local()


class PublishBatch:
    """The messages one thread published inside :func:`batched_publishing`."""

    def __init__(self) -> None:
        self._tickets: list[Ticket] = []

    def add(self, ticket: Ticket) -> None:
        self._tickets.append(ticket)

    def __len__(self) -> int:
        return len(self._tickets)

    def confirm(self, timeout: float) -> None:
        """Send what is still waiting and wait for SQS's answers; raise
        :class:`PublishBatchError` unless every message was accepted."""
        tickets, self._tickets = self._tickets, []
        settled = GROUP_COMMIT.settle(tickets, time.monotonic() + timeout)
        errors = [t.error for t in tickets if t.error is not None]
        unanswered = 0 if settled else sum(1 for t in tickets if not t.done)
        if not errors and not unanswered:
            return
        problems = []
        if errors:
            uncertain = sum(1 for e in errors if isinstance(e, TransientError))
            problems.append(
                f"{len(errors)} not accepted ({uncertain} of them after retries, which SQS "
                f"may have stored anyway); the first: {errors[0]}"
            )
        if unanswered:
            problems.append(
                f"{unanswered} not answered within {timeout:g} s (they may still be sent)"
            )
        raise PublishBatchError(
            f"of {len(tickets)} messages published in batched_publishing(), " + "; ".join(problems),
            errors=errors,
            unanswered=unanswered,
        )


def current_batch() -> PublishBatch | None:
    """The batch this thread publishes into, if it is inside :func:`batched_publishing`."""
    batch: PublishBatch | None = getattr(_local, "batch", None)
    return batch


@contextlib.contextmanager
def batched_publishing(timeout: float = DEFAULT_TIMEOUT) -> Iterator[PublishBatch]:
    """Publish from this thread without waiting for each message; confirm them all on exit.

    On leaving the block every message published in it (through any sqsbus connection,
    by this thread) has been accepted by SQS, or :class:`PublishBatchError` says how many
    were not and why. A block nested in another joins it: the outer one confirms.
    If the process dies inside the block, messages not yet sent are lost, as the
    publishes not yet made would be; the block's end is the confirmation point.
    If the block raises, what it published is still sent and confirmed (a failure to
    confirm is then added as a note to the block's exception).
    """
    outer = current_batch()
    if outer is not None:
        yield outer
        return
    batch = _local.batch = PublishBatch()
    try:
        yield batch
    except BaseException as exc:
        _local.batch = None
        try:
            batch.confirm(timeout)
        except PublishBatchError as unconfirmed:
            exc.add_note(f"and publishing failed: {unconfirmed}")
        raise
    _local.batch = None
    batch.confirm(timeout)
