"""Metrics through the OpenTelemetry API (docs/observability.md), read back with the SDK.

The global ``MeterProvider`` can be set once per process: this module sets an SDK provider
with an in-memory reader once, and each test reads only the points of its own queues (their
names carry the test's ``prefix``). Messages go through a real Kombu connection to the
embedded endpoint; every count is compared exactly with what was done and with sqsbus's own
request counts. Runs without OpenTelemetry, or with the API and no SDK, are separate
processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue
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

from sqsbus.aws import AWS
from sqsbus.config import parse_options
from sqsbus.engine.delays import ETA_ATTRIBUTE
from sqsbus.local import LocalEndpoint
from sqsbus.testing.proxy import FaultProxy, Faults

metrics_api = pytest.importorskip("opentelemetry.metrics")
sdk_metrics = pytest.importorskip("opentelemetry.sdk.metrics")
sdk_export = pytest.importorskip("opentelemetry.sdk.metrics.export")

ROOT = Path(__file__).resolve().parent.parent
DESTINATION = "messaging.destination.name"
#: Calls that name a queue by its name rather than its URL.
BY_NAME = ("sqs.GetQueueUrl", "sqs.CreateQueue")


@pytest.fixture(scope="module")
def reader() -> Iterator[Any]:
    """The in-memory reader of the SDK provider this module sets as the global one."""
    in_memory = sdk_export.InMemoryMetricReader()
    provider = sdk_metrics.MeterProvider(metric_readers=[in_memory])
    metrics_api.set_meter_provider(provider)
    if metrics_api.get_meter_provider() is not provider:
        pytest.skip("another global MeterProvider was set in this process before")
    yield in_memory
    provider.shutdown()


class Points:
    """One collection of the reader: the data points of every instrument."""

    def __init__(self, reader: Any) -> None:
        self.points: dict[str, list[Any]] = {}
        data = reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    self.points.setdefault(metric.name, []).extend(metric.data.data_points)

    def _matching(self, name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
        for point in self.points.get(name, []):
            if all(point.attributes.get(key) == value for key, value in attributes.items()):
                yield point

    def value(self, name: str, **attributes: Any) -> int:
        """The sum of a counter's (or gauge's) points with these attributes (``queue`` is
        ``messaging.destination.name``; other keys with ``_`` for ``.``)."""
        return sum(int(p.value) for p in self._matching(name, _keys(attributes)))

    def histogram(self, name: str, **attributes: Any) -> tuple[int, float]:
        """(count, sum) of a histogram's points with these attributes."""
        points = list(self._matching(name, _keys(attributes)))
        return sum(p.count for p in points), sum(p.sum for p in points)

    def by(self, name: str, key: str, **attributes: Any) -> dict[str, int]:
        """A counter's values by attribute ``key`` (dotted), over points with ``attributes``."""
        found: dict[str, int] = {}
        for point in self._matching(name, _keys(attributes)):
            label = str(point.attributes.get(key))
            found[label] = found.get(label, 0) + int(point.value)
        return found


def _keys(attributes: Mapping[str, Any]) -> dict[str, Any]:
    names = {"queue": DESTINATION, "method": "rpc.method", "outcome": "sqsbus.outcome"}
    return {names.get(key, key.replace("_", ".")): value for key, value in attributes.items()}


def settle(conn: Connection) -> None:
    """Send every queued delete now."""
    assert conn.transport.acker.flush()


def test_publish_and_consume_counts_equal_what_was_done(
    endpoint: LocalEndpoint, prefix: str, reader: Any, sqs_client: Any
) -> None:
    """23 messages published and consumed: each counter says 23, batch fill adds up to it,
    and the requests per operation are exactly those the transport counted."""
    queue = direct_queue("work")
    name = f"{prefix}work"
    total = 23
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, [{"n": n} for n in range(total)])
        consume(conn, [queue], total, prefetch_count=10)
        settle(conn)
        assert wait_until(lambda: counts(sqs_client, url_of(conn, "work")) == (0, 0))
        url = url_of(conn, "work")
        stats = conn.transport.aws.stats
    # Closed: every long poll has ended, so every call is counted on both sides.
    calls = {op: n for (op, q), n in stats.per_queue().items() if q == url}
    seen = Points(reader)

    assert seen.value("sqsbus.messages.published", queue=name) == total
    assert seen.histogram("sqsbus.publish.duration", queue=name)[0] == total
    assert seen.value("sqsbus.messages.received", queue=name) == total
    assert seen.histogram("sqsbus.delivery.lag", queue=name)[0] == total
    assert seen.value("sqsbus.messages.acked", queue=name) == total
    for method in ("SendMessageBatch", "ReceiveMessage", "DeleteMessageBatch"):
        assert seen.value("sqsbus.aws.batch.entries", queue=name, method=method) == total
    # Calls naming the queue by URL, as the transport counts them per queue, and those
    # naming it by name (looking it up, creating it): this connection made no others.
    by_name = {op: n for op, n in stats.calls().items() if op in BY_NAME}
    expected = {op.split(".", 1)[1]: n for op, n in (calls | by_name).items()}
    requests = seen.by("sqsbus.aws.requests", "rpc.method", queue=name)
    assert requests == expected
    outcomes = seen.by("sqsbus.aws.requests", "sqsbus.outcome", queue=name)
    # The one failure: looking the queue up before it was created.
    assert outcomes == {"ok": sum(requests.values()) - 1, "failed": 1}
    durations = seen.histogram("sqsbus.aws.request.duration", queue=name)
    assert durations[0] == sum(requests.values()) and durations[1] > 0
    # Batch fill, as docs/observability.md computes it: entries over calls (ok + failed).
    fill = seen.value("sqsbus.aws.batch.entries", queue=name, method="DeleteMessageBatch") / (
        seen.value("sqsbus.aws.requests", queue=name, method="DeleteMessageBatch")
    )
    assert fill == total / calls["sqs.DeleteMessageBatch"]


def test_publishes_to_an_exchange_are_counted_on_its_topic(
    endpoint: LocalEndpoint, prefix: str, reader: Any
) -> None:
    exchange = Exchange("events", type="fanout")
    queue = Queue("listener", exchange)
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["a", "b", "c"])
        consume(conn, [queue], 3)
    seen = Points(reader)
    topics = {
        topic: count
        for topic, count in seen.by(
            "sqsbus.messages.published", DESTINATION, messaging_system="aws_sns"
        ).items()
        if topic.startswith(prefix)
    }
    assert list(topics.values()) == [3] and "events" in next(iter(topics))
    assert seen.value("sqsbus.messages.received", queue=f"{prefix}listener") == 3


def test_requeue_and_dead_letter_are_counted_with_their_reason(
    endpoint: LocalEndpoint, prefix: str, reader: Any
) -> None:
    queue = direct_queue("jobs")
    redrive = {"dead_letter_queue": "jobs-dead", "max_receive_count": 5}
    with connect(endpoint, prefix, redrive_policy=redrive) as conn:
        publish(conn, queue, ["again", "poison"])
        bound = queue(conn.default_channel)
        verdicts = []
        while len(verdicts) < 3:  # "again" is requeued once, then acked; "poison" rejected
            message = get_within(bound, 5)
            assert message is not None, verdicts
            if message.payload == "poison":
                message.reject(requeue=False)
                verdicts.append("rejected")
            elif "requeued" in verdicts:
                message.ack()
                verdicts.append("acked")
            else:
                message.requeue()
                verdicts.append("requeued")
        settle(conn)
    seen = Points(reader)
    name = f"{prefix}jobs"
    assert seen.value("sqsbus.messages.requeued", queue=name) == 1
    assert seen.by("sqsbus.messages.dead_lettered", "sqsbus.reason", queue=name) == {"rejected": 1}
    assert seen.value("sqsbus.messages.acked", queue=name) == 1
    # The dead-letter copy is not a published message of the application.
    assert seen.value("sqsbus.messages.published", queue=f"{prefix}jobs-dead") == 0
    dead = f"{prefix}jobs-dead"
    assert seen.value("sqsbus.aws.batch.entries", queue=dead, method="SendMessageBatch") == 1


def test_a_delay_hop_is_counted_and_not_as_a_publish(
    endpoint: LocalEndpoint, prefix: str, reader: Any, sqs_client: Any
) -> None:
    queue = direct_queue("later")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["warm up"])
        bound = queue(conn.default_channel)
        warm = get_within(bound, 5)
        assert warm is not None
        warm.ack()
        # Due in an hour but visible now: it surfaces early and hops with a 15-minute delay.
        sqs_client.send_message(
            QueueUrl=url_of(conn, "later"),
            MessageBody=json.dumps({"body": "later", "headers": {}, "properties": {}}),
            MessageAttributes={
                ETA_ATTRIBUTE: {"DataType": "Number", "StringValue": str(time.time() + 3600)}
            },
        )
        assert get_within(bound, 1.5) is None
        settle(conn)
    seen = Points(reader)
    name = f"{prefix}later"
    assert seen.value("sqsbus.messages.delay_hops", queue=name) == 1
    assert seen.value("sqsbus.messages.received", queue=name) == 2
    assert seen.value("sqsbus.messages.published", queue=name) == 1  # the warm-up only
    assert seen.value("sqsbus.aws.batch.entries", queue=name, method="SendMessageBatch") == 2


def test_expired_messages_are_counted(endpoint: LocalEndpoint, prefix: str, reader: Any) -> None:
    queue = direct_queue("short")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["stale"], expiration=0.2)
        publish(conn, queue, ["fresh"])
        time.sleep(0.5)
        [(body, _)] = consume(conn, [queue], 1)
        settle(conn)
    assert body == "fresh"
    seen = Points(reader)
    assert seen.value("sqsbus.messages.expired", queue=f"{prefix}short") == 1
    assert seen.value("sqsbus.messages.acked", queue=f"{prefix}short") == 1


def test_large_payload_bytes_stored_fetched_and_deleted(
    endpoint: LocalEndpoint, prefix: str, reader: Any
) -> None:
    import boto3

    bucket = f"{prefix}payloads"
    s3 = boto3.client("s3", endpoint_url=endpoint.url, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    queue = direct_queue("big")
    with connect(
        endpoint, prefix, large_payload_bucket=bucket, large_payload_threshold=1000
    ) as conn:
        publish(conn, queue, ["x" * 3000])
        [stored] = s3.list_objects_v2(Bucket=bucket)["Contents"]
        consume(conn, [queue], 1)
        settle(conn)
        assert wait_until(lambda: not s3.list_objects_v2(Bucket=bucket).get("Contents"))
    size = int(stored["Size"])
    assert size > 3000
    seen = Points(reader)
    for name in ("stored", "fetched", "deleted"):
        assert seen.value(f"sqsbus.payloads.{name}", aws_s3_bucket=bucket) == size, name


def test_prefetch_depth_is_the_buffered_messages(
    endpoint: LocalEndpoint, prefix: str, reader: Any
) -> None:
    queue = direct_queue("buffered")
    name = f"{prefix}buffered"
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, list(range(12)))
        consumer = conn.Consumer([queue], callbacks=[], prefetch_count=4)
        consumer.consume()  # receivers fill the buffer; nothing is delivered without drain
        try:
            assert wait_until(
                lambda: Points(reader).value("sqsbus.prefetch.depth", queue=name) == 4
            )
        finally:
            consumer.cancel()
        assert Points(reader).value("sqsbus.prefetch.depth", queue=name) == 0


def test_lease_extensions_are_counted(endpoint: LocalEndpoint, prefix: str, reader: Any) -> None:
    queue = direct_queue("slow")
    with connect(endpoint, prefix, lease_seconds=2) as conn:
        publish(conn, queue, ["long task"])
        message = get_within(queue(conn.default_channel), 5)
        assert message is not None
        time.sleep(3.5)  # renewed once half a lease is used: at 1 s, 2 s, 3 s
        message.ack()
        settle(conn)
        extended = conn.transport.leases.extended
    assert extended >= 2
    seen = Points(reader)
    assert seen.value("sqsbus.leases.extended", queue=f"{prefix}slow") == extended
    assert seen.value("sqsbus.leases.lost", queue=f"{prefix}slow") == 0


def test_request_outcomes_throttled_retried_failed_ok(
    endpoint: LocalEndpoint, prefix: str, reader: Any, sqs_client: Any
) -> None:
    """Every HTTP attempt is counted once, by how it ended; the sum is what the proxy saw."""
    name = f"{prefix}outcomes"
    sqs_client.create_queue(QueueName=name)
    with FaultProxy(endpoint.url) as proxy:
        aws = AWS(parse_options({"endpoint_url": proxy.url, "region": "us-east-1"}))
        client = aws.client("sqs")
        url = f"{proxy.url}/123456789012/{name}"

        def attempt() -> None:
            try:
                client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
            except Exception as exc:  # the faults make it fail; what counts is the metrics
                assert "Throttl" in str(exc) or "Internal" in str(exc) or "Unavailable" in str(exc)

        only = frozenset({"GetQueueAttributes"})
        proxy.faults = Faults(throttle=1.0, operations=only)
        attempt()
        throttled = proxy.request_counts()["sqs.GetQueueAttributes"]
        proxy.faults = Faults(error=1.0, operations=only)
        attempt()
        errors = proxy.request_counts()["sqs.GetQueueAttributes"] - throttled
        proxy.clear_faults()
        attempt()
        total = proxy.request_counts()["sqs.GetQueueAttributes"]
    assert throttled > 1 and errors > 1 and total == throttled + errors + 1
    seen = Points(reader)
    outcomes = seen.by("sqsbus.aws.requests", "sqsbus.outcome", queue=name)
    assert outcomes == {
        "throttled": throttled - 1,
        "retried": errors - 1,
        "failed": 2,
        "ok": 1,
    }
    assert sum(outcomes.values()) == aws.stats.http_requests()["sqs.GetQueueAttributes"]
    assert seen.histogram("sqsbus.aws.request.duration", queue=name)[0] == total


_BLOCK_OPENTELEMETRY = """
import sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocker())
"""

_PUBLISH_AND_CONSUME = """
import json, sys
from kombu import Connection, Consumer, Queue
import sqsbus
from sqsbus import telemetry

def run(count):
    options = {"queue_name_prefix": PREFIX, "wait_time_seconds": 1, "polling_interval": 0}
    got = []
    with Connection(BROKER, transport_options=options) as conn:
        queue = Queue("q", routing_key="q")
        producer = conn.Producer()
        for n in range(count):
            producer.publish(n, routing_key="q", declare=[queue])
        with Consumer(conn, [queue], callbacks=[lambda b, m: (got.append(b), m.ack())]):
            while len(got) < count:
                conn.drain_events(timeout=10)
        conn.transport.acker.flush()
    return len(got)
"""


def _child(endpoint: LocalEndpoint, prefix: str, code: str) -> dict[str, Any]:
    script = textwrap.dedent(code).replace("PREFIX", repr(prefix))
    script = script.replace("BROKER", repr(endpoint.broker_url()))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_without_opentelemetry_sqsbus_works_and_records_nothing(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    result = _child(
        endpoint,
        prefix,
        _BLOCK_OPENTELEMETRY
        + _PUBLISH_AND_CONSUME
        + """
got = run(5)
print(json.dumps({
    "got": got,
    "active": telemetry.active(),
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"),
    "stand_ins": type(telemetry.instruments().acked).__name__,
}))
""",
    )
    assert result == {"got": 5, "active": False, "loaded": [], "stand_ins": "_Off"}


def test_a_forked_child_counts_from_zero(endpoint: LocalEndpoint, prefix: str) -> None:
    """Celery's prefork children each report their own counts, not their parent's."""
    result = _child(
        endpoint,
        prefix,
        _PUBLISH_AND_CONSUME
        + """
import os
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

def acked():
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return sum(
        point.value
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "sqsbus.messages.acked"
        for point in metric.data.data_points
    )

parent_got = run(2)
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, json.dumps({"got": run(1), "acked": acked()}).encode())
    os._exit(0)
os.waitpid(pid, 0)
child = json.loads(os.read(read, 1000))
print(json.dumps({"parent": {"got": parent_got, "acked": acked()}, "child": child}))
""",
    )
    assert result == {"parent": {"got": 2, "acked": 2}, "child": {"got": 1, "acked": 1}}


def test_a_provider_set_after_sqsbus_started_gets_what_follows(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    """A provider set after sqsbus started (as applications often do, after their broker
    connection) gets the counts since the process started, and every duration from then on."""
    result = _child(
        endpoint,
        prefix,
        _PUBLISH_AND_CONSUME
        + """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

before = run(2)
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
after = run(3)
values = {}
for resource in reader.get_metrics_data().resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            points = metric.data.data_points
            if metric.name in ("sqsbus.messages.published", "sqsbus.messages.acked"):
                values[metric.name] = sum(p.value for p in points)
            if metric.name in ("sqsbus.publish.duration", "sqsbus.delivery.lag"):
                values[metric.name] = sum(p.count for p in points)
print(json.dumps({"active": telemetry.active(), "got": before + after, "values": values}))
""",
    )
    assert result == {
        "active": True,
        "got": 5,
        "values": {
            "sqsbus.messages.published": 5,
            "sqsbus.messages.acked": 5,
            "sqsbus.publish.duration": 3,
            "sqsbus.delivery.lag": 3,
        },
    }
