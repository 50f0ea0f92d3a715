"""Each exchange type used as Kombu's documentation shows it, from a producer of its own.

The consumer declares its queues and bindings; a second connection (as a separate producer
process would) publishes with ``Producer.publish``: fanout with an empty routing key, direct
by key, topic with ``*`` and ``#`` patterns. A check added to the publish path that breaks the
canonical uses fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue
from kombu_helpers import connect, drain_for

from sqsbus.local import LocalEndpoint

#: Seconds to collect what arrives (several receives of the consumer's queues).
SETTLE_SECONDS = 3.0


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


def received(conn: Connection, queue: Queue) -> list[Any]:
    return sorted(drain_for(conn, [queue], SETTLE_SECONDS), key=repr)


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

    assert received(consumer, first) == [{"headline": "sqsbus"}]
    assert received(consumer, second) == [{"headline": "sqsbus"}]


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

    assert received(consumer, video) == [{"clip": 1}]
    assert received(consumer, images) == [{"picture": 1}]
    assert received(consumer, unkeyed) == [{"nothing": 1}]


def test_topic_patterns_with_star_and_hash(consumer: Connection, producer: Connection) -> None:
    events = Exchange("events", type="topic")
    orders = Queue("all-orders", events, routing_key="order.#")
    created = Queue("anything-created", events, routing_key="*.created")
    everything = Queue("everything", events, routing_key="#")
    declare(consumer, orders, created, everything)

    for key in ("order.created", "user.created", "order.paid.late", "user.deleted"):
        Producer(producer).publish({"key": key}, exchange=events, routing_key=key)

    assert received(consumer, orders) == [{"key": "order.created"}, {"key": "order.paid.late"}]
    assert received(consumer, created) == [{"key": "order.created"}, {"key": "user.created"}]
    assert len(received(consumer, everything)) == 4
