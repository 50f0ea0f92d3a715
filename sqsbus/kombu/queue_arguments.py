"""AMQP queue arguments sqsbus honours: ``x-message-ttl``, ``x-max-priority``, ``x-expires``.

Kombu passes them in ``queue_declare(arguments=...)`` (``Queue(message_ttl=...,
max_priority=..., expires=...)`` become these ``x-`` keys).  SQS has no such
queue settings, so the Kombu channel applies them itself: TTL when delivering,
priority through one SQS queue per priority band.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqsbus.errors import ConfigurationError
from sqsbus.queues import FIFO_SUFFIX

#: Largest AMQP priority.
MAX_PRIORITY: Final = 255


@dataclass(frozen=True)
class QueueArguments:
    """The ``x-`` arguments of one declared queue, validated."""

    message_ttl_ms: int | None = None
    max_priority: int | None = None
    expires_ms: int | None = None

    @classmethod
    def parse(cls, queue: str, arguments: Mapping[str, Any] | None) -> QueueArguments:
        arguments = arguments or {}
        return cls(
            message_ttl_ms=_non_negative(queue, arguments, "x-message-ttl"),
            max_priority=_priority(queue, arguments),
            expires_ms=_non_negative(queue, arguments, "x-expires"),
        )


def _non_negative(queue: str, arguments: Mapping[str, Any], key: str) -> int | None:
    value = arguments.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(
            f"queue {queue!r}: argument {key!r} must be a number of milliseconds >= 0, "
            f"got {value!r}"
        )
    return int(value)


def _priority(queue: str, arguments: Mapping[str, Any]) -> int | None:
    value = arguments.get("x-max-priority")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PRIORITY:
        raise ConfigurationError(
            f"queue {queue!r}: argument 'x-max-priority' must be an integer from 1 to "
            f"{MAX_PRIORITY}, got {value!r}"
        )
    return value


def priority_bands(max_priority: int, steps: Sequence[int]) -> list[int]:
    """The band (lowest priority of each) a queue with ``max_priority`` is split into."""
    return sorted({step for step in steps if step <= max_priority} | {0})


def band_of(priority: Any, max_priority: int, steps: Sequence[int]) -> int:
    """The band a message of ``priority`` goes to (higher numbers are more urgent)."""
    try:
        wanted = min(max(int(priority or 0), 0), max_priority)
    except (TypeError, ValueError):
        wanted = 0
    return max(step for step in priority_bands(max_priority, steps) if step <= wanted)


def band_queue(queue: str, band: int) -> str:
    """The Kombu name of ``queue``'s band queue (``queue`` itself for band 0).

    ``celery`` -> ``celery.p6`` (SQS name ``celery-p6``); ``jobs.fifo`` -> ``jobs.p6.fifo``.
    """
    if not band:
        return queue
    if queue.endswith(FIFO_SUFFIX):
        return f"{queue[: -len(FIFO_SUFFIX)]}.p{band}{FIFO_SUFFIX}"
    return f"{queue}.p{band}"
