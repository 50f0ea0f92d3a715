"""A direct exchange's bindings made by other processes count too (AMQP: every queue bound
with the routing key gets the message).

A separate process binds its queue to exchange ``orders`` with key ``paid`` and exits; this
process binds its own queue with the same key and publishes: both queues get the message,
through the exchange's topic. Where this process's queues are all the bindings of a key, the
message goes straight to them (batched SQS sends, no SNS publish).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from kombu import Exchange, Producer, Queue
from kombu_helpers import connect, drain_for, url_of

from sqsbus.local import LocalEndpoint

ROOT = Path(__file__).resolve().parent.parent

BINDER = r"""
import sys
from kombu import Connection, Exchange, Queue
import sqsbus

url, prefix = sys.argv[1:3]
with Connection(url, transport_options={"queue_name_prefix": prefix}) as conn:
    Queue("theirs", Exchange("orders", type="direct"), routing_key="paid")(
        conn.default_channel
    ).declare()
print("bound", flush=True)
"""


def test_a_direct_publish_reaches_queues_bound_by_other_processes(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    answer = subprocess.run(
        [sys.executable, "-c", BINDER, endpoint.broker_url(), prefix],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert answer.stdout.strip() == "bound", answer.stderr
    orders = Exchange("orders", type="direct")
    mine = Queue("mine", orders, routing_key="paid")
    with connect(endpoint, prefix) as conn:
        mine(conn.default_channel).declare()
        Producer(conn).publish({"order": 7}, exchange=orders, routing_key="paid")

        assert drain_for(conn, [mine], 3) == [{"order": 7}]
        theirs = sqs_client.receive_message(QueueUrl=url_of(conn, "theirs"), WaitTimeSeconds=2)
        assert len(theirs.get("Messages", [])) == 1
        assert conn.transport.stats.calls().get("sns.Publish", 0) == 1


def test_a_direct_publish_to_queues_all_bound_here_goes_straight_to_them(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    solo = Exchange("solo", type="direct")
    mine = Queue("only-mine", solo, routing_key="paid")
    with connect(endpoint, prefix) as conn:
        mine(conn.default_channel).declare()
        for number in range(3):
            Producer(conn).publish({"n": number}, exchange=solo, routing_key="paid")

        assert sorted(drain_for(conn, [mine], 3), key=repr) == [{"n": 0}, {"n": 1}, {"n": 2}]
        calls = conn.transport.stats.calls()
        assert calls.get("sns.Publish", 0) == 0
        assert calls["sqs.SendMessageBatch"] == 3
