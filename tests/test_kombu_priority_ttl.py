"""Priority queues (x-max-priority) and TTLs (expiration, x-message-ttl) through Kombu."""

from __future__ import annotations

import time
from typing import Any

from kombu import Exchange, Queue
from kombu_helpers import connect, consume, counts, drain_for, publish, wait_until

from sqsbus.local import LocalEndpoint


def priority_queue(name: str, **kwargs: Any) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name, max_priority=9, **kwargs)


def sqs_names(sqs_client: Any, prefix: str) -> list[str]:
    urls = sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    return sorted(url.rsplit("/", 1)[-1] for url in urls)


def test_priority_queue_is_one_sqs_queue_per_band(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with connect(endpoint, prefix) as conn:
        priority_queue("jobs")(conn.default_channel).declare()
    assert sqs_names(sqs_client, prefix) == [
        f"{prefix}jobs",
        f"{prefix}jobs-p3",
        f"{prefix}jobs-p6",
        f"{prefix}jobs-p9",
    ]


def test_urgent_message_overtakes_a_backlog(endpoint: LocalEndpoint, prefix: str) -> None:
    queue = priority_queue("backlog")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, [f"routine {i}" for i in range(20)], priority=0)
        publish(conn, queue, ["urgent"], priority=9)
        bodies = [body for body, _ in consume(conn, [queue], 21, prefetch_count=1)]
    assert sorted(bodies) == sorted([f"routine {i}" for i in range(20)] + ["urgent"])
    assert bodies.index("urgent") <= 1, bodies


def test_priorities_are_served_highest_band_first(endpoint: LocalEndpoint, prefix: str) -> None:
    queue = priority_queue("bands")
    with connect(endpoint, prefix) as conn:
        for priority in (0, 4, 7, 9, 2):
            publish(conn, queue, [f"p{priority}"], priority=priority)
        bound = queue(conn.default_channel)
        order = []
        for _ in range(5):
            message = None
            deadline = time.monotonic() + 5
            while message is None and time.monotonic() < deadline:
                message = bound.get()
            assert message is not None
            order.append(message.payload)
            message.ack()
    # Bands 9, 6, 3 and 0: p9, then p7, then p4, then p0/p2 in arrival order.
    assert order[:3] == ["p9", "p7", "p4"]
    assert sorted(order[3:]) == ["p0", "p2"]


def test_size_and_purge_cover_every_band(endpoint: LocalEndpoint, prefix: str) -> None:
    queue = priority_queue("sized")
    with connect(endpoint, prefix, visibility_timeout=0) as conn:
        publish(conn, queue, ["low"], priority=0)
        publish(conn, queue, ["high"], priority=9)
        bound = queue(conn.default_channel)
        assert wait_until(lambda: bound.queue_declare(passive=True).message_count == 2)
        assert bound.purge() == 2
        assert wait_until(lambda: bound.queue_declare(passive=True).message_count == 0)


def test_expired_message_is_not_delivered(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = Queue("expiring", Exchange("expiring"), routing_key="expiring")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["stale"], expiration=1)
        publish(conn, queue, ["fresh"], expiration=60)
        time.sleep(1.5)
        assert drain_for(conn, [queue], 3) == ["fresh"]
        url = conn.default_channel.directory.get("expiring").url
        assert wait_until(lambda: counts(sqs_client, url) == (0, 0))


def test_queue_message_ttl_dead_letters_expired_messages(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = Queue("short-lived", Exchange("short-lived"), routing_key="short-lived", message_ttl=1)
    redrive = {"dead_letter_queue": "dead", "max_receive_count": 5}
    with connect(endpoint, prefix, redrive_policy=redrive) as conn:
        publish(conn, queue, ["too late"])
        time.sleep(1.5)
        publish(conn, queue, ["in time"])
        assert drain_for(conn, [queue], 3) == ["in time"]
        dead_url = conn.default_channel.directory.get("dead").url
        answer = sqs_client.receive_message(
            QueueUrl=dead_url, WaitTimeSeconds=2, MessageAttributeNames=["All"]
        )
    [letter] = answer["Messages"]
    reason = letter["MessageAttributes"]["sqsbus.dead-letter-reason"]["StringValue"]
    assert reason == "expired (TTL 1000 ms)"
