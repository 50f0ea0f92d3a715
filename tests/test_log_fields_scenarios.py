"""Structured log fields on the records of real scenarios, through Kombu on the endpoint.

Each scenario makes sqsbus log about one message (a dead letter, an unreadable message, an S3
pointer refused, a parking, a lost lease) and checks the record carries ``sqsbus_queue``,
``sqsbus_message_id``, ``sqsbus_operation`` and ``sqsbus_attempt`` with that message's values,
while its text stays a sentence for people.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from kombu_helpers import (
    connect,
    consume,
    counts,
    direct_queue,
    get_within,
    publish,
    url_of,
    wait_until,
)

from sqsbus.engine.pointer import PayloadPointer
from sqsbus.local import LocalEndpoint
from sqsbus.log_fields import FIELDS

REDRIVE = {"dead_letter_queue": "dead", "max_receive_count": 5}


def record_about(
    caplog: pytest.LogCaptureFixture, message_id: str, operation: str
) -> logging.LogRecord:
    """The record sqsbus logged about ``message_id`` for ``operation`` (waits for it)."""

    def find() -> logging.LogRecord | None:
        for record in caplog.records:
            if (
                getattr(record, "sqsbus_message_id", None) == message_id
                and getattr(record, "sqsbus_operation", None) == operation
            ):
                return record
        return None

    assert wait_until(lambda: find() is not None), [
        (r.getMessage(), {f: getattr(r, f, "-") for f in FIELDS}) for r in caplog.records
    ]
    found = find()
    assert found is not None
    assert message_id in found.getMessage()  # the text still says which message
    return found


def sqs_id(message: Any) -> str:
    return str(message.delivery_info["sqs_message"]["MessageId"])


def test_a_rejected_message_moved_to_the_dead_letter_queue(
    endpoint: LocalEndpoint, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = direct_queue("rejects")
    with (
        caplog.at_level(logging.INFO, logger="sqsbus"),
        connect(endpoint, prefix, redrive_policy=REDRIVE) as conn,
    ):
        publish(conn, queue, ["poison"])
        message = get_within(queue(conn.default_channel), 5)
        assert message is not None
        message.reject(requeue=False)
        record = record_about(caplog, sqs_id(message), "dead-letter")
    assert record.levelno == logging.WARNING
    assert record.sqsbus_queue == f"{prefix}rejects"  # type: ignore[attr-defined]
    assert record.sqsbus_attempt == 1  # type: ignore[attr-defined]
    assert "rejected without requeue" in record.getMessage()


def send_before_a_good_one(conn: Any, sqs_client: Any, name: str, **message: Any) -> str:
    """Send ``message`` straight to queue ``name`` (a consumer already polls it), then a
    good message, and consume that: return the first one's id."""
    queue = direct_queue(name)
    publish(conn, queue, ["warm up"])
    consume(conn, [queue], 1)
    sent = sqs_client.send_message(QueueUrl=url_of(conn, name), **message)
    publish(conn, queue, ["good"])
    assert [body for body, _ in consume(conn, [queue], 1)] == ["good"]
    return str(sent["MessageId"])


def test_an_unreadable_message_without_a_dead_letter_queue(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    garbled = {"body": "x", "headers": ["not", "an", "object"], "properties": {}}
    with caplog.at_level(logging.INFO, logger="sqsbus"), connect(endpoint, prefix) as conn:
        sent = send_before_a_good_one(conn, sqs_client, "garbled", MessageBody=json.dumps(garbled))
        record = record_about(caplog, sent, "deliver")
    assert record.levelno == logging.ERROR
    assert "is unreadable: its headers are a JSON list" in record.getMessage()
    assert record.sqsbus_queue == f"{prefix}garbled"  # type: ignore[attr-defined]


def test_an_s3_pointer_refused(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sqsbus"), connect(endpoint, prefix) as conn:
        sent = send_before_a_good_one(
            conn,
            sqs_client,
            "pointers",
            MessageBody=PayloadPointer(f"{prefix}elsewhere", "secret").to_body(),
            MessageAttributes={"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "6"}},
        )
        record = record_about(caplog, sent, "deliver")
    assert "follows no S3 pointers" in record.getMessage()
    # Its receive count: 1, or 2 when a receive still polling from the first consume took
    # it and gave it back (released) on a busy machine.
    assert record.sqsbus_attempt in (1, 2)  # type: ignore[attr-defined]


def test_a_message_parked_at_the_visibility_cap(
    endpoint: LocalEndpoint, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = direct_queue("capped")
    with (
        caplog.at_level(logging.INFO, logger="sqsbus"),
        connect(endpoint, prefix, lease_seconds=2) as conn,
    ):
        publish(conn, queue, ["very long task"])
        conn.transport.leases.max_total_seconds = 3
        message = get_within(queue(conn.default_channel), 5)
        assert message is not None
        record = record_about(caplog, sqs_id(message), "park")
        message.ack()
    assert "parked in" in record.getMessage()
    assert record.sqsbus_queue == f"{prefix}capped"  # type: ignore[attr-defined]  # its home


def test_a_lost_lease(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    queue = direct_queue("stolen")
    with (
        caplog.at_level(logging.INFO, logger="sqsbus"),
        connect(endpoint, prefix, lease_seconds=2) as conn,
    ):
        publish(conn, queue, ["held"])
        message = get_within(queue(conn.default_channel), 5)
        assert message is not None
        # Someone else deletes it: the holder's receipt handle no longer extends anything.
        handle = message.delivery_info["sqs_message"]["ReceiptHandle"]
        sqs_client.delete_message(QueueUrl=url_of(conn, "stolen"), ReceiptHandle=handle)
        record = record_about(caplog, sqs_id(message), "lease")
        assert counts(sqs_client, url_of(conn, "stolen")) == (0, 0)
    assert "lost the lease" in record.getMessage()
    assert record.sqsbus_queue == f"{prefix}stolen"  # type: ignore[attr-defined]
