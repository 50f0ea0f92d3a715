"""Settling received messages: delete (ack) and visibility changes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqsbus.engine import operations
from sqsbus.engine.messages import Received
from sqsbus.errors import DeliveryError

logger = logging.getLogger(__name__)


def _check(
    action: str, messages: Sequence[Received], failures: list[operations.EntryFailure]
) -> None:
    refused = []
    for failure in failures:
        message = messages[failure.index]
        if failure.stale_receipt:
            # The visibility timeout expired (or it was already deleted): SQS will
            # redeliver it or already has.  Nothing is lost; nothing to retry.
            logger.info(
                "%s message %s of queue %s: receipt handle expired (%s)",
                action,
                message.message_id,
                message.queue.name,
                failure.code,
            )
        else:
            refused.append(f"{message.message_id}: {failure.code} {failure.message}")
    if refused:
        raise DeliveryError(f"could not {action} message(s): {'; '.join(refused)}")


class Acker:
    """Deletes and re-times received messages; failures are raised, not swallowed."""

    def delete(self, messages: Sequence[Received]) -> None:
        """Delete ``messages`` (all from one queue) from SQS."""
        if messages:
            failures = operations.delete(messages[0].queue, [m.receipt_handle for m in messages])
            _check("delete", messages, failures)

    def set_visibility(self, messages: Sequence[Received], seconds: int) -> None:
        """Make ``messages`` (all from one queue) visible again after ``seconds``."""
        if messages:
            failures = operations.change_visibility(
                messages[0].queue, [m.receipt_handle for m in messages], seconds
            )
            _check("change visibility of", messages, failures)
