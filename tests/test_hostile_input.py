"""Hostile and malformed input, case by case (docs/reliability.md, *Hostile input*).

Message cases put a bad message on a queue as a foreign producer would (plain boto3 or
SNS calls), then a good one, and check what a user notices: the consumer keeps running
and gets the good message, and the bad one is delivered as what it is, or moved to the
dead-letter queue with ``sqsbus.dead-letter-reason`` (logged with its id and deleted when
the queue has none). Celery cases do the same against one shared worker. Configuration
cases check that a bad name, option, credential or region fails with an error that names
the problem and the fix, and shows no secret.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from celery_app import AppSettings, create_app
from celery_helpers import WorkerProcess, task
from kombu import Connection, Consumer, Exchange, Message, Queue
from kombu_helpers import (
    connect,
    counting_sends,
    counts,
    direct_queue,
    get_within,
    publish,
    queue_attributes,
    url_of,
)

from sqsbus.codec import REFUSED_CHARACTERS
from sqsbus.engine.delays import ETA_ATTRIBUTE, eta_attribute
from sqsbus.errors import (
    ConfigurationError,
    CredentialsError,
    InvalidQueueError,
    MessageTooLarge,
    QueueDoesNotExist,
)
from sqsbus.local import LocalEndpoint

REASON = "sqsbus.dead-letter-reason"
SOURCE = "sqsbus.dead-letter-source"
CANARY_SECRET = "canary-SECRET-77aa"


# -- helpers --------------------------------------------------------------------------------


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def envelope(payload: Any, /, **fields: Any) -> dict[str, Any]:
    """A Kombu wire envelope (body base64-encoded, as Kombu sends it) with ``fields`` changed."""
    value = {
        "body": b64(payload) if isinstance(payload, bytes) else b64(json.dumps(payload)),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {},
        "properties": {"body_encoding": "base64", "delivery_info": {}},
    }
    value.update(fields)
    return value


def string_attributes(count: int) -> dict[str, dict[str, str]]:
    return {f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(count)}


def take_letter(sqs_client: Any, url: str, timeout: float = 10) -> dict[str, Any]:
    """The one message of the dead-letter queue ``url``, received with its attributes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = sqs_client.receive_message(
            QueueUrl=url, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        messages = answer.get("Messages") or []
        if messages:
            return dict(messages[0])
    raise AssertionError(f"no dead letter in {url} after {timeout} s")


@dataclass
class Delivery:
    body: Any
    content_type: str | None
    headers: dict[str, Any]


def consume_until(conn: Connection, queue: Any, good: Any, timeout: float = 15) -> list[Delivery]:
    """Consume until ``good`` arrives; every delivery, in order.

    Like Celery, the consumer acknowledges a message whose body it cannot decode.
    """
    deliveries: list[Delivery] = []

    def on_message(body: Any, message: Message) -> None:
        deliveries.append(Delivery(body, message.content_type, dict(message.headers)))
        message.ack()

    def on_decode_error(message: Message, exc: Exception) -> None:
        message.ack()

    with Consumer(conn, [queue], callbacks=[on_message], on_decode_error=on_decode_error):
        deadline = time.monotonic() + timeout
        while not any(d.body == good for d in deliveries) and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.5)
        # Whatever was received with the good message is settled too.
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.5)
    assert any(d.body == good for d in deliveries), f"good message not received: {deliveries}"
    return deliveries


# -- message cases (Kombu consumer) ---------------------------------------------------------

#: A foreign producer's message: (body, message attributes).
Sent = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class MessageCase:
    id: str
    sent: Sent
    #: "delivered" (body and content type below) or "dead-lettered" (reason prefix below).
    outcome: str
    body: Any = None
    content_type: str | None = None
    reason: str = ""


BAD_BASE64_ENVELOPE = envelope(None, body="%%% not base64 %%%")

MESSAGE_CASES = [
    MessageCase(
        "plain-text",
        ("plain text from another system", {}),
        "delivered",
        "plain text from another system",
        "text/plain",
    ),
    MessageCase("invalid-base64", ("!!!!", {}), "delivered", "!!!!", "text/plain"),
    MessageCase(
        "base64-of-non-utf8-bytes",
        (b64(b"\xff\xfe\x00binary"), {}),
        "delivered",
        b64(b"\xff\xfe\x00binary"),
        "text/plain",
    ),
    MessageCase(
        "json-not-kombu",
        (json.dumps({"order": 7}), {}),
        "delivered",
        {"order": 7},
        "application/json",
    ),
    MessageCase(
        "unknown-attributes",
        (
            "with attributes",
            {
                "x-trace": {"DataType": "String", "StringValue": "abc"},
                "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
            },
        ),
        "delivered",
        "with attributes",
        "text/plain",
    ),
    MessageCase(
        "kombu-body-not-base64",
        (json.dumps(BAD_BASE64_ENVELOPE), {}),
        "dead-lettered",
        reason="unreadable: its body cannot be decoded",
    ),
    MessageCase(
        "kombu-body-an-object",
        (json.dumps(envelope(None, body={"x": 1})), {}),
        "dead-lettered",
        reason="unreadable: its body is a JSON dict, not a string",
    ),
    MessageCase(
        "kombu-headers-a-list",
        (b64(json.dumps(envelope("x", headers=[1, 2]))), {}),
        "dead-lettered",
        reason="unreadable: its headers are a JSON list, not an object",
    ),
    MessageCase(
        "kombu-body-not-its-content-type",
        (b64(json.dumps(envelope(b"{not json"))), {}),
        "dead-lettered",
        reason="unreadable: its body cannot be decoded (DecodeError",
    ),
    MessageCase(
        "ten-attributes-unreadable",
        (json.dumps(BAD_BASE64_ENVELOPE), string_attributes(10)),
        "dead-lettered",
        reason="",  # no room for the reason: SQS allows 10 attributes
    ),
]


@pytest.mark.parametrize("case", MESSAGE_CASES, ids=lambda case: case.id)
def test_foreign_message_is_delivered_or_dead_lettered_and_consuming_goes_on(
    endpoint: LocalEndpoint,
    prefix: str,
    sqs_client: Any,
    case: MessageCase,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = direct_queue("work")
    redrive = {"dead_letter_queue": "dead", "max_receive_count": 3}
    with connect(endpoint, prefix, redrive_policy=redrive) as conn:
        queue(conn.default_channel).declare()
        url = url_of(conn, "work")
        body, attributes = case.sent
        bad_id = sqs_client.send_message(
            QueueUrl=url, MessageBody=body, MessageAttributes=attributes
        )["MessageId"]
        publish(conn, queue, ["good"])
        with caplog.at_level(logging.INFO, logger="sqsbus"):
            deliveries = consume_until(conn, queue, "good")
        assert wait_until_empty(sqs_client, url)
        dead_url = url_of(conn, "dead")
        if case.outcome == "delivered":
            [bad] = [d for d in deliveries if d.body != "good"]
            assert (bad.body, bad.content_type) == (case.body, case.content_type)
            if attributes:
                assert bad.headers == {"x-trace": "abc"}  # string attributes become headers
            assert counts(sqs_client, dead_url) == (0, 0)
            return
        assert [d.body for d in deliveries] == ["good"]
        letter = take_letter(sqs_client, dead_url)
    assert letter["Body"] == body  # the message as it came, unchanged
    kept = letter.get("MessageAttributes", {})
    assert {k: v for k, v in kept.items() if k not in (REASON, SOURCE)} == attributes
    assert f"moved message {bad_id}" in caplog.text  # logged with its id and the reason
    if case.reason:
        assert kept[REASON]["StringValue"].startswith(case.reason)
        assert kept[SOURCE]["StringValue"] == f"{prefix}work"
        assert case.reason in caplog.text
    else:
        assert REASON not in kept
        assert "unreadable" in caplog.text


def test_a_due_time_on_a_fifo_message_is_ignored_not_hopped_forever(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    """Only sqsbus's own delay hops carry ``sqsbus.eta``, and never on FIFO queues, where SQS
    takes no per-message delay: a sender's due time there is delivered, not re-sent."""
    queue = direct_queue("orders.fifo")
    with connect(endpoint, prefix) as conn:
        queue(conn.default_channel).declare()
        sqs_client.send_message(
            QueueUrl=url_of(conn, "orders.fifo"),
            MessageBody=json.dumps(envelope("due in a day")),
            MessageGroupId="g",
            MessageDeduplicationId="d1",
            MessageAttributes={ETA_ATTRIBUTE: eta_attribute(time.time() + 86_400)},
        )
        with counting_sends() as sends:
            message = get_within(queue(conn.default_channel), 15)
        assert message is not None and message.payload == "due in a day"
        message.ack()
        assert sum(sends.values()) == 0, sends


def wait_until_empty(sqs_client: Any, url: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while counts(sqs_client, url) != (0, 0):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_unreadable_message_without_dead_letter_queue_is_logged_with_its_id_and_deleted(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    queue = direct_queue("work")
    with connect(endpoint, prefix) as conn:
        queue(conn.default_channel).declare()
        url = url_of(conn, "work")
        bad_id = sqs_client.send_message(QueueUrl=url, MessageBody=json.dumps(BAD_BASE64_ENVELOPE))[
            "MessageId"
        ]
        publish(conn, queue, ["good"])
        with caplog.at_level(logging.WARNING, logger="sqsbus"):
            deliveries = consume_until(conn, queue, "good")
        assert [d.body for d in deliveries] == ["good"]
        assert wait_until_empty(sqs_client, url)
    assert f"message {bad_id} on queue {prefix}work is unreadable" in caplog.text
    assert 'deleting it. Body: \'{"body": "%%% not base64 %%%"' in caplog.text


# -- SNS envelopes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_delivery", "message", "expected"),
    [
        (False, b64(json.dumps(envelope({"n": 1}))), {"n": 1}),  # Kombu message, wrapped
        (False, "plain text through SNS", "plain text through SNS"),
        (True, b64(json.dumps(envelope({"n": 1}))), {"n": 1}),
        (True, "plain text through SNS", "plain text through SNS"),
    ],
    ids=["wrapped-kombu", "wrapped-text", "raw-kombu", "raw-text"],
)
def test_sns_notification_is_unwrapped_and_delivered(
    endpoint: LocalEndpoint,
    prefix: str,
    sqs_client: Any,
    raw_delivery: bool,
    message: str,
    expected: Any,
) -> None:
    sns = boto3.client("sns", endpoint_url=endpoint.url, region_name="us-east-1")
    queue = direct_queue("work")
    with connect(endpoint, prefix) as conn:
        queue(conn.default_channel).declare()
        url = url_of(conn, "work")
        topic = sns.create_topic(Name=f"{prefix}legacy")["TopicArn"]
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_attributes(sqs_client, url)["QueueArn"],
            Attributes={"RawMessageDelivery": str(raw_delivery).lower()},
        )
        sns.publish(TopicArn=topic, Message=message)
        publish(conn, queue, ["good"])
        deliveries = consume_until(conn, queue, "good")
        assert wait_until_empty(sqs_client, url)
    assert [d.body for d in deliveries if d.body != "good"] == [expected]


# -- sizes, attributes and characters on the publish side ------------------------------------

#: SQS's former (and many queues' configured) maximum message size: 256 KiB.
SMALL_LIMIT = 262_144


def test_huge_header_close_to_the_limit_is_delivered_and_dead_lettered_whole(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    """A header that fills the queue's 256 KiB limit: delivered whole; rejected, it moves to
    the dead-letter queue whole, even though the reason attributes no longer fit."""
    queue = direct_queue("work")
    options = {
        "sqs-creation-attributes": {"MaximumMessageSize": str(SMALL_LIMIT)},
        "redrive_policy": {"dead_letter_queue": "dead", "max_receive_count": 3},
        "sqs_base64_encoding": False,
    }
    with connect(endpoint, prefix, **options) as conn:
        probe = "h" * 1000
        publish(conn, queue, ["near the limit"], headers={"big": probe})
        url = url_of(conn, "work")
        raw = sqs_client.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"][0]
        sqs_client.delete_message(QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"])
        # 20 bytes short of the limit: the reason attributes (~100 bytes) cannot be added.
        big = "h" * (len(probe) + SMALL_LIMIT - len(raw["Body"]) - 20)
        publish(conn, queue, ["near the limit"], headers={"big": big})
        with pytest.raises(MessageTooLarge, match=f"over the {SMALL_LIMIT}-byte limit"):
            publish(conn, queue, ["over the limit"], headers={"big": big + "h" * 21})
        message = conn.SimpleQueue(queue).get(timeout=10)
        assert message.headers["big"] == big
        message.reject()
        letter = take_letter(sqs_client, url_of(conn, "dead"))
        assert wait_until_empty(sqs_client, url)
    assert json.loads(letter["Body"])["headers"]["big"] == big


def test_attributes_sqs_would_refuse_fail_at_publish_naming_the_attribute(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("work")
    refused = [
        (string_attributes(11), "has 11 message attributes; SQS allows at most 10"),
        ({"bad name!": {"DataType": "String", "StringValue": "v"}}, "'bad name!'.*rename it"),
        ({"AWS.trace": {"DataType": "String", "StringValue": "v"}}, "not starting with 'AWS."),
        ({"a": {"DataType": "Text", "StringValue": "v"}}, "String, Number or Binary"),
        ({"a": "just a string"}, "must be a dict like"),
        ({"a": {"DataType": "String", "StringValue": "nul\x00"}}, "U\\+0000, which SQS refuses"),
        ({"a": {"DataType": "String", "StringValue": "\ud800"}}, "U\\+D800, which SQS refuses"),
    ]
    with connect(endpoint, prefix) as conn:
        for attributes, problem in refused:
            with pytest.raises(ConfigurationError, match=problem):
                publish(conn, queue, ["never sent"], message_attributes=attributes)
        publish(conn, queue, ["sent"], message_attributes=string_attributes(10))
        assert counts(sqs_client, url_of(conn, "work")) == (1, 0)


def test_exchange_messages_sns_or_bound_queues_would_refuse_fail_before_sending(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    """Through SNS a refused delivery to a queue is lost without an answer: check first."""
    fanout, topic = Exchange("bcast", type="fanout"), Exchange("events", type="topic")
    node, listener = Queue("node", fanout), Queue("listener", topic, "order.*")
    with connect(endpoint, prefix) as conn:
        node(conn.default_channel).declare()
        listener(conn.default_channel).declare()
        with conn.Producer() as producer:
            with pytest.raises(
                MessageTooLarge,
                match=r"over the 262144-byte limit of SNS for exchange 'bcast'; nothing was sent",
            ):
                producer.publish("x" * 250_000, exchange=fanout)
            with pytest.raises(ConfigurationError, match="routed by key may have at most 9"):
                producer.publish(
                    "y",
                    exchange=topic,
                    routing_key="order.new",
                    message_attributes=string_attributes(10),
                )
            producer.publish(
                "z",
                exchange=topic,
                routing_key="order.new",
                message_attributes=string_attributes(9),
            )
        assert conn.transport.stats.calls().get("sns.Publish") == 1
        message = conn.SimpleQueue(listener).get(timeout=10)
        assert message.payload == "z"
        message.ack()
        assert counts(sqs_client, url_of(conn, "node")) == (0, 0)


@pytest.mark.parametrize("base64_encoding", [True, False], ids=["base64", "plain-json"])
def test_characters_sqs_refuses_are_escaped_on_the_wire_and_arrive_intact(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, base64_encoding: bool
) -> None:
    """AWS refuses bodies with U+0000-U+001F (but tab, CR, LF), U+FFFE/U+FFFF and
    surrogates (moto accepts them); UTF-8 cannot carry a lone surrogate at all."""
    queue = direct_queue("work")
    text = "nul\x00 bom\ufffe max\uffff lone\ud800 emoji\U0001f600"
    with connect(endpoint, prefix, sqs_base64_encoding=base64_encoding) as conn:
        publish(conn, queue, [{"text": text}], headers={"h": text})
        raw = sqs_client.receive_message(QueueUrl=url_of(conn, "work"), VisibilityTimeout=0)
        wire = raw["Messages"][0]["Body"]
        assert REFUSED_CHARACTERS.search(wire) is None
        message = conn.SimpleQueue(queue).get(timeout=10)
        message.ack()
    assert (message.payload, message.headers["h"]) == ({"text": text}, text)


# -- Celery task shapes (one shared worker) ---------------------------------------------------


@dataclass
class CeleryHarness:
    app: Any
    worker: WorkerProcess
    settings: AppSettings
    queue_url: str
    dead_url: str


@pytest.fixture(scope="module")
def celery_worker(
    endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryHarness]:
    base = tmp_path_factory.mktemp("hostile-celery")
    (base / "results").mkdir()
    (base / "state").mkdir()
    settings = AppSettings(
        broker_url=endpoint.broker_url(),
        queue_name_prefix=f"h{uuid.uuid4().hex[:8]}-",
        result_dir=str(base / "results"),
        state_dir=str(base / "state"),
        transport_options={"redrive_policy": {"dead_letter_queue": "dead", "max_receive_count": 3}},
    )
    app = create_app(settings)
    worker = WorkerProcess(settings, base / "worker.log", name="hostile", concurrency=1)
    try:
        worker.start()
        worker.wait_ready(app)
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")

        def url(name: str) -> str:
            return str(
                client.get_queue_url(QueueName=settings.queue_name_prefix + name)["QueueUrl"]
            )

        yield CeleryHarness(app, worker, settings, url("celery"), url("dead"))
    finally:
        worker.stop()
        app.close()


def task_message(app: Any, name: str, args: Any = (), **header_changes: Any) -> dict[str, Any]:
    """The Kombu envelope Celery (protocol 2) would send for ``name(*args)``, then changed."""
    task_id = str(uuid.uuid4())
    message = app.amqp.as_task_v2(task_id, name, args=args, kwargs={})
    headers = {**message.headers, **header_changes}
    for key, value in header_changes.items():
        if value is None:
            headers.pop(key)
    return envelope(message.body, headers=headers)


@pytest.mark.celery
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda app: task_message(app, "no.such.task"), "rejected without requeue"),
        (
            lambda app: (
                task_message(app, "sqsbus_tests.add", task=None, id=None)
                | {"body": b64("{not json")}
            ),
            "unreadable: its body cannot be decoded",
        ),
        (
            lambda app: task_message(app, "sqsbus_tests.add") | {"body": b64('{"a": 1}')},
            "unreadable: its body cannot be decoded (malformed Celery task message: its body "
            "must be [args, kwargs, embed]",  # Celery's worker would exit on it
        ),
        (lambda app: envelope([[2, 3], {}, {}], headers="task"), "unreadable: its headers"),
        (
            lambda app: task_message(app, "sqsbus_tests.add", task=None, id=None),
            "rejected without requeue",  # protocol 1 guess: body is not a task dict
        ),
    ],
    ids=[
        "unknown-task",
        "no-headers-body-not-json",
        "args-not-a-list",
        "headers-not-a-dict",
        "protocol-2-headers-missing",
    ],
)
def test_malformed_task_message_is_moved_aside_and_the_worker_goes_on(
    celery_worker: CeleryHarness,
    sqs_client: Any,
    make: Callable[[Any], dict[str, Any]],
    reason: str,
) -> None:
    harness = celery_worker
    offset = len(harness.worker.log())
    body = b64(json.dumps(make(harness.app)))
    sqs_client.send_message(QueueUrl=harness.queue_url, MessageBody=body)
    result = task(harness.app, "add").delay(2, 3)
    assert result.get(timeout=30) == 5, harness.worker.log_hint()
    harness.worker.check_alive("after a malformed task message")
    assert wait_until_empty(sqs_client, harness.queue_url), harness.worker.log_hint()
    letter = take_letter(sqs_client, harness.dead_url)
    sqs_client.delete_message(QueueUrl=harness.dead_url, ReceiptHandle=letter["ReceiptHandle"])
    assert letter["Body"] == body
    assert letter["MessageAttributes"][REASON]["StringValue"].startswith(reason)
    assert "moved message" in harness.worker.log()[offset:]


# -- configuration --------------------------------------------------------------------------

BOUNDS = [
    ({"wait_time_seconds": 21}, "'wait_time_seconds' must be an integer from 0 to 20, got 21"),
    ({"visibility_timeout": 43_201}, "'visibility_timeout' must be an integer from 0 to 43200"),
    ({"lease_seconds": -1}, "'lease_seconds' must be an integer from 0 to 43200, got -1"),
    (
        {"sts_token_timeout": 899},
        "'sts_token_timeout' must be an integer from 900 to 43200, got 899",
    ),
    ({"sts_token_timeout": 43_201}, "from 900 to 43200, got 43201"),
    (
        {"sts_token_buffer_time": 900},
        "'sts_token_buffer_time' (900) must be less than 'sts_token_timeout' (900)",
    ),
    ({"publish_linger_ms": 60_001}, "'publish_linger_ms' must be an integer from 0 to 60000"),
    ({"receive_coalesce_ms": 10_001}, "'receive_coalesce_ms' must be an integer from 0 to 10000"),
    ({"polling_interval": -1}, "'polling_interval' must be a number of seconds >= 0, got -1"),
    ({"orphan_sweep_interval": float("inf")}, "'orphan_sweep_interval' must be a number"),
    ({"temporary_queue_min_expires": 0}, "'temporary_queue_min_expires' must be an integer from 1"),
    ({"priority_steps": [0, 256]}, "'priority_steps' must be an integer from 0 to 255, got 256"),
    (
        {"redrive_policy": {"dead_letter_queue": "d", "max_receive_count": 1001}},
        "max_receive_count'] must be an integer from 1 to 1000",
    ),
    (
        {"large_payload_bucket": "b-1", "large_payload_threshold": 16 * 1_048_576 + 1},
        "'large_payload_threshold' must be an integer from 0 to 16777216",
    ),
    ({"large_payload_threshold": 1000}, "needs 'large_payload_bucket'"),
    ({"large_payload_prefix": "p/"}, "or 'large_payload_allowed_buckets'"),
    ({"large_payload_max_bytes": 0}, "'large_payload_max_bytes' must be an integer from 1 to"),
    ({"fifo_message_group_id": "g" * 129}, "must be 1 to 128 printable ASCII characters"),
    (
        {"sqs-creation-attributes": {"MessageRetentionPeriod": 59}},
        "['MessageRetentionPeriod'] must be an integer from 60 to 1209600, got '59'",
    ),
    (
        {"sqs-creation-attributes": {"MaximumMessageSize": 2_000_000}},
        "['MaximumMessageSize'] must be an integer from 1024 to 1048576",
    ),
    ({"sqs-creation-attributes": {"DelaySeconds": 901}}, "['DelaySeconds'] must be an integer"),
    (
        {"sqs-creation-attributes": {"ReceiveMessageWaitTimeSeconds": 21}},
        "['ReceiveMessageWaitTimeSeconds'] must be an integer from 0 to 20",
    ),
    (
        {"sqs-creation-attributes": {"VisibilityTimeout": 43_201}},
        "['VisibilityTimeout'] must be an integer from 0 to 43200",
    ),
    (
        {"sqs-creation-attributes": {"KmsDataKeyReusePeriodSeconds": 30}},
        "['KmsDataKeyReusePeriodSeconds'] must be an integer from 60 to 86400",
    ),
]
NAMES_AND_TYPES = [
    ({"wait_time_second": 5}, "unknown transport option 'wait_time_second' (did you mean"),
    (
        {"sqs-creation-attributes": {"VisibilityTimout": 5}},
        "unknown queue attribute 'VisibilityTimout' (did you mean 'VisibilityTimeout'?)",
    ),
    (
        {"wait_time_seconds": "ten"},
        "'wait_time_seconds' must be an integer from 0 to 20, got 'ten'",
    ),
    ({"is_secure": "maybe"}, "'is_secure' must be true or false, got 'maybe'"),
    ({"region": 5}, "'region' must be an AWS region name such as 'eu-west-1', got 5"),
    ({"region": "eu west 1"}, "'region' must be an AWS region name such as 'eu-west-1'"),
    ({"session_token": 12}, "'session_token' must be a string, got a int"),
    ({"predefined_queues": {"q": {"url": "x", "secret_access_key": CANARY_SECRET}}}, "http(s) URL"),
    ({"client-config": {"conect_timeout": 1}}, "unknown botocore Config key 'conect_timeout'"),
    (
        {"large_payload_allowed_buckets": ["ok-bucket", "Bad_Bucket"]},
        "large_payload_allowed_buckets entry must be an S3 bucket name",
    ),
    ({"large_payload_allowed_buckets": 7}, "must be a list of S3 bucket names, got 7"),
]


@pytest.mark.parametrize(
    ("options", "problem"),
    BOUNDS + NAMES_AND_TYPES,
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else "",
)
def test_bad_option_fails_at_connect_naming_it_and_what_it_accepts(
    endpoint: LocalEndpoint, options: dict[str, Any], problem: str
) -> None:
    url = f"sqsbus://testing:{CANARY_SECRET}@127.0.0.1:{endpoint.port}"
    conn = Connection(url, transport_options=options)
    with pytest.raises(ConfigurationError) as raised:
        conn.connect()
    message = str(raised.value)
    assert problem in message
    assert CANARY_SECRET not in message


@pytest.mark.parametrize(
    ("name", "error", "problem"),
    [
        ("x" * 80, ConfigurationError, "characters; SQS allows at most 80"),
        ("x" * 70 + ".fifo", ConfigurationError, "characters; SQS allows at most 80"),
    ],
    ids=["too-long", "too-long-fifo"],
)
def test_queue_name_sqs_would_refuse_is_refused_before_any_request(
    endpoint: LocalEndpoint, prefix: str, name: str, error: type[Exception], problem: str
) -> None:
    with connect(endpoint, prefix) as conn, pytest.raises(error, match=problem):
        publish(conn, direct_queue(name), ["never sent"])


def test_characters_sqs_refuses_in_queue_names_are_translated_as_kombu_does(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("wé ird/na:me.v2")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["x"])
        assert url_of(conn, "wé ird/na:me.v2").endswith(f"/{prefix}w__ird_na_me-v2")
        assert conn.SimpleQueue(queue).get(timeout=10).payload == "x"


def test_fifo_name_on_a_standard_queue_url_is_refused(endpoint: LocalEndpoint, prefix: str) -> None:
    with connect(endpoint, prefix) as conn:
        conn.SimpleQueue("plain").put("x")
        url = url_of(conn, "plain")
    with (
        connect(endpoint, prefix, predefined_queues={"plain.fifo": {"url": url}}) as conn,
        pytest.raises(InvalidQueueError, match=r"named as a FIFO queue but .* is not a FIFO"),
    ):
        conn.SimpleQueue("plain.fifo").put("x")


@pytest.fixture(scope="module")
def iam_key(authenticating_endpoint: LocalEndpoint) -> tuple[str, str]:
    """A real access key of the authenticating endpoint (made by its two free requests)."""
    iam = boto3.client("iam", endpoint_url=authenticating_endpoint.url, region_name="us-east-1")
    iam.create_user(UserName="sqsbus")
    key = iam.create_access_key(UserName="sqsbus")["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


@pytest.mark.parametrize("which", ["unknown-key", "wrong-secret"])
def test_bad_credentials_are_a_credentials_error_without_the_secret(
    authenticating_endpoint: LocalEndpoint, iam_key: tuple[str, str], which: str
) -> None:
    key_id = "AKIAUNKNOWN000000000" if which == "unknown-key" else iam_key[0]
    url = f"sqsbus://{key_id}:{CANARY_SECRET}@127.0.0.1:{authenticating_endpoint.port}"
    conn = Connection(url, transport_options={"client-config": {"retries": {"max_attempts": 1}}})
    with pytest.raises(CredentialsError) as raised:
        conn.connect()
    message = str(raised.value)
    assert "AWS rejected the credentials" in message
    assert "Check the key pair in the broker URL or the boto3 credential chain" in message
    assert CANARY_SECRET not in message


def test_unknown_region_is_named(endpoint: LocalEndpoint) -> None:
    """A region botocore does not know, with no endpoint_url: the error names the region."""
    conn = Connection(
        f"sqsbus://AKIAEXAMPLE:{CANARY_SECRET}@",
        transport_options={
            "region": "eu-wset-1",
            "client-config": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
        },
    )
    with pytest.raises(ConfigurationError) as raised:
        conn.connect()
    message = str(raised.value)
    assert "region 'eu-wset-1' is not an AWS region botocore knows" in message
    assert "Check the 'region' transport option" in message
    assert CANARY_SECRET not in message


def test_queue_of_another_region_does_not_exist(endpoint: LocalEndpoint, prefix: str) -> None:
    with connect(endpoint, prefix) as conn:
        conn.SimpleQueue("east").put("x")
        url = url_of(conn, "east")
    options = {"region": "eu-west-1", "predefined_queues": {"east": {"url": url}}}
    with (
        connect(endpoint, prefix, **options) as conn,
        pytest.raises(
            QueueDoesNotExist, match="queue 'east': the queue does not exist in region eu-west-1"
        ),
    ):
        conn.SimpleQueue("east").put("y")
