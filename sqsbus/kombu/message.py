"""The Kombu message of a received SQS message, and the Celery task-shape check.

Celery acknowledges a message it cannot decode (so that it does not loop); :class:`Message`
tells its channel, which then moves the message to the dead-letter queue instead of deleting
it. A JSON Celery task whose body is not ``[args, kwargs, embed]`` would make Celery's worker
exit instead: it is reported as undecodable too.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from kombu.exceptions import DecodeError
from kombu.serialization import loads
from kombu.transport import virtual

if TYPE_CHECKING:
    from sqsbus.kombu.channel import Channel


class Message(virtual.Message):
    """A received message that tells its channel when its body cannot be decoded.

    Celery acknowledges a message it cannot decode (so that it does not loop); the
    channel then moves it to the dead-letter queue instead of deleting it, if there is one.
    """

    channel: Channel

    def __init__(self, payload: Any, channel: Any = None, **kwargs: Any) -> None:
        super().__init__(payload, channel=channel, **kwargs)
        problem = _task_shape_problem(self)
        if problem is not None:
            # Consumers report it through on_decode_error (Celery logs and acks it).
            try:
                raise DecodeError(f"malformed Celery task message: {problem}")
            except DecodeError as exc:
                self.errors.append(sys.exc_info())
                channel.note_undecodable(self.delivery_tag, str(exc))

    def _decode(self) -> Any:
        try:
            return super()._decode()
        except Exception as exc:
            self.channel.note_undecodable(self.delivery_tag, f"{type(exc).__name__}: {exc}")
            raise


def _task_shape_problem(message: Any) -> str | None:
    """What is wrong with a JSON Celery task message (protocol 2: ``task`` and ``id``
    headers), whose body must be ``[args, kwargs, embed]``; None if nothing is.

    Celery's worker dies on such a body instead of rejecting it.
    """
    headers = message.headers
    if not ("task" in headers and "id" in headers) or message.content_type != "application/json":
        return None
    try:
        body = loads(message.body, message.content_type, message.content_encoding)
    except Exception as exc:
        return f"its body cannot be decoded ({exc})"
    if not (
        isinstance(body, list)
        and len(body) == 3
        and isinstance(body[0], list)
        and isinstance(body[1], dict)
        and isinstance(body[2], dict | None)
    ):
        return f"its body must be [args, kwargs, embed], got {str(body)[:100]}"
    return None
