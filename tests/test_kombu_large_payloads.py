"""Large payloads through S3 with Kombu consumers, and interop with the SQS Extended Clients.

Messages over the queue's limit go to S3 in the Amazon SQS Extended Client format; the
consumer reads them back, and the object is deleted once the SQS message is. Messages the
extended clients (or anyone following docs/large-payloads.md) write are consumed, and what
sqsbus writes can be read back by following that format with plain boto3.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from kombu import Connection
from kombu_helpers import connect, consume, counts, direct_queue, publish, url_of, wait_until

import sqsbus
from sqsbus import codec
from sqsbus.engine.delays import ETA_ATTRIBUTE
from sqsbus.engine.pointer import PayloadPointer
from sqsbus.errors import ConfigurationError, MessageTooLarge, PublishBatchError
from sqsbus.local import DEFAULT_ACCESS_KEY, DEFAULT_REGION, DEFAULT_SECRET_KEY, LocalEndpoint

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY_POINTER_CLASS = "com.amazon.sqs.javamessaging.MessageS3Pointer"
TWO_MIB = 2 * 1_048_576


@pytest.fixture(scope="module")
def s3(endpoint: LocalEndpoint) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        region_name=DEFAULT_REGION,
        aws_access_key_id=DEFAULT_ACCESS_KEY,
        aws_secret_access_key=DEFAULT_SECRET_KEY,
    )


@pytest.fixture
def bucket(s3: Any, prefix: str) -> str:
    name = f"{prefix}payloads"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def conn_factory(endpoint: LocalEndpoint, prefix: str) -> Iterator[Callable[..., Connection]]:
    opened: list[Connection] = []

    def make(**options: Any) -> Connection:
        conn = connect(endpoint, prefix, **options)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        conn.release()


def keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents") or []]


def text_of(size: int) -> str:
    """``size`` characters that do not compress to nothing."""
    chunk = uuid.uuid4().hex
    return (chunk * (size // len(chunk) + 1))[:size]


# -- sqsbus to sqsbus -------------------------------------------------------------------


def test_two_mib_message_goes_through_s3_and_its_object_is_deleted_after_ack(
    conn_factory: Callable[..., Connection], s3: Any, bucket: str, sqs_client: Any
) -> None:
    conn = conn_factory(large_payload_bucket=bucket)
    queue = direct_queue("big")
    data = text_of(TWO_MIB)
    publish(conn, queue, [{"data": data}])
    assert len(keys(s3, bucket)) == 1

    [(body, _message)] = consume(conn, [queue], 1)

    assert body == {"data": data}
    url = url_of(conn, "big")
    assert wait_until(lambda: keys(s3, bucket) == [] and counts(sqs_client, url) == (0, 0))
    calls = conn.transport.stats.calls()
    assert (calls["s3.PutObject"], calls["s3.GetObject"], calls["s3.DeleteObject"]) == (1, 1, 1)


def test_small_messages_stay_in_sqs_when_a_bucket_is_set(
    conn_factory: Callable[..., Connection], s3: Any, bucket: str
) -> None:
    conn = conn_factory(large_payload_bucket=bucket)
    queue = direct_queue("small")
    publish(conn, queue, [{"n": 1}])
    assert keys(s3, bucket) == []
    assert [body for body, _ in consume(conn, [queue], 1)] == [{"n": 1}]
    assert not any(name.startswith("s3.") for name in conn.transport.stats.calls())


def test_requeue_keeps_the_payload_and_reject_deletes_it(
    conn_factory: Callable[..., Connection], s3: Any, bucket: str, sqs_client: Any
) -> None:
    conn = conn_factory(large_payload_bucket=bucket, large_payload_threshold=1000)
    queue = direct_queue("settle")
    data = text_of(5000)
    publish(conn, queue, [data])
    [stored] = keys(s3, bucket)

    [(body, message)] = consume(conn, [queue], 1, ack=False)
    assert body == data
    message.requeue()
    [(again, message)] = consume(conn, [queue], 1, ack=False)
    assert again == data
    assert message.delivery_info["redelivered"]
    assert keys(s3, bucket) == [stored]

    message.reject()
    url = url_of(conn, "settle")
    assert wait_until(lambda: keys(s3, bucket) == [] and counts(sqs_client, url) == (0, 0))


def test_payload_is_kept_after_ack_when_delete_after_ack_is_off(
    conn_factory: Callable[..., Connection], s3: Any, bucket: str, sqs_client: Any
) -> None:
    conn = conn_factory(
        large_payload_bucket=bucket,
        large_payload_threshold=1000,
        large_payload_delete_after_ack=False,
    )
    queue = direct_queue("keep")
    publish(conn, queue, [text_of(5000)])
    consume(conn, [queue], 1)
    url = url_of(conn, "keep")
    assert wait_until(lambda: counts(sqs_client, url) == (0, 0))
    conn.transport.acker.flush()
    assert len(keys(s3, bucket)) == 1


def test_refused_batched_or_lingering_message_takes_its_payload_away_with_it(
    conn_factory: Callable[..., Connection], s3: Any, bucket: str, sqs_client: Any
) -> None:
    """A message refused after publish returned (batched, lingering) leaves no S3 object."""
    batched = conn_factory(large_payload_bucket=bucket, large_payload_threshold=1000)
    lingering = conn_factory(
        large_payload_bucket=bucket, large_payload_threshold=1000, publish_linger_ms=10
    )
    for conn, name in ((batched, "refused-batched"), (lingering, "refused-lingering")):
        queue = direct_queue(name)
        queue(conn.default_channel).declare()
        sqs_client.delete_queue(QueueUrl=url_of(conn, name))
    with (
        pytest.raises(PublishBatchError, match="1 not accepted"),
        sqsbus.batched_publishing(),
        batched.Producer() as producer,
    ):
        producer.publish(text_of(5000), exchange="", routing_key="refused-batched")
    with lingering.Producer() as producer:
        producer.publish(text_of(5000), exchange="", routing_key="refused-lingering")
    assert wait_until(lambda: keys(s3, bucket) == [])


def test_too_large_without_a_bucket_raises_naming_size_limit_and_fix(
    conn_factory: Callable[..., Connection], sqs_client: Any
) -> None:
    conn = conn_factory()
    queue = direct_queue("nobucket")
    payload = text_of(1_100_000)
    with pytest.raises(MessageTooLarge) as raised:
        publish(conn, queue, [payload])
    text = str(raised.value)
    assert "1048576-byte limit" in text
    assert "large_payload_bucket" in text and "nothing was sent" in text
    assert counts(sqs_client, url_of(conn, "nobucket")) == (0, 0)


def test_missing_object_leaves_the_message_in_the_queue_and_consuming_goes_on(
    conn_factory: Callable[..., Connection],
    bucket: str,
    sqs_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = conn_factory(large_payload_allowed_buckets=[bucket])
    queue = direct_queue("missing")
    publish(conn, queue, [{"n": 1}])
    url = url_of(conn, "missing")
    pointer = json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": "gone"}])
    sent = sqs_client.send_message(
        QueueUrl=url,
        MessageBody=pointer,
        MessageAttributes={"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "9"}},
    )

    with caplog.at_level(logging.ERROR, logger="sqsbus"):
        bodies = [body for body, _ in consume(conn, [queue], 1)]
        assert wait_until(lambda: sent["MessageId"] in caplog.text)

    assert bodies == [{"n": 1}]
    assert f"s3://{bucket}/gone" in caplog.text and "does not exist" in caplog.text
    conn.transport.acker.flush()
    assert counts(sqs_client, url) == (0, 1)  # kept, invisible until its visibility timeout


# -- the extended-client format, with plain boto3 ---------------------------------------


@pytest.mark.parametrize(
    ("attribute", "pointer_class", "separators"),
    [
        ("SQSLargePayloadSize", LEGACY_POINTER_CLASS, (",", ":")),  # older Java clients
        ("SQSLargePayloadSize", POINTER_CLASS, (",", ":")),  # Java 2.x default
        ("ExtendedPayloadSize", POINTER_CLASS, (", ", ": ")),  # Python client
    ],
)
def test_message_written_in_the_extended_client_format_is_consumed(
    conn_factory: Callable[..., Connection],
    s3: Any,
    bucket: str,
    sqs_client: Any,
    attribute: str,
    pointer_class: str,
    separators: tuple[str, str],
) -> None:
    conn = conn_factory(large_payload_allowed_buckets=[bucket])
    queue = direct_queue("foreign")
    publish(conn, queue, [{"warm": "up"}])  # declares the queue
    order = {"order": 7, "lines": [text_of(100) for _ in range(3000)]}
    payload = json.dumps(order).encode()
    s3.put_object(Bucket=bucket, Key="orders/7", Body=payload)
    pointer = json.dumps(
        [pointer_class, {"s3BucketName": bucket, "s3Key": "orders/7"}], separators=separators
    )
    url = url_of(conn, "foreign")
    sqs_client.send_message(
        QueueUrl=url,
        MessageBody=pointer,
        MessageAttributes={
            attribute: {"DataType": "Number", "StringValue": str(len(payload))},
            "tenant": {"DataType": "String", "StringValue": "acme"},
        },
    )

    [(body, message)] = [r for r in consume(conn, [queue], 2) if r[0] != {"warm": "up"}]
    assert body == order
    assert message.headers["tenant"] == "acme"
    assert attribute not in message.delivery_info["sqs_message"]["MessageAttributes"]
    assert wait_until(lambda: keys(s3, bucket) == [] and counts(sqs_client, url) == (0, 0))


def test_what_sqsbus_offloads_reads_back_by_the_documented_format(
    conn_factory: Callable[..., Connection], s3: Any, bucket: str, sqs_client: Any
) -> None:
    conn = conn_factory(
        large_payload_bucket=bucket, large_payload_always=True, large_payload_prefix="kombu/"
    )
    queue = direct_queue("documented")
    publish(conn, queue, [{"tiny": True}])
    url = url_of(conn, "documented")

    [raw] = sqs_client.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]

    class_name, location = json.loads(raw["Body"])
    assert class_name == POINTER_CLASS
    assert location["s3BucketName"] == bucket and location["s3Key"].startswith("kombu/")
    stored = s3.get_object(Bucket=bucket, Key=location["s3Key"])["Body"].read()
    assert raw["MessageAttributes"]["ExtendedPayloadSize"] == {
        "DataType": "Number",
        "StringValue": str(len(stored)),
    }
    envelope = codec.decode_body(stored.decode()).envelope
    assert envelope is not None and envelope["properties"]["body_encoding"] == "base64"
    assert json.loads(base64.b64decode(envelope["body"])) == {"tiny": True}


# -- the real Python extended client ----------------------------------------------------


@pytest.fixture
def extended_client(
    endpoint: LocalEndpoint, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """An SQS client of ``amazon-sqs-extended-client`` on the endpoint, storing in ``bucket``."""
    # Importing the package replaces boto3's Session class: undo that after the test.
    monkeypatch.setattr(boto3, "Session", boto3.Session)
    monkeypatch.setattr(boto3.session, "Session", boto3.session.Session)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.DEFAULT_SESSION)
    module = pytest.importorskip(
        "sqs_extended_client.client", reason="amazon-sqs-extended-client is not installed"
    )
    session = module.SQSExtendedClientSession(
        aws_access_key_id=DEFAULT_ACCESS_KEY,
        aws_secret_access_key=DEFAULT_SECRET_KEY,
        region_name=DEFAULT_REGION,
    )
    client = session.client("sqs", endpoint_url=endpoint.url)
    client.s3_client = s3  # it makes its own S3 client without the endpoint
    client.large_payload_support = bucket
    client.delete_payload_from_s3 = True
    return client


def test_python_extended_client_message_is_consumed(
    conn_factory: Callable[..., Connection],
    extended_client: Any,
    s3: Any,
    bucket: str,
    sqs_client: Any,
) -> None:
    conn = conn_factory(large_payload_allowed_buckets=[bucket])
    queue = direct_queue("from-extended")
    publish(conn, queue, [{"warm": "up"}])
    url = url_of(conn, "from-extended")
    text = text_of(400_000)  # over the extended client's 256 KiB threshold
    extended_client.send_message(QueueUrl=url, MessageBody=text)
    assert len(keys(s3, bucket)) == 1

    bodies = [body for body, _ in consume(conn, [queue], 2)]

    assert text in bodies
    assert wait_until(lambda: keys(s3, bucket) == [] and counts(sqs_client, url) == (0, 0))


def test_python_extended_client_reads_what_sqsbus_offloaded(
    conn_factory: Callable[..., Connection],
    extended_client: Any,
    s3: Any,
    bucket: str,
    sqs_client: Any,
) -> None:
    conn = conn_factory(large_payload_bucket=bucket)
    queue = direct_queue("to-extended")
    data = text_of(TWO_MIB)
    publish(conn, queue, [{"data": data}])
    url = url_of(conn, "to-extended")

    answer = extended_client.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )

    [message] = answer["Messages"]
    envelope = codec.decode_body(message["Body"]).envelope
    assert envelope is not None
    assert json.loads(base64.b64decode(envelope["body"])) == {"data": data}
    extended_client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert keys(s3, bucket) == []
    assert counts(sqs_client, url) == (0, 0)


def string_attributes(count: int) -> dict[str, dict[str, str]]:
    return {f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(count)}


def test_offloaded_message_keeps_its_attributes_but_may_have_only_nine(
    conn_factory: Callable[..., Connection], s3: Any, bucket: str
) -> None:
    conn = conn_factory(large_payload_bucket=bucket, large_payload_threshold=1000)
    queue = direct_queue("attrs")
    data = text_of(5000)
    publish(conn, queue, [data], message_attributes=string_attributes(9))
    [(body, message)] = consume(conn, [queue], 1)
    assert body == data
    assert message.delivery_info["sqs_message"]["MessageAttributes"] == string_attributes(9)
    assert wait_until(lambda: keys(s3, bucket) == [])

    with pytest.raises(ConfigurationError, match="at most 9"):
        publish(conn, queue, [data], message_attributes=string_attributes(10))
    assert keys(s3, bucket) == []


def test_reserved_attribute_names_are_refused_at_publish(
    conn_factory: Callable[..., Connection], sqs_client: Any
) -> None:
    conn = conn_factory()
    queue = direct_queue("reserved")
    size = {"SQSLargePayloadSize": {"DataType": "Number", "StringValue": "5"}}
    with pytest.raises(ConfigurationError, match=r"'SQSLargePayloadSize'.*reserved"):
        publish(conn, queue, ["hello"], message_attributes=size)
    assert counts(sqs_client, url_of(conn, "reserved")) == (0, 0)


# -- dead letters and delays move the pointer, not the payload --------------------------

REDRIVE = {"dead_letter_queue": "dead", "max_receive_count": 3}


def test_rejected_large_message_moves_to_the_dead_letter_queue_with_its_payload(
    conn_factory: Callable[..., Connection], s3: Any, bucket: str, sqs_client: Any
) -> None:
    conn = conn_factory(
        large_payload_bucket=bucket, large_payload_threshold=1000, redrive_policy=REDRIVE
    )
    queue = direct_queue("poison")
    data = text_of(5000)
    publish(conn, queue, [data])
    [stored] = keys(s3, bucket)
    [(_body, message)] = consume(conn, [queue], 1, ack=False)

    message.reject()

    url = url_of(conn, "poison")
    assert wait_until(lambda: counts(sqs_client, url) == (0, 0))
    assert keys(s3, bucket) == [stored]  # the dead-letter copy points to it
    [(dead_body, dead)] = consume(conn, [direct_queue("dead")], 1)
    reason = dead.delivery_info["sqs_message"]["MessageAttributes"]["sqsbus.dead-letter-reason"]
    assert reason["StringValue"] == "rejected without requeue"
    assert dead_body == data
    assert wait_until(lambda: keys(s3, bucket) == [])
    assert conn.transport.stats.calls()["s3.PutObject"] == 1


def test_pointer_to_a_missing_object_goes_to_the_dead_letter_queue(
    conn_factory: Callable[..., Connection], bucket: str, sqs_client: Any
) -> None:
    conn = conn_factory(redrive_policy=REDRIVE, large_payload_allowed_buckets=[bucket])
    queue = direct_queue("lost")
    publish(conn, queue, ["warm up"])
    url = url_of(conn, "lost")
    pointer = json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": "gone"}])
    size = {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "9"}}
    sqs_client.send_message(QueueUrl=url, MessageBody=pointer, MessageAttributes=size)

    assert [body for body, _ in consume(conn, [queue], 1)] == ["warm up"]

    dead = url_of(conn, "dead")
    assert wait_until(
        lambda: counts(sqs_client, dead)[0] == 1 and counts(sqs_client, url) == (0, 0)
    )
    [letter] = sqs_client.receive_message(QueueUrl=dead, MessageAttributeNames=["All"])["Messages"]
    assert letter["Body"] == pointer  # kept whole: the pointer says where the payload was
    reason = letter["MessageAttributes"]["sqsbus.dead-letter-reason"]["StringValue"]
    assert reason.startswith("payload missing") and f"s3://{bucket}/gone" in reason


def test_delayed_large_message_hops_with_its_pointer_until_due(
    conn_factory: Callable[..., Connection], s3: Any, bucket: str, sqs_client: Any
) -> None:
    conn = conn_factory(large_payload_allowed_buckets=[bucket])
    queue = direct_queue("later")
    publish(conn, queue, ["warm up"])
    consume(conn, [queue], 1)
    url = url_of(conn, "later")
    payload = text_of(2_000_000)
    s3.put_object(Bucket=bucket, Key="later/1", Body=payload.encode())
    eta = time.time() + 3  # as if sent 15 minutes ago for an ETA still ahead
    sqs_client.send_message(
        QueueUrl=url,
        MessageBody=PayloadPointer(bucket, "later/1").to_body(),
        MessageAttributes={
            "ExtendedPayloadSize": {"DataType": "Number", "StringValue": str(len(payload))},
            ETA_ATTRIBUTE: {"DataType": "Number", "StringValue": str(eta)},
        },
    )

    [(body, _message)] = consume(conn, [queue], 1)

    assert body == payload
    assert time.time() >= eta - 1
    calls = conn.transport.stats.calls()
    # The hop re-sent the pointer (warm-up + hop), not the payload.
    assert (calls["sqs.SendMessageBatch"], calls.get("s3.PutObject", 0)) == (2, 0)
    assert wait_until(lambda: keys(s3, bucket) == [] and counts(sqs_client, url) == (0, 0))


def test_large_message_parked_at_the_visibility_cap_keeps_one_object(
    conn_factory: Callable[..., Connection], s3: Any, bucket: str
) -> None:
    """Parking (12-hour cap, shortened here) moves the pointer; the payload stays put."""
    holder = conn_factory(
        large_payload_bucket=bucket, large_payload_threshold=1000, lease_seconds=2
    )
    other = conn_factory(large_payload_allowed_buckets=[bucket])
    queue = direct_queue("parked")
    data = text_of(5000)
    publish(holder, queue, [data])
    [stored] = keys(s3, bucket)
    holder.transport.leases.max_total_seconds = 3
    [(body, message)] = consume(holder, [queue], 1, ack=False)
    assert body == data
    assert wait_until(lambda: holder.transport.parking.parked >= 1, timeout=15)
    assert keys(s3, bucket) == [stored]

    message.requeue()  # sent home from the parking queue, as its pointer

    [(again, returned)] = consume(other, [queue], 1)
    assert again == data
    assert "sqsbus.parked-from" not in returned.delivery_info["sqs_message"]["MessageAttributes"]
    assert wait_until(lambda: keys(s3, bucket) == [])
    assert holder.transport.stats.calls()["s3.PutObject"] == 1
