"""Each exchange type used as Kombu's documentation shows it, from a producer of its own.

The consumer declares its queues and bindings; a second connection (as a separate producer
process would) publishes with ``Producer.publish``: fanout with an empty routing key, direct
by key, topic with ``*`` and ``#`` patterns. A check added to the publish path that breaks the
canonical uses fails here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu_helpers import connect

from sqsbus.local import LocalEndpoint

#: Seconds to collect what arrives (several receives of the consumer's queues).
SETTLE_SECONDS = 2.5


@pytest.fixture
def consumer(endpoint: LocalEndpoint, prefix: str) -> Iterator[Connection]:
    with connect(endpoint, prefix) as conn:
        yield conn


@pytest.fixture
def producer(endpoint: LocalEndpoint, prefix: str) -> Iterator[Connection]:
    with connect(endpoint, prefix) as conn:
        yield conn


def declare(conn: Connection, *queues: Queue) -> None:
    for queue in queues:
        queue(conn.default_channel).declare()


def received(conn: Connection, *queues: Queue) -> dict[str, list[Any]]:
    """What arrives on each of ``queues`` within :data:`SETTLE_SECONDS`, by queue name."""
    names = {conn.transport.directory.get(q.name).url: q.name for q in queues}
    bodies: dict[str, list[Any]] = {q.name: [] for q in queues}

    def on_message(body: Any, message: Message) -> None:
        bodies[names[message.delivery_info["sqs_queue"]]].append(body)
        message.ack()

    with Consumer(conn, list(queues), callbacks=[on_message]):
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.5)
    return {name: sorted(found, key=repr) for name, found in bodies.items()}


@pytest.mark.parametrize("exchange_given_as", ["object", "name"])
def test_fanout_with_an_empty_routing_key_reaches_every_bound_queue(
    consumer: Connection, producer: Connection, exchange_given_as: str
) -> None:
    news = Exchange("news", type="fanout")
    first, second = Queue("reader-1", news), Queue("reader-2", news)
    declare(consumer, first, second)

    Producer(producer).publish(
        {"headline": "sqsbus"},
        exchange=news if exchange_given_as == "object" else "news",
        routing_key="",
    )

    assert received(consumer, first, second) == {
        "reader-1": [{"headline": "sqsbus"}],
        "reader-2": [{"headline": "sqsbus"}],
    }


def test_direct_routes_by_key_and_an_empty_key_only_to_its_own_binding(
    consumer: Connection, producer: Connection
) -> None:
    media = Exchange("media", type="direct")
    video = Queue("video", media, routing_key="video")
    images = Queue("images", media, routing_key="images")
    unkeyed = Queue("unkeyed", media, routing_key="")
    declare(consumer, video, images, unkeyed)

    publish = Producer(producer).publish
    publish({"clip": 1}, exchange=media, routing_key="video", declare=[video])
    publish({"picture": 1}, exchange=media, routing_key="images")
    publish({"nothing": 1}, exchange=media, routing_key="")

    assert received(consumer, video, images, unkeyed) == {
        "video": [{"clip": 1}],
        "images": [{"picture": 1}],
        "unkeyed": [{"nothing": 1}],
    }


def test_topic_patterns_with_star_and_hash(consumer: Connection, producer: Connection) -> None:
    events = Exchange("events", type="topic")
    orders = Queue("all-orders", events, routing_key="order.#")
    created = Queue("anything-created", events, routing_key="*.created")
    everything = Queue("everything", events, routing_key="#")
    declare(consumer, orders, created, everything)

    for key in ("order.created", "user.created", "order.paid.late", "user.deleted"):
        Producer(producer).publish({"key": key}, exchange=events, routing_key=key)

    found = received(consumer, orders, created, everything)
    assert found["all-orders"] == [{"key": "order.created"}, {"key": "order.paid.late"}]
    assert found["anything-created"] == [{"key": "order.created"}, {"key": "user.created"}]
    assert len(found["everything"]) == 4
