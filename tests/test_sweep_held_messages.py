"""A sweep never deletes a queue that still holds messages out of sight.

A worker process parks a message (SQS's 12-hour visibility cap, shortened here) and is then
cut off (SIGSTOP: it stops keeping its queues alive but still holds the parked copy, which is
in flight). A sweep in another process sees the parking queue expired: it must keep it, since
the copy is the only one left. Once the worker is gone for good and the copy is visible again,
a sweep sends it home.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kombu_helpers import connect, counts, direct_queue, publish, url_of

from sqsbus.local import LocalEndpoint

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent

HOLDER = r"""
import sys, time
from kombu import Connection, Exchange, Queue
import sqsbus

url, prefix = sys.argv[1], sys.argv[2]
conn = Connection(url, transport_options={
    "queue_name_prefix": prefix, "wait_time_seconds": 1, "lease_seconds": 10,
    "temporary_queue_min_expires": 1})
conn.transport.leases.max_total_seconds = 4
queue = Queue("held", Exchange("held"), routing_key="held")
message = None
while message is None:
    message = queue(conn.default_channel).get()
while not conn.transport.parking.parked:
    time.sleep(0.1)
print("parked", flush=True)
time.sleep(3600)
"""


def test_an_expired_parking_queue_whose_copy_is_still_held_is_kept(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = direct_queue("held")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["the only copy"])
        child = subprocess.Popen(
            [sys.executable, "-c", HOLDER, endpoint.broker_url(), prefix],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"parked"
            parked_at = time.monotonic()
            child.send_signal(signal.SIGSTOP)  # cut off: alive, holding, silent
            time.sleep(2.5)  # its queues' expiry (1 s) passes; the copy's lease (10 s) not

            report = conn.transport.sweep_orphan_queues()

            assert not [name for name in report.deleted if "parking" in name]
            parking = [
                url
                for url in sqs_client.list_queues(QueueNamePrefix=prefix)["QueueUrls"]
                if "sqsbus-parking-" in url
            ]
            assert len(parking) == 1 and counts(sqs_client, parking[0]) == (0, 1)
        finally:
            child.kill()
            child.wait()
        # Gone for good: once the copy's lease ends, a sweep sends it home.
        time.sleep(max(0.0, parked_at + 11 - time.monotonic()))
        report = conn.transport.sweep_orphan_queues()
        assert [name for name in report.deleted if "parking" in name]
        bound = queue(conn.default_channel)
        deadline = time.monotonic() + 10
        message = None
        while message is None and time.monotonic() < deadline:
            message = bound.get()
        assert message is not None and message.payload == "the only copy"
        message.ack()
        assert conn.transport.acker.flush()
        assert counts(sqs_client, url_of(conn, "held")) == (0, 0)
