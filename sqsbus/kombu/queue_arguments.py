"""AMQP queue arguments sqsbus honours: ``x-message-ttl``, ``x-max-priority``, ``x-expires``.

Kombu passes them in ``queue_declare(arguments=...)`` (``Queue(message_ttl=...,
max_priority=..., expires=...)`` become these ``x-`` keys).  SQS has no such
queue settings, so the Kombu channel applies them itself: TTL when delivering,
priority through one SQS queue per priority band (:func:`sqsbus.queues.priority_bands`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqsbus.errors import ConfigurationError

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
