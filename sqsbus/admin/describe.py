"""A readable summary of a message body: Celery task name, id and arguments when it is one.

Bodies are decoded with :func:`sqsbus.codec.decode_body` (Kombu's wire format, base64 or not).
Celery protocol 2 keeps ``task`` and ``id`` in the headers and ``[args, kwargs, embed]`` in
the body; protocol 1 keeps them all in the body. Only JSON bodies are decoded (never pickle);
for other serializers Celery's ``argsrepr``/``kwargsrepr`` headers are used when present.
Nothing here raises on bad input: an unreadable body is summarized as its raw text.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Final

from sqsbus import codec
from sqsbus.admin.render import terminal_safe

__all__ = ["MessageSummary", "summarize"]

CELERY: Final = "celery"
KOMBU: Final = "kombu"
#: How many characters of a body :func:`summarize` keeps when it shows it raw.
RAW_TEXT_LIMIT: Final = 2000
_WHITESPACE_TO_SPACE: Final = str.maketrans("\t\n\v\f\r", "     ")


@dataclass(frozen=True)
class MessageSummary:
    """What a body holds. ``kind``: celery, kombu, json (foreign JSON) or text."""

    kind: str
    #: One line describing the arguments (Celery) or the content (anything else), with its
    #: control characters escaped (:func:`sqsbus.admin.render.terminal_safe`).
    text: str
    task: str | None = None
    task_id: str | None = None
    content_type: str | None = None
    #: The decoded arguments of a Celery task with a JSON body.
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    #: A Celery task's ``eta`` header (countdown/ETA), as sent.
    eta: str | None = None

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"kind": self.kind, "summary": self.text}
        for key in ("task", "task_id", "eta", "content_type", "args", "kwargs"):
            value = getattr(self, key)
            if value is not None:
                result[key] = value
        return result


def summarize(raw_body: str) -> MessageSummary:
    """Describe ``raw_body`` as received from SQS."""
    try:
        decoded = codec.decode_body(raw_body)
        if decoded.envelope is None:
            return MessageSummary(decoded.kind, _one_line(decoded.text[:RAW_TEXT_LIMIT]))
        return _from_envelope(decoded.envelope)
    except Exception as exc:  # a summary must never stop a listing
        return MessageSummary("text", f"<unreadable: {type(exc).__name__}> {raw_body[:200]!r}")


def _from_envelope(envelope: dict[str, Any]) -> MessageSummary:
    headers = envelope.get("headers")
    headers = headers if isinstance(headers, dict) else {}
    properties = envelope.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    content_type = str(envelope.get("content-type") or "")
    payload, problem = _payload(envelope.get("body"), properties.get("body_encoding"))
    decoded: Any = None
    is_json = False
    if payload is not None and content_type in ("application/json", ""):
        try:
            decoded, is_json = json.loads(payload), True
        except (ValueError, RecursionError):
            problem = "body is not valid JSON"
    if headers.get("task"):  # Celery message protocol 2
        args, kwargs = _protocol2_arguments(decoded) if is_json else (None, None)
        return MessageSummary(
            CELERY,
            _arguments_text(args, kwargs, headers, content_type, payload, problem),
            task=str(headers["task"]),
            task_id=_text_or_none(headers.get("id")),
            content_type=content_type or None,
            args=args,
            kwargs=kwargs,
            eta=_text_or_none(headers.get("eta")),
        )
    if is_json and isinstance(decoded, dict) and decoded.get("task"):  # protocol 1
        args = decoded.get("args") if isinstance(decoded.get("args"), list) else None
        kwargs = decoded.get("kwargs") if isinstance(decoded.get("kwargs"), dict) else None
        return MessageSummary(
            CELERY,
            _arguments_text(args, kwargs, headers, content_type, payload, problem),
            task=str(decoded["task"]),
            task_id=_text_or_none(decoded.get("id")),
            content_type=content_type or None,
            args=args,
            kwargs=kwargs,
            eta=_text_or_none(decoded.get("eta")),
        )
    if is_json:
        text = json.dumps(decoded, ensure_ascii=False, separators=(", ", ": "))
    elif payload is not None and content_type.startswith("text/"):
        text = payload
    else:
        text = _opaque(content_type, payload, problem)
    return MessageSummary(
        KOMBU, _one_line(text[:RAW_TEXT_LIMIT]), content_type=content_type or None
    )


def _payload(body: Any, body_encoding: Any) -> tuple[str | None, str | None]:
    """The message body as text, and what went wrong if it could not be decoded."""
    if not isinstance(body, str):
        return (json.dumps(body) if body is not None else None), None
    if body_encoding != "base64":
        return body, None
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None, "body is not valid base64"
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, f"binary body, {len(raw)} bytes"


def _protocol2_arguments(decoded: Any) -> tuple[list[Any] | None, dict[str, Any] | None]:
    if isinstance(decoded, list) and len(decoded) >= 2:
        args, kwargs = decoded[0], decoded[1]
        if isinstance(args, list) and isinstance(kwargs, dict):
            return args, kwargs
    return None, None


def _arguments_text(
    args: list[Any] | None,
    kwargs: dict[str, Any] | None,
    headers: dict[str, Any],
    content_type: str,
    payload: str | None,
    problem: str | None,
) -> str:
    if args is not None or kwargs is not None:
        parts = [_json(value) for value in args or []]
        parts += [f"{key}={_json(value)}" for key, value in (kwargs or {}).items()]
        return _one_line(f"({', '.join(parts)})")
    argsrepr, kwargsrepr = headers.get("argsrepr"), headers.get("kwargsrepr")
    if argsrepr is not None or kwargsrepr is not None:
        return _one_line(f"args={argsrepr} kwargs={kwargsrepr}")
    return _opaque(content_type, payload, problem)


def _opaque(content_type: str, payload: str | None, problem: str | None) -> str:
    if problem:
        return f"<{problem}>"
    size = len(payload.encode("utf-8")) if payload is not None else 0
    return f"<{content_type or 'unknown content type'}, {size} bytes>"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _one_line(text: str) -> str:
    """Line breaks and tabs as spaces; other control characters escaped visibly."""
    return terminal_safe(text.translate(_WHITESPACE_TO_SPACE))
