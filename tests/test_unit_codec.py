"""Unit tests of the wire encoding (``sqsbus.codec``), compatible with Kombu's SQS transport.

Pure: no endpoint, no network.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from sqsbus.codec import (
    FOREIGN_JSON,
    FOREIGN_TEXT,
    KOMBU,
    decode_body,
    encode_body,
    foreign_envelope,
)


def envelope(body: Any = "eyJhIjogMX0=") -> dict[str, Any]:
    """A Kombu message envelope as Kombu's virtual transport builds it."""
    return {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "proj.add", "id": "c0ffee"},
        "properties": {
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": "celery"},
            "delivery_mode": 2,
            "priority": 0,
            "delivery_tag": "8d2f",
        },
    }


# -- encode -------------------------------------------------------------------


def test_base64_encoding_is_kombus_default_wire_form() -> None:
    message = envelope()
    raw = encode_body(message, base64_encoding=True)
    assert json.loads(base64.b64decode(raw)) == message


def test_plain_encoding_is_json() -> None:
    message = envelope()
    raw = encode_body(message, base64_encoding=False)
    assert json.loads(raw) == message


@pytest.mark.parametrize("base64_encoding", [True, False])
def test_encode_decode_round_trip(base64_encoding: bool) -> None:
    message = envelope({"text": "héllo ✓ 日本", "n": [1, 2.5, None, True]})
    decoded = decode_body(encode_body(message, base64_encoding=base64_encoding))
    assert decoded.kind == KOMBU
    assert decoded.envelope == message
    assert json.loads(decoded.text) == message


def test_non_ascii_is_sent_as_utf8_not_escaped() -> None:
    raw = encode_body(envelope("héllo"), base64_encoding=False)
    assert "héllo" in raw
    assert "\\u00e9" not in raw


# -- decode: Kombu envelopes ----------------------------------------------------


def test_decode_plain_json_envelope() -> None:
    raw = json.dumps(envelope())
    decoded = decode_body(raw)
    assert decoded.kind == KOMBU
    assert decoded.envelope == envelope()
    assert decoded.text == raw


def test_decode_base64_envelope_as_kombu_sends_it() -> None:
    raw = base64.b64encode(json.dumps(envelope()).encode()).decode()
    decoded = decode_body(raw)
    assert decoded.kind == KOMBU
    assert decoded.envelope == envelope()
    assert json.loads(decoded.text) == envelope()


def test_decode_tolerates_surrounding_whitespace_in_base64() -> None:
    raw = base64.b64encode(json.dumps(envelope()).encode()).decode()
    assert decode_body(f"  {raw}\n").kind == KOMBU


def test_decode_reads_line_wrapped_base64_as_mime_encoders_write_it() -> None:
    wrapped = base64.encodebytes(json.dumps(envelope(body="x" * 300)).encode()).decode()
    assert "\n" in wrapped.strip()
    assert decode_body(wrapped).envelope == envelope(body="x" * 300)


# -- decode: foreign bodies -----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"order_id": 42, "status": "paid"}',
        '{"body": "x"}',  # no properties: not a Kombu envelope
        '{"body": "x", "properties": "not a dict"}',
        "[1, 2, 3]",
        "42",
        '"just a string"',
        "null",
        "true",
    ],
)
def test_decode_foreign_json(raw: str) -> None:
    decoded = decode_body(raw)
    assert decoded.kind == FOREIGN_JSON
    assert decoded.text == raw
    assert decoded.envelope is None


def test_decode_base64_foreign_json() -> None:
    raw = base64.b64encode(b'{"order_id": 42}').decode()
    decoded = decode_body(raw)
    assert decoded.kind == FOREIGN_JSON
    assert decoded.text == '{"order_id": 42}'


@pytest.mark.parametrize(
    "raw",
    [
        "hello world",
        "order 42 paid",
        "not base64!!",
        "abcd",  # valid base64 alphabet, decodes to non-UTF-8 bytes
        "YWJj",  # base64 of 'abc': not JSON, so kept as sent
        "{not json",
        "%%%%",
        "",
        "   ",
    ],
)
def test_decode_plain_text(raw: str) -> None:
    decoded = decode_body(raw)
    assert decoded.kind == FOREIGN_TEXT
    assert decoded.text == raw
    assert decoded.envelope is None


def test_decode_invalid_base64_padding_is_text() -> None:
    decoded = decode_body("eyJib2R5Ijo=x")
    assert decoded.kind == FOREIGN_TEXT


def test_decode_deeply_nested_json_does_not_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert decode_body(deep).kind in {FOREIGN_TEXT, FOREIGN_JSON}
    wrapped = base64.b64encode(deep.encode()).decode()
    assert decode_body(wrapped).kind in {FOREIGN_TEXT, FOREIGN_JSON}


def test_decode_deeply_nested_object_does_not_crash() -> None:
    deep = '{"a":' * 50_000 + "1" + "}" * 50_000
    assert decode_body(deep).kind in {FOREIGN_TEXT, FOREIGN_JSON}


# -- foreign_envelope -----------------------------------------------------------


def test_foreign_json_envelope_has_json_content_type() -> None:
    decoded = decode_body('{"order_id": 42}')
    wrapped = foreign_envelope(decoded, {"source": "billing"})
    assert wrapped["content-type"] == "application/json"
    assert wrapped["content-encoding"] == "utf-8"
    assert wrapped["body"] == '{"order_id": 42}'
    assert wrapped["headers"] == {"source": "billing"}
    assert isinstance(wrapped["properties"], dict)
    assert wrapped["properties"]["body_encoding"] is None


def test_foreign_text_envelope_has_text_content_type() -> None:
    wrapped = foreign_envelope(decode_body("order 42 paid"), {})
    assert wrapped["content-type"] == "text/plain"
    assert wrapped["body"] == "order 42 paid"
    assert wrapped["headers"] == {}


def test_foreign_envelope_is_recognised_as_kombu_after_encoding() -> None:
    wrapped = foreign_envelope(decode_body("hello"), {"k": "v"})
    assert decode_body(encode_body(wrapped, base64_encoding=True)).envelope == wrapped


def test_foreign_envelope_copies_attributes() -> None:
    attributes = {"k": "v"}
    wrapped = foreign_envelope(decode_body("hello"), attributes)
    wrapped["headers"]["k"] = "changed"
    assert attributes == {"k": "v"}


def sns_notification(message: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "6f1b",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:events",
            "Message": message,
            "Timestamp": "2026-11-25T21:00:00.000Z",
            "SignatureVersion": "1",
        }
    )


@pytest.mark.parametrize("base64_encoding", [True, False])
def test_kombu_message_inside_an_sns_notification_is_unwrapped(base64_encoding: bool) -> None:
    """A subscription without raw message delivery wraps the message in an SNS envelope."""
    envelope = {"body": "eyJ4IjogMX0=", "headers": {}, "properties": {"priority": 0}}
    wire = encode_body(envelope, base64_encoding=base64_encoding)
    decoded = decode_body(sns_notification(wire))
    assert decoded.kind == "kombu"
    assert decoded.envelope == envelope


def test_foreign_message_inside_an_sns_notification_is_the_inner_message() -> None:
    decoded = decode_body(sns_notification('{"order": 7}'))
    assert (decoded.kind, decoded.text) == (FOREIGN_JSON, '{"order": 7}')
    nested = decode_body(sns_notification(sns_notification("x")))
    assert nested.kind == FOREIGN_JSON  # unwrapped once, not recursively
