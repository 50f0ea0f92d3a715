"""Kombu envelopes of received SQS messages: the payload a Kombu consumer gets.

The wire format is Kombu's (see :mod:`sqsbus.codec`); ``delivery_info`` carries
``sqs_message`` and ``sqs_queue`` as Kombu's SQS transport does, so consumers of both see the
same. A message not produced by Kombu is delivered as what it is (text or JSON).
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Callable
from typing import Any

from sqsbus import codec
from sqsbus.engine.messages import Received

logger = logging.getLogger(__name__)


def to_payload(
    received: Received, decode_body: Callable[[Any, str | None], Any]
) -> tuple[dict[str, Any] | None, str]:
    """The Kombu payload of ``received``, or None and why it cannot be read.

    ``decode_body`` is the channel's (``body``, ``body_encoding``) decoder: the body is decoded
    here once, to find out whether it can be.
    """
    decoded = codec.decode_body(received.body)
    if decoded.envelope is not None:
        payload = decoded.envelope
    else:
        logger.info(
            "message %s on queue %s was not produced by Kombu; delivering its body as %s",
            received.message_id,
            received.queue.name,
            decoded.kind,
            extra=received.log_fields("deliver"),
        )
        payload = codec.foreign_envelope(decoded, received.string_attributes())
    properties = payload.setdefault("properties", {})
    if not isinstance(properties.get("delivery_info"), dict):
        properties["delivery_info"] = {}
    problem = codec.envelope_problem(payload)
    if problem is not None:
        return None, problem
    try:
        if payload.get("body"):
            decode_body(payload["body"], properties.get("body_encoding"))
    except (binascii.Error, ValueError, TypeError, AttributeError) as exc:
        return None, f"its body cannot be decoded ({exc})"
    delivery_info = properties["delivery_info"]
    delivery_info.setdefault("routing_key", received.name)
    delivery_info.setdefault("exchange", "")
    delivery_info.update(
        sqs_message={
            "MessageId": received.message_id,
            "ReceiptHandle": received.receipt_handle,
            "Attributes": received.attributes,
            "MessageAttributes": received.message_attributes,
        },
        sqs_queue=received.queue.url,
        redelivered=received.redelivered,
    )
    properties["delivery_tag"] = received.receipt_handle
    return payload, ""


def ttl_ms(received: Received, payload: dict[str, Any], queue_ttl_ms: int | None) -> float | None:
    """The message's TTL: the shorter of its ``expiration`` and its queue's
    ``x-message-ttl`` (``queue_ttl_ms``); None if it has neither."""
    limits: list[float] = []
    expiration = payload["properties"].get("expiration")
    if expiration is not None:
        try:
            limits.append(float(expiration))
        except (TypeError, ValueError):
            logger.warning(
                "message %s has an unreadable expiration %r; ignoring it",
                received.message_id,
                expiration,
                extra=received.log_fields("deliver"),
            )
    if queue_ttl_ms is not None:
        limits.append(queue_ttl_ms)
    return min(limits) if limits else None
