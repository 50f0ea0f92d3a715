"""Visibility leases, native delays and dead letters, through Kombu on the endpoint."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kombu_helpers import (
    connect,
    counts,
    direct_queue,
    get_within,
    publish,
    queue_attributes,
    url_of,
    wait_until,
)

from sqsbus.engine.delays import ETA_ATTRIBUTE
from sqsbus.local import LocalEndpoint
from sqsbus.testing.proxy import FaultProxy, Faults

# -- leases ---------------------------------------------------------------------------------


def test_held_message_is_not_delivered_again_while_held(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    queue = direct_queue("held")
    with connect(endpoint, prefix, lease_seconds=2) as holder, connect(endpoint, prefix) as other:
        publish(holder, queue, ["long task"])
        message = get_within(queue(holder.default_channel), 5)
        assert message is not None
        # Held three leases long, the message stays invisible to everyone else.
        assert get_within(queue(other.default_channel), 6.5) is None
        assert holder.transport.leases.extended >= 2
        message.ack()
        assert wait_until(lambda: len(holder.transport.leases) == 0)


def test_without_leases_a_held_message_outlives_its_visibility(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    """What Kombu's transport does: the same test fails without the lease keeper."""
    queue = direct_queue("unleased")
    options = {"lease_seconds": 0, "visibility_timeout": 2}
    with connect(endpoint, prefix, **options) as holder, connect(endpoint, prefix) as other:
        publish(holder, queue, ["long task"])
        message = get_within(queue(holder.default_channel), 5)
        assert message is not None
        twice = get_within(queue(other.default_channel), 6.5)
        assert twice is not None and twice.payload == "long task"
        twice.ack()


CRASHING_HOLDER = """
import os, sys, time
from kombu import Connection, Exchange, Queue
import sqsbus
url, prefix = sys.argv[1], sys.argv[2]
conn = Connection(url, transport_options={
    "queue_name_prefix": prefix, "wait_time_seconds": 1, "lease_seconds": 3})
queue = Queue("crash", Exchange("crash"), routing_key="crash")
message = None
while message is None:
    message = queue(conn.default_channel).get()
print("holding", flush=True)
time.sleep(3600)
"""


def test_messages_of_a_killed_consumer_return_within_a_lease(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("crash")
    with connect(endpoint, prefix) as conn:  # the queue keeps Kombu's 30-minute visibility
        publish(conn, queue, ["orphan"])
        child = subprocess.Popen(
            [sys.executable, "-c", CRASHING_HOLDER, endpoint.broker_url(), prefix],
            stdout=subprocess.PIPE,
            env=os.environ.copy(),
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"holding"
            time.sleep(4)  # past one lease: it was extended, so it is still hidden
            assert counts(sqs_client, url_of(conn, "crash")) == (0, 1)
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            killed = time.monotonic()
            message = get_within(queue(conn.default_channel), 30)
            assert message is not None and message.payload == "orphan"
            assert time.monotonic() - killed < 2 * 3 + 5
            assert message.delivery_info["redelivered"] is True
            message.ack()
        finally:
            child.kill()
            child.wait()


def test_buffered_messages_are_released_at_close_and_leases_end(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("buffered")
    with connect(endpoint, prefix, lease_seconds=2) as conn:
        publish(conn, queue, [f"m{i}" for i in range(5)])
        message = get_within(queue(conn.default_channel), 5)
        assert message is not None
        keeper = conn.transport.leases
    # Closing released the unacked message; nothing is extended any more.
    assert len(keeper) == 0
    with connect(endpoint, prefix) as again:
        assert wait_until(lambda: counts(sqs_client, url_of(again, "buffered")) == (5, 0), 5)


# -- native delays --------------------------------------------------------------------------


def eta_headers(seconds: float) -> dict[str, str]:
    return {"eta": (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()}


def test_eta_messages_wait_in_sqs_not_in_the_consumer(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("later")
    with connect(endpoint, prefix) as conn:
        queue(conn.default_channel).declare()
        # Far enough ahead that a slow (loaded) machine still sees it delayed.
        sent = time.time()
        publish(conn, queue, ["due in 6 s"], headers=eta_headers(6))
        attributes = queue_attributes(sqs_client, url_of(conn, "later"))
        assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
        message = get_within(queue(conn.default_channel), 15)
        assert message is not None and message.payload == "due in 6 s"
        assert time.time() - sent >= 5  # whole seconds, never later than the ETA
        message.ack()


def test_naive_eta_is_left_to_the_worker(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("naive")
    with connect(endpoint, prefix) as conn:
        naive = (datetime.now() + timedelta(seconds=60)).isoformat()
        publish(conn, queue, ["naive"], headers={"eta": naive})
        assert counts(sqs_client, url_of(conn, "naive")) == (1, 0)


def test_delayed_message_surfacing_early_hops_until_due(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    """A message due later than SQS can delay is re-sent with the rest of its delay."""
    queue = direct_queue("hops")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["warm up"])
        bound = queue(conn.default_channel)
        warm = get_within(bound, 5)
        assert warm is not None
        warm.ack()
        url = url_of(conn, "hops")
        # As if sent 15 minutes ago for an ETA 4 s from now: surfaces too early.
        eta = time.time() + 4
        sqs_client.send_message(
            QueueUrl=url,
            MessageBody=json.dumps(
                {
                    "body": "ImR1ZSI=",  # base64 of '"due"'
                    "content-encoding": "utf-8",
                    "content-type": "application/json",
                    "headers": {"id": "task-1"},
                    "properties": {
                        "body_encoding": "base64",
                        "delivery_info": {"exchange": "hops", "routing_key": "hops"},
                        "delivery_mode": 2,
                        "priority": 0,
                    },
                }
            ),
            MessageAttributes={ETA_ATTRIBUTE: {"DataType": "Number", "StringValue": str(eta)}},
        )
        assert get_within(bound, 1.5) is None  # surfaced, hopped, not handed over
        assert queue_attributes(sqs_client, url)["ApproximateNumberOfMessagesDelayed"] == "1"
        message = get_within(bound, 10)
        assert message is not None and message.payload == "due"
        assert time.time() >= eta - 1
        assert message.headers["id"] == "task-1"
        message.ack()
        assert wait_until(lambda: counts(sqs_client, url) == (0, 0))


# -- dead letters ---------------------------------------------------------------------------

REDRIVE = {"dead_letter_queue": "dead", "max_receive_count": 3}


def test_redrive_policy_option_creates_queues_with_a_dead_letter_queue(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with connect(endpoint, prefix, redrive_policy=REDRIVE) as conn:
        publish(conn, direct_queue("work"), ["x"])
        attributes = queue_attributes(sqs_client, url_of(conn, "work"))
        policy = json.loads(attributes["RedrivePolicy"])
        assert policy["deadLetterTargetArn"].endswith(f":{prefix}dead")
        assert int(policy["maxReceiveCount"]) == 3
        dead = queue_attributes(sqs_client, url_of(conn, "dead"))
        assert "RedrivePolicy" not in dead
        assert dead["MessageRetentionPeriod"] == str(14 * 24 * 3600)


def dead_letters(sqs_client: Any, url: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(found) < count and time.monotonic() < deadline:
        answer = sqs_client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        found += answer.get("Messages", [])
    return found


def test_rejected_message_goes_to_the_dead_letter_queue_with_its_reason(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("rejects")
    with connect(endpoint, prefix, redrive_policy=REDRIVE) as conn:
        publish(conn, queue, ["poison"], headers={"task": "app.poison"})
        message = get_within(queue(conn.default_channel), 5)
        assert message is not None
        message.reject(requeue=False)
        conn.transport.acker.flush()
        assert wait_until(lambda: counts(sqs_client, url_of(conn, "rejects")) == (0, 0))
        [letter] = dead_letters(sqs_client, url_of(conn, "dead"), 1)
    attributes = letter["MessageAttributes"]
    assert attributes["sqsbus.dead-letter-reason"]["StringValue"] == "rejected without requeue"
    assert attributes["sqsbus.dead-letter-source"]["StringValue"] == f"{prefix}rejects"
    envelope = json.loads(base64.b64decode(letter["Body"]))
    assert envelope["headers"]["task"] == "app.poison"  # the whole message, unchanged


def test_message_failing_repeatedly_ends_in_the_dead_letter_queue(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    """Requeued (or crashed on) max_receive_count times: SQS moves it, never loops."""
    queue = direct_queue("flaky")
    with connect(endpoint, prefix, redrive_policy=REDRIVE) as conn:
        publish(conn, queue, ["crashes the worker"])
        bound = queue(conn.default_channel)
        url = url_of(conn, "flaky")
        deliveries = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = bound.get()
            if message is not None:
                deliveries += 1
                message.requeue()
            elif deliveries and counts(sqs_client, url) == (0, 0):
                break
        assert deliveries == REDRIVE["max_receive_count"]
        assert len(dead_letters(sqs_client, url_of(conn, "dead"), 1)) == 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"max_receive_count": 3}, "needs 'dead_letter_queue'"),
        ({"dead_letter_queue": "d", "max_receives": 3}, "unknown key"),
        ({"dead_letter_queue": "d", "max_receive_count": 0}, "from 1 to 1000"),
        ("dead", "a dict"),
    ],
)
def test_bad_redrive_policy_is_named(value: Any, problem: str) -> None:
    from sqsbus.config import parse_options
    from sqsbus.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=problem):
        parse_options({"redrive_policy": value})


# -- the 12-hour cap: parking ---------------------------------------------------------------

CAP = 5  # seconds, for the test: SQS's cap is 12 hours


def hold_past_the_cap(conn: Any, queue: Any, other: Any, seconds: float) -> Any:
    """Receive one message on ``conn`` and hold it ``seconds`` while ``other`` polls."""
    conn.transport.leases.max_total_seconds = CAP
    message = get_within(queue(conn.default_channel), 5)
    assert message is not None
    assert get_within(queue(other.default_channel), seconds) is None  # never seen twice
    assert conn.transport.parking.parked >= 2
    return message


def test_message_held_past_the_visibility_cap_is_parked_not_redelivered(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("capped")
    with connect(endpoint, prefix, lease_seconds=2) as holder, connect(endpoint, prefix) as other:
        publish(holder, queue, ["very long task"])
        message = hold_past_the_cap(holder, queue, other, 3 * CAP)
        assert message.payload == "very long task"
        message.ack()
        parking = holder.transport.parking_queue_name
        assert wait_until(lambda: counts(sqs_client, url_of(holder, parking)) == (0, 0))
        assert counts(sqs_client, url_of(holder, "capped")) == (0, 0)
    # The parking queue goes with its connection.
    assert not [
        u for u in sqs_client.list_queues(QueueNamePrefix=prefix)["QueueUrls"] if "parking" in u
    ]


def test_parked_message_given_back_returns_to_its_queue(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    queue = direct_queue("capped-requeue")
    with connect(endpoint, prefix, lease_seconds=2) as holder, connect(endpoint, prefix) as other:
        publish(holder, queue, ["give back"], headers={"task": "app.long"})
        message = hold_past_the_cap(holder, queue, other, 2.5 * CAP)
        message.requeue()
        again = get_within(queue(other.default_channel), 10)
        assert again is not None and again.payload == "give back"
        assert again.headers["task"] == "app.long"
        attributes = again.delivery_info["sqs_message"]["MessageAttributes"]
        assert not any(name.startswith("sqsbus.park") for name in attributes)
        again.ack()


def test_a_parked_message_whose_original_cannot_be_deleted_is_reported_as_a_duplicate(
    endpoint: LocalEndpoint, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SQS refuses to delete the original (transiently, on every retry): the copy is held,
    the log says the original will come again, and it does; nothing is counted as parked."""
    queue = direct_queue("capped-undeletable")
    with (
        FaultProxy(endpoint.url) as proxy,
        connect(endpoint, prefix, lease_seconds=2, endpoint_url=proxy.url) as holder,
        connect(endpoint, prefix) as other,
    ):
        publish(holder, queue, ["held twice"])
        holder.transport.leases.max_total_seconds = CAP
        message = get_within(queue(holder.default_channel), 5)
        assert message is not None
        caplog.set_level(logging.ERROR, logger="sqsbus")
        proxy.faults = Faults(partial=1.0, operations=frozenset({"DeleteMessageBatch"}))
        again = get_within(queue(other.default_channel), 4 * CAP)
        assert again is not None and again.payload == "held twice"
        # The original came back while parking was still retrying its delete.
        assert wait_until(lambda: "its original could not be deleted" in caplog.text)
        assert "(InternalError" in caplog.text
        assert "SQS will deliver the original again" in caplog.text
        assert holder.transport.parking.parked == 0
        assert proxy.fault_counts_by_operation()["sqs.DeleteMessageBatch"]["partial"] >= 5
        proxy.clear_faults()
        again.ack()
        message.ack()  # the parked copy


PARKING_HOLDER = """
import sys, time
from kombu import Connection, Exchange, Queue
import sqsbus
url, prefix = sys.argv[1], sys.argv[2]
conn = Connection(url, transport_options={
    "queue_name_prefix": prefix, "wait_time_seconds": 1, "lease_seconds": 2,
    "temporary_queue_min_expires": 1})
conn.transport.leases.max_total_seconds = 4
queue = Queue("orphaned", Exchange("orphaned"), routing_key="orphaned")
message = None
while message is None:
    message = queue(conn.default_channel).get()
while not conn.transport.parking.parked:
    time.sleep(0.1)
print("parked", flush=True)
time.sleep(3600)
"""


def test_messages_parked_by_a_killed_process_return_home_when_swept(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("orphaned")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["parked then orphaned"])
        child = subprocess.Popen(
            [sys.executable, "-c", PARKING_HOLDER, endpoint.broker_url(), prefix],
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"parked"
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            child.kill()
            child.wait()
        assert counts(sqs_client, url_of(conn, "orphaned")) == (0, 0)  # only in parking
        # Its lease (2 s) and its queue's expiry (1 s) pass; then a sweep sends it home.
        time.sleep(4)
        report = conn.transport.sweep_orphan_queues()
        assert any("sqsbus-parking-" in name for name in report.deleted)
        message = get_within(queue(conn.default_channel), 10)
        assert message is not None and message.payload == "parked then orphaned"
        message.ack()
