"""Message body encoding on the wire, compatible with Kombu's SQS transport.

A Kombu message travels as the JSON of its envelope (``body``, ``headers``,
``properties``, ...), base64-encoded when ``sqs_base64_encoding`` is on (Kombu's
default).  Decoding is tolerant: plain JSON, base64 JSON, and foreign bodies
that Kombu never produced are all accepted; :func:`decode_body` never raises.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Final

#: What :func:`decode_body` found.
KOMBU: Final = "kombu"
FOREIGN_JSON: Final = "json"
FOREIGN_TEXT: Final = "text"

#: Characters SQS refuses in a message body or attribute value (anything but #x9, #xA,
#: #xD, #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF), lone surrogates included.
REFUSED_CHARACTERS: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def encode_body(envelope: dict[str, Any], *, base64_encoding: bool) -> str:
    """Serialize a Kombu message envelope for SQS.

    Characters SQS refuses (U+FFFE, U+FFFF, lone surrogates, which UTF-8 cannot
    carry either) are written as JSON ``\\uXXXX`` escapes: the same JSON, legal on
    the wire with or without base64.
    """
    text = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii():  # ASCII is always accepted; skip the scan
        text = REFUSED_CHARACTERS.sub(_json_escape, text)
    if base64_encoding:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")
    return text


@dataclass(frozen=True)
class DecodedBody:
    """A received body: ``envelope`` for Kombu messages, ``text`` always."""

    kind: str
    text: str
    envelope: dict[str, Any] | None = None


def _as_envelope(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict) and "body" in value and isinstance(value.get("properties"), dict):
        return value
    return None


def _json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


def _unbase64(raw: str) -> str | None:
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        stripped = "".join(raw.split())  # some encoders wrap lines
        if stripped == raw or not stripped or len(stripped) % 4:
            return None
        try:
            data = base64.b64decode(stripped, validate=True)
        except (binascii.Error, ValueError):
            return None
    if not data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _sns_message(value: Any) -> str | None:
    """The ``Message`` of an SNS notification envelope (a subscription without raw
    message delivery wraps what was published in one), else None."""
    if (
        isinstance(value, dict)
        and value.get("Type") == "Notification"
        and isinstance(value.get("Message"), str)
        and "TopicArn" in value
    ):
        return str(value["Message"])
    return None


def _from_json(text: str, *, unwrap_sns: bool = True) -> DecodedBody | None:
    """A Kombu envelope or foreign JSON if ``text`` is JSON, else None."""
    parsed, value = _json(text)
    if not parsed:
        return None
    inner = _sns_message(value) if unwrap_sns else None
    if inner is not None:
        return _decode(inner, unwrap_sns=False)
    envelope = _as_envelope(value)
    if envelope is not None:
        return DecodedBody(KOMBU, text, envelope)
    return DecodedBody(FOREIGN_JSON, text)


def decode_body(raw: str) -> DecodedBody:
    """Recognize a Kombu envelope (plain or base64, or inside an SNS notification),
    else describe a foreign body."""
    return _decode(raw, unwrap_sns=True)


#: What a JSON text can start with; base64 (Kombu's default body encoding) of a JSON
#: object starts with ``e``, so such a body skips a JSON parse that would fail.
_JSON_STARTS: Final = frozenset('{["-0123456789tfn \t\r\n')


def _decode(raw: str, *, unwrap_sns: bool) -> DecodedBody:
    found = _from_json(raw, unwrap_sns=unwrap_sns) if raw[:1] in _JSON_STARTS else None
    if found is None:
        decoded = _unbase64(raw)
        found = _from_json(decoded, unwrap_sns=unwrap_sns) if decoded is not None else None
    return found or DecodedBody(FOREIGN_TEXT, raw)


def foreign_envelope(decoded: DecodedBody, attributes: dict[str, str]) -> dict[str, Any]:
    """Wrap a body not produced by Kombu so a consumer can still receive it.

    The body is passed as text with a content type telling what it is (JSON or
    plain text); SQS message attributes that are strings become headers.
    """
    content_type = "application/json" if decoded.kind == FOREIGN_JSON else "text/plain"
    return {
        "body": decoded.text,
        "content-encoding": "utf-8",
        "content-type": content_type,
        "headers": dict(attributes),
        "properties": {"delivery_info": {}, "body_encoding": None},
    }


def envelope_problem(payload: dict[str, Any]) -> str | None:
    """Why a Kombu envelope cannot become a Kombu message (wrong field types), or None."""
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        return f"its body is a JSON {type(body).__name__}, not a string"
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return f"its headers are a JSON {type(headers).__name__}, not an object"
    for key in ("content-type", "content-encoding"):
        value = payload.get(key)
        if value is not None and not isinstance(value, str):
            return f"its {key} is a JSON {type(value).__name__}, not a string"
    encoding = payload["properties"].get("body_encoding")
    if encoding is not None and not isinstance(encoding, str):
        return f"its body_encoding is a JSON {type(encoding).__name__}, not a string"
    return None
