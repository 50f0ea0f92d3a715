"""Trust boundaries (docs/security.md): what a hostile sender's message cannot make a worker do.

Whoever can send to a consumed queue writes the body, the attributes and any S3 pointer of a
message. Each test puts such a message on a queue as that sender would (plain boto3), then a
good one, and checks that the worker reads, deletes and sends nothing its own configuration
did not name, and keeps consuming.
"""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from kombu import Connection, Exchange
from kombu_helpers import connect, consume, counts, direct_queue, publish, url_of, wait_until

from sqsbus.engine.pointer import PayloadPointer
from sqsbus.errors import MessageTooLarge
from sqsbus.local import DEFAULT_ACCESS_KEY, DEFAULT_REGION, DEFAULT_SECRET_KEY, LocalEndpoint
from sqsbus.routing import exchanges

REASON = "sqsbus.dead-letter-reason"
REDRIVE = {"dead_letter_queue": "dead", "max_receive_count": 5}


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
def buckets(s3: Any, prefix: str) -> tuple[str, str]:
    """(the app's payload bucket, another bucket the worker's role can also read)."""
    names = (f"{prefix}payloads", f"{prefix}secrets")
    for name in names:
        s3.create_bucket(Bucket=name)
    return names


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


def send_pointer(
    sqs_client: Any, url: str, bucket: str, key: str, declared: int | str
) -> dict[str, Any]:
    """What a hostile sender puts on the queue: an extended-client pointer of its choice."""
    return dict(
        sqs_client.send_message(
            QueueUrl=url,
            MessageBody=PayloadPointer(bucket, key).to_body(),
            MessageAttributes={
                "ExtendedPayloadSize": {"DataType": "Number", "StringValue": str(declared)}
            },
        )
    )


def dead_letter(sqs_client: Any, conn: Connection) -> dict[str, Any]:
    url = url_of(conn, "dead")
    assert wait_until(lambda: counts(sqs_client, url)[0] == 1)
    [letter] = sqs_client.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    return dict(letter)


def s3_calls(conn: Connection) -> tuple[int, int]:
    calls = conn.transport.stats.calls()
    return calls.get("s3.GetObject", 0), calls.get("s3.DeleteObject", 0) + calls.get(
        "s3.DeleteObjects", 0
    )


# -- 1. S3 pointers: followed only into allowed buckets, under the prefix --------------------


def test_pointer_into_a_bucket_the_consumer_does_not_allow_is_neither_read_nor_deleted(
    conn_factory: Callable[..., Connection],
    s3: Any,
    buckets: tuple[str, str],
    sqs_client: Any,
) -> None:
    payloads, secrets = buckets
    s3.put_object(Bucket=secrets, Key="db-password", Body=b"hunter2-hunter2")
    conn = conn_factory(large_payload_bucket=payloads, redrive_policy=REDRIVE)
    queue = direct_queue("jobs")
    publish(conn, queue, ["warm up"])
    consume(conn, [queue], 1)
    url = url_of(conn, "jobs")
    send_pointer(sqs_client, url, secrets, "db-password", 15)
    publish(conn, queue, ["good"])

    bodies = [body for body, _ in consume(conn, [queue], 1)]

    assert bodies == ["good"]  # the secret never arrives as a task body
    letter = dead_letter(sqs_client, conn)
    assert letter["Body"] == PayloadPointer(secrets, "db-password").to_body()
    reason = letter["MessageAttributes"][REASON]["StringValue"]
    assert f"s3://{secrets}/db-password" in reason and "large_payload_allowed_buckets" in reason
    assert s3.get_object(Bucket=secrets, Key="db-password")["Body"].read() == b"hunter2-hunter2"
    assert s3_calls(conn) == (0, 0)  # S3 was never asked
    assert wait_until(lambda: counts(sqs_client, url) == (0, 0))


def test_without_a_bucket_pointers_are_not_followed_and_the_message_is_logged_then_deleted(
    conn_factory: Callable[..., Connection],
    s3: Any,
    buckets: tuple[str, str],
    sqs_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _payloads, secrets = buckets
    s3.put_object(Bucket=secrets, Key="report.csv", Body=b"a,b,c\n")
    conn = conn_factory()
    queue = direct_queue("plain")
    publish(conn, queue, ["warm up"])
    consume(conn, [queue], 1)
    url = url_of(conn, "plain")
    sent = send_pointer(sqs_client, url, secrets, "report.csv", 6)
    publish(conn, queue, ["good"])

    with caplog.at_level(logging.ERROR, logger="sqsbus"):
        assert [body for body, _ in consume(conn, [queue], 1)] == ["good"]
        assert wait_until(lambda: sent["MessageId"] in caplog.text)

    assert "follows no S3 pointers" in caplog.text and "large_payload_bucket" in caplog.text
    assert wait_until(lambda: counts(sqs_client, url) == (0, 0))
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=secrets)["Contents"]] == ["report.csv"]
    assert s3_calls(conn) == (0, 0)


@pytest.mark.parametrize("key", ["other/report", "jobs/../report", "jobs/./x", "jobsx"])
def test_pointer_outside_the_key_prefix_is_refused(
    conn_factory: Callable[..., Connection],
    s3: Any,
    buckets: tuple[str, str],
    sqs_client: Any,
    key: str,
) -> None:
    payloads, _secrets = buckets
    s3.put_object(Bucket=payloads, Key=key, Body=b"not yours")
    conn = conn_factory(
        large_payload_bucket=payloads, large_payload_prefix="jobs/", redrive_policy=REDRIVE
    )
    queue = direct_queue("prefixed")
    publish(conn, queue, ["warm up"])
    consume(conn, [queue], 1)
    send_pointer(sqs_client, url_of(conn, "prefixed"), payloads, key, 9)
    publish(conn, queue, ["good"])

    assert [body for body, _ in consume(conn, [queue], 1)] == ["good"]
    reason = dead_letter(sqs_client, conn)["MessageAttributes"][REASON]["StringValue"]
    assert reason.startswith("unreadable: its payload pointer names")
    assert s3.get_object(Bucket=payloads, Key=key)["Body"].read() == b"not yours"
    assert s3_calls(conn) == (0, 0)


def test_allowed_buckets_opt_in_reads_and_deletes_only_there(
    conn_factory: Callable[..., Connection],
    s3: Any,
    buckets: tuple[str, str],
    sqs_client: Any,
) -> None:
    """A consumer of a Java producer's bucket, with no bucket of its own."""
    payloads, secrets = buckets
    s3.put_object(Bucket=payloads, Key="orders/1", Body=b'"order one"')
    s3.put_object(Bucket=secrets, Key="orders/2", Body=b'"order two"')
    conn = conn_factory(large_payload_allowed_buckets=[payloads], redrive_policy=REDRIVE)
    queue = direct_queue("orders")
    publish(conn, queue, ["warm up"])
    consume(conn, [queue], 1)
    url = url_of(conn, "orders")
    send_pointer(sqs_client, url, payloads, "orders/1", 11)
    send_pointer(sqs_client, url, secrets, "orders/2", 11)

    assert [body for body, _ in consume(conn, [queue], 1)] == ["order one"]

    assert dead_letter(sqs_client, conn)["Body"] == PayloadPointer(secrets, "orders/2").to_body()
    assert wait_until(lambda: "Contents" not in s3.list_objects_v2(Bucket=payloads))
    assert s3.get_object(Bucket=secrets, Key="orders/2")["Body"].read() == b'"order two"'


# -- 2. bounded payload reads ----------------------------------------------------------------


def test_pointer_declaring_less_than_its_object_is_unreadable_and_the_object_is_not_pulled(
    conn_factory: Callable[..., Connection],
    s3: Any,
    buckets: tuple[str, str],
    sqs_client: Any,
) -> None:
    payloads, _secrets = buckets
    big = 24 * 1_048_576
    s3.put_object(Bucket=payloads, Key="huge", Body=b"x" * big)
    conn = conn_factory(large_payload_bucket=payloads, redrive_policy=REDRIVE)
    queue = direct_queue("bounded")
    publish(conn, queue, ["warm up"])
    consume(conn, [queue], 1)
    send_pointer(sqs_client, url_of(conn, "bounded"), payloads, "huge", 10)
    publish(conn, queue, ["good"])
    conn.transport.aws.client("s3")  # made now: loading botocore's models takes ~13 MB

    tracemalloc.start()
    try:
        assert [body for body, _ in consume(conn, [queue], 1)] == ["good"]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 4 * 1_048_576, f"{peak} bytes allocated while consuming"
    reason = dead_letter(sqs_client, conn)["MessageAttributes"][REASON]["StringValue"]
    assert f"is {big} bytes, but its ExtendedPayloadSize attribute says 10" in reason


def test_payload_over_large_payload_max_bytes_is_refused_without_reading_s3(
    conn_factory: Callable[..., Connection],
    s3: Any,
    buckets: tuple[str, str],
    sqs_client: Any,
) -> None:
    payloads, _secrets = buckets
    s3.put_object(Bucket=payloads, Key="big", Body=b"y" * 2_000_000)
    conn = conn_factory(
        large_payload_bucket=payloads, large_payload_max_bytes=1_048_576, redrive_policy=REDRIVE
    )
    queue = direct_queue("capped")
    publish(conn, queue, ["warm up"])
    consume(conn, [queue], 1)
    url = url_of(conn, "capped")
    send_pointer(sqs_client, url, payloads, "big", 2_000_000)
    send_pointer(sqs_client, url, payloads, "big", "lots")
    publish(conn, queue, ["good"])

    assert [body for body, _ in consume(conn, [queue], 1)] == ["good"]

    dead = url_of(conn, "dead")
    assert wait_until(lambda: counts(sqs_client, dead)[0] == 2)
    reasons = sorted(
        m["MessageAttributes"][REASON]["StringValue"]
        for m in sqs_client.receive_message(
            QueueUrl=dead, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )["Messages"]
    )
    assert "over the 1048576 bytes a consumer reads from S3 (large_payload_max_bytes)" in (
        reasons[0] + reasons[1]
    )
    assert "ExtendedPayloadSize attribute is 'lots', not a size in bytes" in reasons[0] + reasons[1]
    assert s3_calls(conn) == (0, 0)
    assert s3.head_object(Bucket=payloads, Key="big")["ContentLength"] == 2_000_000


def test_publishing_a_payload_consumers_would_refuse_raises_and_stores_nothing(
    conn_factory: Callable[..., Connection], s3: Any, buckets: tuple[str, str]
) -> None:
    payloads, _secrets = buckets
    conn = conn_factory(large_payload_bucket=payloads, large_payload_max_bytes=1_500_000)
    with pytest.raises(MessageTooLarge, match="large_payload_max_bytes"):
        publish(conn, direct_queue("too-big"), ["z" * 1_600_000])
    assert "Contents" not in s3.list_objects_v2(Bucket=payloads)


# -- 4. resend targets: a parked copy goes home only within the connection's scope -----------


def test_parked_copies_are_sent_home_only_to_queues_of_the_connection_s_own_scope(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone who can send to a parking queue writes the home URL of what is in it."""
    victim = sqs_client.create_queue(QueueName=f"other-{prefix}victim")["QueueUrl"]
    with connect(endpoint, prefix) as conn:
        publish(conn, direct_queue("jobs"), ["warm up"])
        jobs = url_of(conn, "jobs")
        sqs_client.purge_queue(QueueUrl=jobs)
        parking = conn.transport.declare_temporary_queue(conn.transport.parking_queue_name)
        homes = {
            "outside the prefix": victim,
            "another endpoint": jobs.replace("127.0.0.1", "169.254.169.254"),
            "not a queue": f"{jobs}-gone",
            "in scope": jobs,
        }
        for body, home in homes.items():
            sqs_client.send_message(
                QueueUrl=parking.url,
                MessageBody=body,
                MessageAttributes={
                    "sqsbus.parked-from": {"DataType": "String", "StringValue": home}
                },
            )
        with caplog.at_level(logging.ERROR, logger="sqsbus"):
            conn.release()  # closing sends its parking queue's messages home

    assert counts(sqs_client, victim) == (0, 0)
    [home] = sqs_client.receive_message(QueueUrl=jobs, WaitTimeSeconds=1)["Messages"]
    assert home["Body"] == "in scope"
    assert caplog.text.count("outside this connection's scope") == 3
    assert "kept parking queue" in caplog.text  # with the three it would not send
    assert sum(counts(sqs_client, parking.url)) == 3


# -- 3. control-plane isolation: exchange topics and the queue name prefix -------------------


@pytest.fixture
def fresh_shared_topics_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget that this test process already warned about shared topics."""
    monkeypatch.setattr(exchanges, "_shared_topics_warned", False)


def declare_fanout(conn: Connection, name: str) -> str:
    exchange = Exchange(name, type="fanout")
    exchange(conn.default_channel).declare()
    return str(conn.transport.router.topic_arn(name))


def test_exchange_topics_without_any_prefix_are_shared_and_say_so_once(
    endpoint: LocalEndpoint,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    fresh_shared_topics_warning: None,
) -> None:
    with caplog.at_level(logging.WARNING, logger="sqsbus"), connect(endpoint, "") as conn:
        arn = declare_fanout(conn, f"{prefix}control")
        declare_fanout(conn, f"{prefix}events")
    assert arn.endswith(f":{prefix}control")
    [warning] = [r.getMessage() for r in caplog.records if "celery control" in r.getMessage()]
    assert f"uses the SNS topic {prefix}control" in warning
    assert "account 123456789012, region us-east-1" in warning
    assert "queue_name_prefix (e.g. 'myapp-') or topic_name_prefix" in warning


@pytest.mark.parametrize(
    ("options", "topic"),
    [
        ({"topic_name_prefix": "app-a-"}, "app-a-{name}"),
        ({"topic_name_prefix": ""}, "{name}"),  # shared on purpose: no warning
    ],
)
def test_topic_name_prefix_names_exchange_topics_and_silences_the_warning(
    endpoint: LocalEndpoint,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    fresh_shared_topics_warning: None,
    options: dict[str, str],
    topic: str,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="sqsbus"),
        connect(endpoint, "", **options) as conn,
    ):
        arn = declare_fanout(conn, f"{prefix}control")
    assert arn.endswith(":" + topic.format(name=f"{prefix}control"))
    assert "celery control" not in caplog.text
