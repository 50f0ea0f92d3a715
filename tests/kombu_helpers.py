"""Helpers for integration tests that drive sqsbus through Kombu's public API."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from kombu import Connection, Consumer, Exchange, Message, Queue

import sqsbus  # noqa: F401  (registers the sqsbus:// scheme)
from sqsbus.aws import GLOBAL_STATS
from sqsbus.local import LocalEndpoint


def connect(endpoint: LocalEndpoint, prefix: str, **options: Any) -> Connection:
    """A Kombu connection to the test endpoint with a per-test queue prefix."""
    transport_options = {"queue_name_prefix": prefix, "wait_time_seconds": 1, "polling_interval": 0}
    transport_options.update(options)
    return Connection(endpoint.broker_url(), transport_options=transport_options)


def get_within(bound: Any, seconds: float) -> Any:
    """``bound.get()`` (a single receive) until a message comes, or None after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = bound.get()
        if message is not None:
            return message
    return None


def direct_queue(name: str, **kwargs: Any) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name, **kwargs)


def publish(conn: Connection, queue: Queue, bodies: list[Any], **kwargs: Any) -> None:
    with conn.Producer() as producer:
        for body in bodies:
            producer.publish(
                body,
                exchange=queue.exchange,
                routing_key=queue.routing_key,
                declare=[queue],
                **kwargs,
            )


@contextlib.contextmanager
def counting_sends() -> Iterator[dict[str, int]]:
    """Yield a dict that gets, when the block ends, the SendMessage and SendMessageBatch
    calls made (process-wide) inside it."""
    sent: dict[str, int] = {}
    before = GLOBAL_STATS.calls()
    yield sent
    after = GLOBAL_STATS.calls()
    for operation in ("sqs.SendMessage", "sqs.SendMessageBatch"):
        sent[operation] = after.get(operation, 0) - before.get(operation, 0)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def consume(
    conn: Connection,
    queues: list[Queue],
    count: int,
    *,
    timeout: float = 15.0,
    ack: bool = True,
    no_ack: bool = False,
    prefetch_count: int | None = None,
) -> list[tuple[Any, Message]]:
    """Consume ``count`` messages through ``drain_events``; fail after ``timeout``."""
    received: list[tuple[Any, Message]] = []

    def on_message(body: Any, message: Message) -> None:
        received.append((body, message))
        if ack and not no_ack:
            message.ack()

    with Consumer(
        conn, queues, callbacks=[on_message], no_ack=no_ack, prefetch_count=prefetch_count
    ):
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.5)
    assert len(received) >= count, f"got {len(received)} of {count} messages"
    return received


def drain_for(conn: Connection, queues: list[Queue], seconds: float) -> list[Any]:
    """Bodies of every message that arrives on ``queues`` within ``seconds``."""
    bodies: list[Any] = []

    def on_message(body: Any, message: Message) -> None:
        bodies.append(body)
        message.ack()

    with Consumer(conn, queues, callbacks=[on_message]):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.2)
    return bodies


def queue_attributes(sqs_client: Any, url: str) -> dict[str, str]:
    answer = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    return dict(answer["Attributes"])


def counts(sqs_client: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attributes = queue_attributes(sqs_client, url)
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def url_of(conn: Connection, name: str) -> str:
    """The SQS URL of the Kombu queue ``name`` on ``conn``."""
    return str(conn.transport.directory.get(name).url)


def queue_counts(sqs_client: Any, sqs_name: str) -> tuple[int, int]:
    """(visible, in flight) messages of the SQS queue named ``sqs_name``."""
    return counts(sqs_client, sqs_client.get_queue_url(QueueName=sqs_name)["QueueUrl"])
