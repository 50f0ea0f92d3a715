"""Trace context travels with a message wherever sqsbus moves it on its own.

A traced message carries its context three ways: in its Kombu headers (Celery's
instrumentation, :func:`sqsbus.tracing.inject_context`), as a ``traceparent`` message attribute
(botocore's instrumentation of SNS ``Publish``) and as SQS's ``AWSTraceHeader`` system attribute
(X-Ray). Each move sqsbus makes by itself keeps all three: a reject and an unreadable message
to the dead-letter queue, the admin redrive back, a delay hop, parking and sending home.

moto keeps ``AWSTraceHeader`` for ``SendMessage`` but not for ``SendMessageBatch`` (which sqsbus
sends); so the tests send the original with ``SendMessage`` and read the trace header of each
copy from the request sqsbus made (a botocore event handler on its client).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from kombu_helpers import connect, counts, direct_queue, get_within, url_of, wait_until

from sqsbus.admin import AdminSession, BrokerChoice, redrive
from sqsbus.engine.delays import ETA_ATTRIBUTE
from sqsbus.local import LocalEndpoint

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
REDRIVE = {"dead_letter_queue": "dead", "max_receive_count": 3}
CAP = 5  # seconds a message may be held before it is parked (SQS's cap: 12 hours)


def envelope(body: str, *, body_encoding: str = "base64", name: str = "q") -> str:
    """A Kombu message as Kombu puts it on the wire, with a ``traceparent`` header."""
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"traceparent": TRACEPARENT},
            "properties": {
                "body_encoding": body_encoding,
                "delivery_info": {"exchange": name, "routing_key": name},
                "delivery_mode": 2,
                "priority": 0,
            },
        }
    )


def send_traced(sqs_client: Any, url: str, body: str, **attributes: Any) -> None:
    """Send ``body`` with all three kinds of trace context."""
    sqs_client.send_message(
        QueueUrl=url,
        MessageBody=body,
        MessageAttributes={
            "traceparent": {"DataType": "String", "StringValue": TRACEPARENT},
            **attributes,
        },
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}},
    )


@contextlib.contextmanager
def sent_entries(client: Any) -> Iterator[list[dict[str, Any]]]:
    """The ``SendMessageBatch`` entries ``client`` sends inside the block."""
    entries: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        entries.extend(params.get("Entries", []))

    event = "provide-client-params.sqs.SendMessageBatch"
    client.meta.events.register(event, record)
    try:
        yield entries
    finally:
        client.meta.events.unregister(event, record)


def assert_carries_trace(raw: dict[str, Any]) -> None:
    """A received message (boto3's form) still has the ``traceparent`` attribute and header."""
    assert raw["MessageAttributes"]["traceparent"]["StringValue"] == TRACEPARENT
    headers = json.loads(raw["Body"])["headers"]
    assert headers["traceparent"] == TRACEPARENT


def assert_entry_carries_trace(entry: dict[str, Any]) -> None:
    """A copy sqsbus sent keeps the attribute and the X-Ray trace header."""
    assert entry["MessageAttributes"]["traceparent"]["StringValue"] == TRACEPARENT
    assert entry["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] == XRAY


def receive_one(sqs_client: Any, url: str, timeout: float = 10) -> dict[str, Any]:
    """One message of ``url``, made visible again at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = sqs_client.receive_message(
            QueueUrl=url, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        if answer.get("Messages"):
            raw = answer["Messages"][0]
            sqs_client.change_message_visibility(
                QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"], VisibilityTimeout=0
            )
            return dict(raw)
    raise AssertionError(f"no message arrived on {url} within {timeout:g} s")


def declared(conn: Any, name: str) -> Any:
    queue = direct_queue(name)
    queue(conn.default_channel).declare()
    return queue


def test_a_rejected_message_keeps_its_trace_in_the_dead_letter_queue(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with connect(endpoint, prefix, redrive_policy=REDRIVE) as conn:
        queue = declared(conn, "rejects")
        url = url_of(conn, "rejects")
        send_traced(sqs_client, url, envelope(base64.b64encode(b'"poison"').decode()))
        message = get_within(queue(conn.default_channel), 5)
        assert message is not None
        client = conn.transport.directory.get("rejects").client
        with sent_entries(client) as entries:
            message.reject(requeue=False)
            conn.transport.acker.flush()
            assert wait_until(lambda: counts(sqs_client, url) == (0, 0))
        [dead_letter] = entries
        assert_entry_carries_trace(dead_letter)
        assert_carries_trace(receive_one(sqs_client, url_of(conn, "dead")))


def test_a_redriven_dead_letter_keeps_its_trace(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with connect(endpoint, prefix, redrive_policy=REDRIVE) as conn:
        declared(conn, "source")
        url, dead_url = url_of(conn, "source"), url_of(conn, "dead")
    send_traced(sqs_client, dead_url, envelope(base64.b64encode(b'"dead"').decode()))
    session = AdminSession.connect(
        BrokerChoice(endpoint.broker_url(), "test"), {"queue_name_prefix": prefix}
    )
    dead = session.queue("dead")
    with sent_entries(dead.client) as entries:
        result = redrive(session, dead)
    assert result.moved == 1, result
    [redriven] = entries
    assert_entry_carries_trace(redriven)
    assert_carries_trace(receive_one(sqs_client, url))


def test_an_unreadable_message_keeps_its_trace_in_the_dead_letter_queue(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with connect(endpoint, prefix, redrive_policy=REDRIVE) as conn:
        queue = declared(conn, "garbled")
        url = url_of(conn, "garbled")
        send_traced(sqs_client, url, envelope("%%% not base64 %%%"))
        client = conn.transport.directory.get("garbled").client
        with sent_entries(client) as entries:
            assert get_within(queue(conn.default_channel), 3) is None
            assert wait_until(lambda: counts(sqs_client, url) == (0, 0))
        [dead_letter] = entries
        assert_entry_carries_trace(dead_letter)
        assert_carries_trace(receive_one(sqs_client, url_of(conn, "dead")))


def test_a_delay_hop_keeps_the_trace(endpoint: LocalEndpoint, prefix: str, sqs_client: Any) -> None:
    with connect(endpoint, prefix) as conn:
        queue = declared(conn, "hops")
        url = url_of(conn, "hops")
        bound = queue(conn.default_channel)
        eta = time.time() + 4  # as if sent 15 minutes ago: surfaces too early, hops
        client = conn.transport.directory.get("hops").client
        with sent_entries(client) as entries:
            send_traced(
                sqs_client,
                url,
                envelope(base64.b64encode(b'"due"').decode(), name="hops"),
                **{ETA_ATTRIBUTE: {"DataType": "Number", "StringValue": f"{eta:.3f}"}},
            )
            message = get_within(bound, 10)
        assert message is not None and message.payload == "due"
        assert entries, "the message did not hop"
        for hop in entries:
            assert hop["DelaySeconds"] > 0
            assert_entry_carries_trace(hop)
        assert message.headers["traceparent"] == TRACEPARENT
        attributes = message.delivery_info["sqs_message"]["MessageAttributes"]
        assert attributes["traceparent"]["StringValue"] == TRACEPARENT
        message.ack()


def test_parking_and_sending_home_keep_the_trace(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with connect(endpoint, prefix, lease_seconds=2) as holder:
        queue = declared(holder, "capped")
        url = url_of(holder, "capped")
        send_traced(sqs_client, url, envelope(base64.b64encode(b'"long"').decode(), name="capped"))
        holder.transport.leases.max_total_seconds = CAP
        message = get_within(queue(holder.default_channel), 5)
        assert message is not None
        client = holder.transport.directory.get("capped").client
        with sent_entries(client) as entries:
            assert wait_until(lambda: holder.transport.parking.parked >= 1, timeout=20)
            message.requeue()  # a parked message given back goes home
            home = receive_one(sqs_client, url)
        assert len(entries) >= 2  # into the parking queue, and home
        for copy in entries:
            assert_entry_carries_trace(copy)
        assert_carries_trace(home)
