"""Native delays: delayed messages wait in SQS, not in a consumer's memory.

SQS delays a message by at most 15 minutes (``DelaySeconds`` ≤ 900).  A message
due later is sent with the longest delay and the :data:`ETA_ATTRIBUTE` message
attribute (its due time, seconds since the epoch); when it surfaces early, the
consumer *hops* it: sends the same body and attributes again with the remaining
delay, then deletes the surfaced copy.  The application sees the message once,
when it is due, with its body and headers unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqsbus.engine.messages import Received
from sqsbus.errors import ConfigurationError
from sqsbus.limits import MAX_DELAY_SECONDS, MAX_MESSAGE_ATTRIBUTES

#: Message attribute holding a hopping message's due time (epoch seconds).
ETA_ATTRIBUTE: Final = "sqsbus.eta"
#: A message surfacing less than this many seconds early is delivered, not hopped.
HOP_SLACK_SECONDS: Final = 1.0
#: Keys of a received message attribute that SendMessage accepts back.
_ATTRIBUTE_VALUE_KEYS: Final = ("DataType", "StringValue", "BinaryValue")


def delay_for(eta: float, now: float | None = None) -> int:
    """Whole seconds to delay a message due at ``eta`` (never past it; ≤ 900)."""
    remaining = eta - (time.time() if now is None else now)
    if remaining <= 0:
        return 0
    return min(MAX_DELAY_SECONDS, math.floor(remaining))


def eta_attribute(eta: float) -> dict[str, str]:
    """The :data:`ETA_ATTRIBUTE` value for a message due at ``eta``."""
    return {"DataType": "Number", "StringValue": f"{eta:.3f}"}


def eta_of(message: Received) -> float | None:
    """The due time a hopping message carries, or None."""
    value = message.message_attributes.get(ETA_ATTRIBUTE)
    if not isinstance(value, Mapping):
        return None
    try:
        eta = float(value.get("StringValue", ""))
    except ValueError:
        return None
    return eta if math.isfinite(eta) else None


def surfaced_early(message: Received, now: float | None = None) -> float | None:
    """Seconds still to wait if ``message`` surfaced before it is due, else None."""
    eta = eta_of(message)
    if eta is None:
        return None
    remaining = eta - (time.time() if now is None else now)
    return remaining if remaining > HOP_SLACK_SECONDS else None


def resendable_attributes(message: Received) -> dict[str, Any]:
    """``message``'s attributes in the form ``SendMessage`` takes."""
    result: dict[str, Any] = {}
    for name, value in message.message_attributes.items():
        if isinstance(value, Mapping):
            result[name] = {k: value[k] for k in _ATTRIBUTE_VALUE_KEYS if k in value}
    return result


def native_delay(
    headers: Any, attributes: dict[str, Any] | None
) -> tuple[int | None, dict[str, Any] | None]:
    """DelaySeconds (and hop attribute) for a Celery message with a future ``eta`` header.

    A naive ``eta`` (no time zone) is left to the worker: guessing its zone could
    deliver the message late.
    """
    eta_text = headers.get("eta") if isinstance(headers, dict) else None
    if not isinstance(eta_text, str):
        return None, attributes
    try:
        eta_time = datetime.fromisoformat(eta_text)
    except ValueError:
        return None, attributes
    if eta_time.tzinfo is None:
        return None, attributes
    eta = eta_time.timestamp()
    delay = delay_for(eta)
    if not delay:
        return None, attributes
    if eta - time.time() > MAX_DELAY_SECONDS:
        attributes = dict(attributes or {})
        if len(attributes) < MAX_MESSAGE_ATTRIBUTES:
            attributes[ETA_ATTRIBUTE] = eta_attribute(eta)
    return delay, attributes


def delay_property(properties: dict[str, Any]) -> int | None:
    """Kombu's ``delay_seconds``/``DelaySeconds`` message property, validated."""
    for key in ("delay_seconds", "DelaySeconds"):
        value = properties.get(key)
        if value is None:
            continue
        try:
            delay = int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"message property {key!r} must be a number of seconds, got {value!r}"
            ) from None
        if delay < 0:
            raise ConfigurationError(f"message property {key!r} must be >= 0, got {delay}")
        return delay
    return None
