"""Trace context in messages, for plain Kombu producers and consumers (OpenTelemetry).

Celery's OpenTelemetry instrumentation carries the trace in the task message's headers by
itself. Plain Kombu has no such hook: a producer calls :func:`inject_context` on the headers
it publishes, a consumer :func:`extract_context` on the message it received and starts its
span in that context. :func:`extract_context` also reads the message attributes botocore's
instrumentation writes when it traces an SNS ``Publish`` (exchanges routed through SNS).

Both use ``opentelemetry-api`` when it is installed and do nothing without it: sqsbus does
not depend on it. The propagators are OpenTelemetry's global ones (W3C ``traceparent``,
``tracestate`` and ``baggage`` unless the application set others).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = ["extract_context", "inject_context"]

#: Longest propagation value read from a message (W3C baggage allows 8192 bytes); a longer
#: one is ignored rather than parsed. Messages are untrusted input.
MAX_VALUE_LENGTH: Final = 8192


def _propagate() -> Any:
    """``opentelemetry.propagate``, or None when opentelemetry-api is not installed."""
    try:
        return importlib.import_module("opentelemetry.propagate")
    except ImportError:
        return None


def inject_context(headers: MutableMapping[str, Any] | None = None) -> MutableMapping[str, Any]:
    """Add the current trace context to ``headers`` (a new dict if None) and return them.

    Publish with them: ``producer.publish(body, headers=inject_context({...}))``. Without
    opentelemetry-api, or outside any span, the headers are returned unchanged.
    """
    carrier: MutableMapping[str, Any] = {} if headers is None else headers
    propagate = _propagate()
    if propagate is not None:
        propagate.inject(carrier)
    return carrier


def extract_context(message: Any) -> Context | None:
    """The trace context ``message`` carries, to start a span in:
    ``tracer.start_as_current_span("handle", context=extract_context(message))``.

    ``message`` is a received Kombu message (its ``headers`` first, then the String message
    attributes in ``delivery_info['sqs_message']``) or a mapping of headers. Returns None
    without opentelemetry-api; an empty context when the message carries no valid one.
    """
    propagate = _propagate()
    if propagate is None:
        return None
    fields = set(propagate.get_global_textmap().fields)
    carrier: dict[str, str] = {}
    if isinstance(message, Mapping):
        headers: Any = message
    else:
        headers = getattr(message, "headers", None)
        carrier.update(_attribute_values(message, fields))
    if isinstance(headers, Mapping):
        for name in fields:
            value = headers.get(name)
            if isinstance(value, str) and len(value) <= MAX_VALUE_LENGTH:
                carrier[name] = value
    context: Context = propagate.extract(carrier)
    return context


def _attribute_values(message: Any, fields: set[str]) -> dict[str, str]:
    """String message attributes of a received Kombu message named like a propagation field."""
    delivery_info = getattr(message, "delivery_info", None)
    sqs_message = delivery_info.get("sqs_message") if isinstance(delivery_info, Mapping) else None
    attributes = sqs_message.get("MessageAttributes") if isinstance(sqs_message, Mapping) else None
    if not isinstance(attributes, Mapping):
        return {}
    values: dict[str, str] = {}
    for name in fields:
        attribute = attributes.get(name)
        value = attribute.get("StringValue") if isinstance(attribute, Mapping) else None
        if isinstance(value, str) and len(value) <= MAX_VALUE_LENGTH:
            values[name] = value
    return values
