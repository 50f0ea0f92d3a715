"""Purge: delete every message of a queue and of its priority band queues.

:func:`purge` reads the counts first (so a caller can show them and ask), then sends one
``PurgeQueue`` per queue. The band queues (``celery.p6`` ..., for the ``priority_steps``
option) go with their queue, as Celery's ``purge`` does. SQS allows one purge per queue and
minute; a second one fails with :class:`PurgeInProgress`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from sqsbus.admin.inventory import QueueInfo, queue_info
from sqsbus.admin.session import AdminSession
from sqsbus.aws import call
from sqsbus.errors import PurgeInProgress, SQSBusError

__all__ = ["PurgeResult", "purge"]


@dataclass(frozen=True)
class PurgeResult:
    """What :func:`purge` found (counts before it purged) and whether it purged."""

    #: The queue asked for, as Kombu/Celery names it.
    queue: str
    #: That queue, then its priority band queues (highest first), as they were.
    queues: tuple[QueueInfo, ...]
    #: False when the confirmation was declined: nothing was purged.
    purged: bool = False

    @property
    def bands(self) -> tuple[QueueInfo, ...]:
        """The priority band queues purged with the queue."""
        return self.queues[1:]

    @property
    def visible(self) -> int:
        return sum(info.visible for info in self.queues)

    @property
    def in_flight(self) -> int:
        return sum(info.in_flight for info in self.queues)

    @property
    def delayed(self) -> int:
        return sum(info.delayed for info in self.queues)

    @property
    def total(self) -> int:
        """Every message there was: visible, in flight and delayed (approximate)."""
        return self.visible + self.in_flight + self.delayed


def purge(
    session: AdminSession, queue: str, *, confirm: Callable[[PurgeResult], bool] | None = None
) -> PurgeResult:
    """Delete every message of ``queue`` and its priority band queues.

    ``confirm`` sees the counts before anything is deleted; if it returns False nothing is
    purged and the result says so (``purged`` False).
    """
    refs = [session.queue(queue), *session.priority_bands(queue)]
    found = PurgeResult(queue, tuple(queue_info(session, ref) for ref in refs))
    if confirm is not None and not confirm(found):
        return found
    for ref, info in zip(refs, found.queues, strict=True):
        try:
            call(ref.client, "purge_queue", f"purge queue {ref.name!r}", QueueUrl=ref.url)
        except SQSBusError as exc:
            if "PurgeQueueInProgress" in str(exc):
                raise PurgeInProgress(
                    f"queue {info.name!r} was purged less than 60 seconds ago and SQS allows "
                    "one purge per minute; try again in a minute"
                ) from None
            raise
    return replace(found, purged=True)
