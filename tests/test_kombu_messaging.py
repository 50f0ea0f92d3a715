"""Publishing, consuming and settling messages — through Kombu's public API."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Message, Queue
from kombu.asynchronous import Hub
from kombu_helpers import (
    connect,
    consume,
    counting_sends,
    counts,
    direct_queue,
    drain_for,
    publish,
    url_of,
    wait_until,
)

import sqsbus
from sqsbus.aws import GLOBAL_STATS
from sqsbus.errors import PublishBatchError, UnsupportedExchangeType
from sqsbus.local import LocalEndpoint


def test_transport_describes_itself_truthfully(endpoint: LocalEndpoint, prefix: str) -> None:
    with connect(endpoint, prefix) as conn:
        implements = conn.transport.implements
        assert implements.asynchronous is True
        assert implements.exchange_type == frozenset({"direct", "fanout", "topic"})
        assert conn.transport.driver_name == "sqsbus"
        with pytest.raises(UnsupportedExchangeType, match="direct and fanout and topic"):
            Exchange("headers", type="headers")(conn.default_channel).declare()


def test_supports_fanout_false_keeps_to_sqs_like_kombu(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    queue = direct_queue("plain")
    with connect(endpoint, prefix, supports_fanout=False) as conn:
        assert conn.transport.implements.exchange_type == frozenset({"direct"})
        with pytest.raises(UnsupportedExchangeType, match="supports_fanout=True"):
            Exchange("bcast0", type="fanout")(conn.default_channel).declare()
        publish(conn, queue, ["sqs only"])
        [(body, _)] = consume(conn, [queue], 1)
        services = {name.split(".")[0] for name in conn.transport.stats.calls()}
    assert body == "sqs only"
    assert services == {"sqs"}


def test_fanout_reaches_queues_bound_by_other_connections(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    exchange = Exchange("bcast", type="fanout")
    first, second = Queue("node-a", exchange), Queue("node-b", exchange)
    with connect(endpoint, prefix) as conn_a, connect(endpoint, prefix) as conn_b:
        first(conn_a.default_channel).declare()
        second(conn_b.default_channel).declare()
        # A third connection knows the exchange only, not the bindings.
        with connect(endpoint, prefix) as producer_conn, producer_conn.Producer() as producer:
            producer.publish({"cmd": "ping"}, exchange=exchange, declare=[exchange])
            calls = producer_conn.transport.stats.calls()
        [(body_a, _)] = consume(conn_a, [first], 1)
        [(body_b, _)] = consume(conn_b, [second], 1)
    assert body_a == body_b == {"cmd": "ping"}
    assert calls.get("sns.Publish") == 1
    assert "sqs.SendMessage" not in calls


def test_direct_routing_reaches_queues_bound_by_other_connections(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    exchange = Exchange("replies", type="direct")
    mine, other = Queue("client-1", exchange, "key-1"), Queue("client-2", exchange, "key-2")
    with connect(endpoint, prefix) as consumer_conn:
        mine(consumer_conn.default_channel).declare()
        other(consumer_conn.default_channel).declare()
        # Another connection never saw these bindings: routing goes through AWS.
        with connect(endpoint, prefix) as producer_conn, producer_conn.Producer() as producer:
            producer.publish({"to": 1}, exchange=exchange, routing_key="key-1", declare=[exchange])
            producer.publish({"to": 2}, exchange=exchange, routing_key="key-2", declare=[exchange])
            producer.publish({"to": None}, exchange=exchange, routing_key="nobody")
        [(first, _)] = consume(consumer_conn, [mine], 1)
        [(second, _)] = consume(consumer_conn, [other], 1)
        assert (first, second) == ({"to": 1}, {"to": 2})
        # Nothing else arrived: the unroutable message was dropped, as in AMQP.
        assert drain_for(consumer_conn, [mine, other], 2) == []


def test_topic_patterns_route_across_connections(endpoint: LocalEndpoint, prefix: str) -> None:
    exchange = Exchange("events", type="topic")
    tasks = Queue("tasks-events", exchange, "task.*")
    everything = Queue("all-events", exchange, "#")
    exact = Queue("heartbeats", exchange, "worker.heartbeat")
    with connect(endpoint, prefix) as consumer_conn:
        for queue in (tasks, everything, exact):
            queue(consumer_conn.default_channel).declare()
        with connect(endpoint, prefix) as producer_conn, producer_conn.Producer() as producer:
            for key in ["task.sent", "task.succeeded.extra", "tasks.x", "worker.heartbeat"]:
                producer.publish({"key": key}, exchange=exchange, routing_key=key)
        got_tasks = consume(consumer_conn, [tasks], 1)
        got_all = consume(consumer_conn, [everything], 4)
        got_exact = consume(consumer_conn, [exact], 1)
        # Nothing else arrives: "tasks.x" and "task.succeeded.extra" do not match task.*.
        assert drain_for(consumer_conn, [tasks, exact], 2) == []
    assert [body["key"] for body, _ in got_tasks] == ["task.sent"]
    assert sorted(body["key"] for body, _ in got_all) == [
        "task.sent",
        "task.succeeded.extra",
        "tasks.x",
        "worker.heartbeat",
    ]
    assert [body["key"] for body, _ in got_exact] == ["worker.heartbeat"]


def test_publishing_to_an_exchange_nobody_listens_to_costs_no_publish(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    exchange = Exchange("heartbeats", type="topic")
    with connect(endpoint, prefix) as conn, conn.Producer() as producer:
        for _ in range(5):
            producer.publish({"beat": 1}, exchange=exchange, routing_key="worker.heartbeat")
        calls = conn.transport.stats.calls()
    assert "sns.Publish" not in calls
    assert calls["sns.ListSubscriptionsByTopic"] == 1  # then cached


def test_temporary_queues_are_deleted_with_their_connection(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    exchange = Exchange("bcast2", type="fanout")
    queue = Queue("ephemeral", exchange, auto_delete=True, expires=10)
    kept = Queue("durable", exchange)
    with connect(endpoint, prefix) as conn:
        with Consumer(conn, [queue, kept], callbacks=[lambda _b, _m: None]):
            urls = url_of(conn, "ephemeral"), url_of(conn, "durable")
        # Still there while the connection lives: reused by the next consumer.
        assert urls[0] in sqs_client.list_queues(QueueNamePrefix=prefix)["QueueUrls"]
    remaining = sqs_client.list_queues(QueueNamePrefix=prefix)["QueueUrls"]
    assert urls[0] not in remaining
    assert urls[1] in remaining


def test_a_temporary_queue_deleted_by_another_connection_closes_quietly(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Celery's rpc:// result backend declares its reply queue on two connections of one
    # client; the first to close deletes it, the second finds it gone: nothing to warn about.
    queue = Queue("replies", auto_delete=True, expires=10)
    with connect(endpoint, prefix) as first, connect(endpoint, prefix) as second:
        for conn in (first, second):
            with Consumer(conn, [queue], callbacks=[lambda _b, _m: None]):
                url = url_of(conn, "replies")
        first.release()
        assert url not in sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
        with caplog.at_level(logging.WARNING, logger="sqsbus"):
            second.release()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_url_forms_and_transport_path(endpoint: LocalEndpoint, prefix: str) -> None:
    queue = direct_queue("forms")
    # Explicit transport path + endpoint_url option, credentials from the environment.
    with Connection(
        transport="sqsbus.kombu:Transport",
        transport_options={"endpoint_url": endpoint.url, "queue_name_prefix": prefix},
    ) as conn:
        publish(conn, queue, ["via transport path"])
    with connect(endpoint, prefix) as conn:
        [(body, _)] = consume(conn, [queue], 1)
    assert body == "via transport path"


def test_publish_consume_many_and_ack_deletes(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("work")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, [{"n": i} for i in range(25)])
        received = consume(conn, [queue], 25, prefetch_count=10)
        url = url_of(conn, "work")
    assert sorted(body["n"] for body, _ in received) == list(range(25))
    assert counts(sqs_client, url) == (0, 0)


def test_many_queues_are_consumed_fairly(endpoint: LocalEndpoint, prefix: str) -> None:
    busy, quiet = direct_queue("busy"), direct_queue("quiet")
    with connect(endpoint, prefix) as conn:
        publish(conn, busy, [f"busy-{i}" for i in range(40)])
        publish(conn, quiet, [f"quiet-{i}" for i in range(3)])
        received = consume(conn, [busy, quiet], 43, prefetch_count=2)
    order = [body for body, _ in received]
    # The quiet queue is not starved behind the busy one.
    assert max(order.index(f"quiet-{i}") for i in range(3)) < 20, order


def test_basic_get_size_purge_delete(endpoint: LocalEndpoint, prefix: str, sqs_client: Any) -> None:
    queue = direct_queue("ops")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["a", "b", "c", "d"])
        bound = queue(conn.default_channel)
        assert bound.queue_declare(passive=True).message_count == 4
        message = bound.get()
        assert message is not None
        assert message.payload in {"a", "b", "c", "d"}
        message.ack()
        assert bound.purge() == 3
        assert wait_until(lambda: bound.queue_declare().message_count == 0)
        assert bound.get() is None
        url = url_of(conn, "ops")
        bound.delete()
    assert not any(u == url for u in sqs_client.list_queues().get("QueueUrls", []))


def test_basic_get_no_ack_deletes_on_receipt(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("getnoack")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["x"])
        message = queue(conn.default_channel).get(no_ack=True)
        assert message is not None and message.payload == "x"
        url = url_of(conn, "getnoack")
        assert wait_until(lambda: counts(sqs_client, url) == (0, 0))


def test_ack_after_the_queue_was_deleted_is_quiet(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The message went with its queue (a reply queue its owner deleted): not a failure.

    Deletes SQS refuses are reported with the message ids (tests/test_unit_acker.py).
    """
    queue = direct_queue("gone")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["x"])
        message = queue(conn.default_channel).get()
        assert message is not None
        sqs_client.delete_queue(QueueUrl=url_of(conn, "gone"))
        with caplog.at_level(logging.INFO, logger="sqsbus"):
            message.ack()
            assert conn.transport.acker.flush()
        assert conn.transport.acker.failed == 0
    assert "could not delete" not in caplog.text


def test_concurrent_publishers_share_batches(endpoint: LocalEndpoint, prefix: str) -> None:
    queue = direct_queue("shared")
    connections = [connect(endpoint, prefix) for _ in range(8)]
    try:
        for conn in connections:
            queue(conn.default_channel).declare()
        before = GLOBAL_STATS.calls().get("sqs.SendMessageBatch", 0)

        def produce(conn: Connection, worker: int) -> None:
            publish(conn, queue, [f"{worker}-{i}" for i in range(25)])

        threads = [
            threading.Thread(target=produce, args=(conn, n)) for n, conn in enumerate(connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        batches = GLOBAL_STATS.calls().get("sqs.SendMessageBatch", 0) - before
        received = consume(connections[0], [queue], 200, prefetch_count=50)
    finally:
        for conn in connections:
            conn.close()
    assert sorted(body for body, _ in received) == sorted(
        f"{n}-{i}" for n in range(8) for i in range(25)
    )
    # 200 publishes from 8 threads: far fewer calls than messages.
    assert batches < 100, batches


def test_publish_linger_batches_a_single_publisher(endpoint: LocalEndpoint, prefix: str) -> None:
    queue = direct_queue("linger")
    with connect(endpoint, prefix, publish_linger_ms=100) as conn:
        queue(conn.default_channel).declare()
        before = GLOBAL_STATS.calls().get("sqs.SendMessageBatch", 0)
        publish(conn, queue, [str(i) for i in range(30)])
    batches = GLOBAL_STATS.calls().get("sqs.SendMessageBatch", 0) - before
    assert batches <= 4, batches
    with connect(endpoint, prefix) as conn:
        received = consume(conn, [queue], 30)
    assert sorted(int(body) for body, _ in received) == list(range(30))


def test_batched_publishing_confirms_every_message_when_the_block_ends(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("batched")
    with connect(endpoint, prefix) as conn:
        queue(conn.default_channel).declare()
        with counting_sends() as sent, sqsbus.batched_publishing() as batch:
            publish(conn, queue, [str(i) for i in range(95)])
            assert len(batch) == 95
        # Every message is in the queue once the block has ended: nothing is left to flush.
        assert counts(sqs_client, url_of(conn, "batched")) == (95, 0)
        assert sent["sqs.SendMessage"] == 0 and sent["sqs.SendMessageBatch"] <= 12, sent
        received = consume(conn, [queue], 95)
    assert sorted(int(body) for body, _ in received) == list(range(95))


def test_batched_publishing_raises_at_the_end_for_what_sqs_refused(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("batched-gone")
    with connect(endpoint, prefix) as conn:
        queue(conn.default_channel).declare()
        sqs_client.delete_queue(QueueUrl=url_of(conn, "batched-gone"))
        with (
            pytest.raises(PublishBatchError) as raised,
            sqsbus.batched_publishing(),
            conn.Producer() as producer,
        ):
            for body in ("a", "b", "c"):
                producer.publish(body, exchange=queue.exchange, routing_key=queue.routing_key)
    text = str(raised.value)
    assert "of 3 messages published in batched_publishing(), 3 not accepted" in text
    assert "does not exist" in text
    assert len(raised.value.errors) == 3


def test_lingering_messages_are_flushed_at_interpreter_exit(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    script = f"""
import sqsbus
from kombu import Connection, Exchange, Queue
queue = Queue("atexit", Exchange("atexit"), routing_key="atexit")
conn = Connection({endpoint.broker_url()!r},
                  transport_options={{"queue_name_prefix": {prefix!r}, "publish_linger_ms": 5000}})
producer = conn.Producer()
for i in range(12):
    producer.publish(i, exchange=queue.exchange, routing_key="atexit", declare=[queue])
# no close: the interpreter exits with messages still lingering
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, env=os.environ.copy())
    with connect(endpoint, prefix) as conn:
        received = consume(conn, [direct_queue("atexit")], 12)
    assert sorted(body for body, _ in received) == list(range(12))


@pytest.mark.parametrize("coalesce_ms", [0, 300])
def test_receive_coalescing_trades_latency_for_fewer_receives(
    endpoint: LocalEndpoint, prefix: str, coalesce_ms: int
) -> None:
    queue = direct_queue(f"trickle{coalesce_ms}")
    with connect(endpoint, prefix, receive_coalesce_ms=coalesce_ms) as consumer_conn:
        queue(consumer_conn.default_channel).declare()
        url = url_of(consumer_conn, queue.name)

        def trickle() -> None:  # a producer slower than the consumer
            with connect(endpoint, prefix) as producer_conn:
                for i in range(20):
                    publish(producer_conn, queue, [i])
                    time.sleep(0.03)

        producer = threading.Thread(target=trickle)
        producer.start()
        received = consume(consumer_conn, [queue], 20, prefetch_count=20)
        producer.join()
        receives = consumer_conn.transport.stats.per_queue().get(("sqs.ReceiveMessage", url), 0)
    assert sorted(body for body, _ in received) == list(range(20))
    if coalesce_ms:
        assert 1 <= receives <= 8, receives
    else:
        assert receives >= 10, receives


def test_acks_are_sent_in_batches(endpoint: LocalEndpoint, prefix: str, sqs_client: Any) -> None:
    queue = direct_queue("batched")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, [str(i) for i in range(30)])
        consume(conn, [queue], 30, prefetch_count=30)
        assert conn.transport.acker.flush()
        calls = conn.transport.stats.calls()
        url = url_of(conn, "batched")
    assert counts(sqs_client, url) == (0, 0)
    assert calls["sqs.DeleteMessageBatch"] <= 10, calls


def test_reject_with_requeue_is_visible_again_at_once(endpoint: LocalEndpoint, prefix: str) -> None:
    queue = direct_queue("requeue")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["again"])
        bound = queue(conn.default_channel)
        first = bound.get()
        assert first is not None and not first.delivery_info["redelivered"]
        first.reject(requeue=True)
        started = time.monotonic()
        second = None
        while second is None and time.monotonic() - started < 5:
            second = bound.get()
        assert second is not None and second.payload == "again"
        assert second.delivery_info["redelivered"] is True
        second.ack()


def test_reject_without_requeue_deletes(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("discard")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["bad"])
        message = queue(conn.default_channel).get()
        assert message is not None
        message.reject()
        url = url_of(conn, "discard")
        assert wait_until(lambda: counts(sqs_client, url) == (0, 0))


def test_reject_of_backoff_task_follows_backoff_policy(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    url = sqs_client.create_queue(QueueName=f"{prefix}retry")["QueueUrl"]
    predefined = {
        f"{prefix}retry": {
            "url": url,
            "backoff_policy": {1: 2, 2: 30},
            "backoff_tasks": ["app.tasks.flaky"],
        }
    }
    queue = direct_queue("retry")
    with connect(endpoint, prefix, predefined_queues=predefined) as conn:
        publish(conn, queue, ["flaky"], headers={"task": "app.tasks.flaky"})
        bound = queue(conn.default_channel)
        message = bound.get()
        assert message is not None
        message.reject()
        # Hidden for backoff_policy[1] = 2 seconds, then delivered again.
        assert bound.get() is None
        assert counts(sqs_client, url) == (0, 1)
        again = None
        deadline = time.monotonic() + 10
        while again is None and time.monotonic() < deadline:
            again = bound.get()
        assert again is not None
        assert again.delivery_info["sqs_message"]["Attributes"]["ApproximateReceiveCount"] == "2"
        again.ack()


def test_no_ack_consumer_deletes_on_receipt_without_event_loop(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("noack")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["a", "b", "c"])
        received = consume(conn, [queue], 3, no_ack=True)
        assert sorted(body for body, _ in received) == ["a", "b", "c"]
        url = url_of(conn, "noack")
        assert wait_until(lambda: counts(sqs_client, url) == (0, 0))


def test_no_ack_consumer_with_event_loop(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("noackhub")
    received: list[Any] = []
    hub = Hub()
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["x", "y"])
        conn.transport.register_with_event_loop(conn.connection, hub)
        with Consumer(
            conn, [queue], callbacks=[lambda body, _m: received.append(body)], no_ack=True
        ):
            loop = hub.create_loop()
            deadline = time.monotonic() + 15
            while len(received) < 2 and time.monotonic() < deadline:
                next(loop)
        assert sorted(received) == ["x", "y"]
        url = url_of(conn, "noackhub")
        assert wait_until(lambda: counts(sqs_client, url) == (0, 0))
    hub.close()


def test_message_arriving_during_close_is_released_not_hidden(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("closing")
    conn = connect(endpoint, prefix, wait_time_seconds=3)
    queue(conn.default_channel).declare()
    url = url_of(conn, "closing")
    consumer = Consumer(conn, [queue], callbacks=[lambda _b, _m: None])
    consumer.consume()
    time.sleep(0.5)  # the receiver is now in a long poll
    sender = threading.Timer(1.0, lambda: sqs_client.send_message(QueueUrl=url, MessageBody="x"))
    sender.start()
    conn.close()  # the poll in flight returns the message after close began
    # close() waited for the poll, so a process exiting now would lose nothing...
    assert not [t for t in threading.enumerate() if t.name == f"sqsbus-receiver-{prefix}closing"]
    sender.join()
    # ...and the message it returned was released, not left invisible.
    assert wait_until(lambda: counts(sqs_client, url) == (1, 0), timeout=3)


def test_prefetch_limit_is_respected(endpoint: LocalEndpoint, prefix: str) -> None:
    queue = direct_queue("prefetch")
    held: list[Message] = []
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, [str(i) for i in range(8)])
        with Consumer(conn, [queue], callbacks=[lambda _b, m: held.append(m)], prefetch_count=3):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.3)
            assert len(held) == 3
            channel = conn.default_channel
            assert len(channel.inbox) <= 3
            held[0].ack()
            conn.drain_events(timeout=5)
            assert len(held) == 4
            for message in held:
                if not message.acknowledged:
                    message.ack()


@pytest.mark.parametrize("encoded", [True, False])
def test_base64_encoding_option(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, encoded: bool
) -> None:
    queue = direct_queue("b64")
    with connect(endpoint, prefix, sqs_base64_encoding=encoded) as conn:
        publish(conn, queue, [{"hello": "wörld"}])
        url = url_of(conn, "b64")
        raw = sqs_client.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=0)
        body = raw["Messages"][0]["Body"]
        text = base64.b64decode(body).decode() if encoded else body
        assert json.loads(text)["properties"]["delivery_info"]["routing_key"] == "b64"
        [(received, _)] = consume(conn, [queue], 1)
    assert received == {"hello": "wörld"}


def test_messages_from_kombus_own_sqs_transport_are_consumed(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    pytest.importorskip("kombu.transport.SQS")
    queue = Queue("interop", Exchange("interop", type="direct"), routing_key="interop")
    kombu_conn = Connection(
        endpoint.broker_url().replace("sqsbus://", "sqs://"),
        transport_options={"queue_name_prefix": prefix, "is_secure": False},
    )
    with kombu_conn:
        publish(kombu_conn, queue, [{"from": "kombu.transport.SQS"}])
    with connect(endpoint, prefix) as conn:
        [(body, _)] = consume(conn, [queue], 1)
    assert body == {"from": "kombu.transport.SQS"}
