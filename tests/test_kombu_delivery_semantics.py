"""Kombu's delivery semantics that Redis and RabbitMQ users rely on.

* A requeued message is handed out again at once, and only once: by the next ``get`` or the
  next delivery of the same consumer.
* One ``drain_events`` delivers every message already buffered for the consumer, up to its
  prefetch (Kombu's SQS transport's bulk get), highest priority first.
"""

from __future__ import annotations

import contextlib
import time
from queue import Empty
from typing import Any

import pytest
from kombu import Consumer, Message
from kombu_helpers import connect, direct_queue, publish, wait_until

from sqsbus.local import LocalEndpoint


def test_requeue_then_get_nowait_returns_the_same_message(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    with connect(endpoint, prefix) as conn, connect(endpoint, prefix) as other:
        jobs = conn.SimpleQueue("again")
        jobs.put("only one")
        first = jobs.get(timeout=10)

        first.requeue()
        again = jobs.get_nowait()

        assert again.payload == "only one"
        assert again.delivery_info["redelivered"] is True
        with pytest.raises(Empty):
            other.SimpleQueue("again").get_nowait()  # not also given to another consumer
        again.ack()


def test_requeued_message_is_redelivered_to_its_consumer_at_once(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    queue = direct_queue("bounce")
    seen: list[tuple[str, bool]] = []

    def on_message(body: Any, message: Message) -> None:
        seen.append((body, message.delivery_info["redelivered"]))
        if len(seen) == 1:
            message.requeue()
        else:
            message.ack()

    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["twice"])
        with Consumer(conn, [queue], callbacks=[on_message]):
            deadline = time.monotonic() + 10
            while len(seen) < 2 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.5)

    assert seen == [("twice", False), ("twice", True)]


def test_one_drain_events_delivers_every_buffered_message_highest_priority_first(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    queue = direct_queue("bulk", max_priority=9)
    delivered: list[Any] = []

    def on_message(body: Any, message: Message) -> None:
        delivered.append(body)
        message.ack()

    with connect(endpoint, prefix) as conn:
        for priority in (0, 9, 3, 6, 0, 9):
            publish(conn, queue, [f"p{priority}"], priority=priority)
        with Consumer(conn, [queue], callbacks=[on_message], prefetch_count=10):
            inbox = conn.default_channel.inbox
            sizes = [0]

            def settled() -> bool:  # the receivers have buffered what they will
                sizes.append(len(inbox))
                return sizes[-1] >= 2 and sizes[-1] == sizes[-2]

            assert wait_until(settled, timeout=15, interval=1.0)
            buffered = len(inbox)
            conn.drain_events(timeout=5)

    assert len(delivered) == buffered
    assert [int(body[1]) for body in delivered] == sorted(
        (int(body[1]) for body in delivered), reverse=True
    )
