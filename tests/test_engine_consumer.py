"""The engine's Consumer driven without Kombu: what a second adapter (a plain consumer API,
another task framework) gets from the engine alone.

The consumer runs in a child process where importing Kombu or Celery fails, against the test
endpoint: it receives, hands over and settles messages with the verdicts ack, requeue, reject
and discard, and reads a single message for a synchronous get.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sqsbus.local import LocalEndpoint

ROOT = Path(__file__).resolve().parent.parent

CONSUMER_SCRIPT = r"""
import json, sys, time
sys.modules["kombu"] = None  # any import of Kombu or Celery now fails
sys.modules["celery"] = None

from sqsbus.aws import AWS
from sqsbus.config import parse_options
from sqsbus.engine.acker import Acker
from sqsbus.engine.consumer import Band, ConsumeSettings, Consumer
from sqsbus.engine.leases import LeaseKeeper
from sqsbus.engine.payloads import PayloadStore
from sqsbus.engine.publisher import Publisher
from sqsbus.engine.receiver import PollSettings, Waker
from sqsbus.queues import QueueDirectory

url, prefix = sys.argv[1], sys.argv[2]
options = parse_options(
    {
        "endpoint_url": url,
        "queue_name_prefix": prefix,
        "redrive_policy": {"dead_letter_queue": "dead", "max_receive_count": 5},
    }
)
aws = AWS(options)
directory = QueueDirectory(aws, options)
leases = LeaseKeeper(30)
acker = Acker(leases=leases)
publisher = Publisher(directory)
consumer = Consumer(
    directory=directory,
    publisher=publisher,
    acker=acker,
    leases=leases,
    payloads=PayloadStore(lambda: aws.client("s3")),
    parking=lambda: None,
    waker=Waker(),
    demand=lambda: 10,
    settings=ConsumeSettings(PollSettings(wait_time_seconds=1, polling_interval=0)),
)
jobs = directory.ensure("jobs")
for body in ("ack me", "requeue me", "reject me", "unreadable"):
    publisher.send(jobs, body)

def take(count):
    found, deadline = [], time.monotonic() + 20
    while len(found) < count and time.monotonic() < deadline:
        message = consumer.take()
        if message is None:
            consumer.inbox.waker.wait(0.5)
            consumer.inbox.waker.clear()
        else:
            found.append(message)
    return found

consumer.consume("jobs", [Band(jobs)])
first = {m.body: m for m in take(4)}
consumer.ack(first["ack me"])
consumer.requeue(first["requeue me"])
consumer.reject(first["reject me"])
consumer.discard(first["unreadable"], "it says so")
[again] = take(1)
consumer.ack(again)
receivers = consumer.close()
for receiver in receivers:
    receiver.join(5)
publisher.send(jobs, "get me")
got = consumer.get("jobs", [Band(jobs)])
consumer.ack(got)
acker.close()
leases.stop()
dead = directory.get("dead")
letters = []
for _ in range(5):
    answer = dead.client.receive_message(
        QueueUrl=dead.url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    letters += answer.get("Messages", [])
    if len(letters) >= 2:
        break
print(json.dumps({
    "requeued": again.body,
    "redelivered": again.redelivered,
    "got": got.body,
    "dead": sorted(
        (m["Body"], m["MessageAttributes"]["sqsbus.dead-letter-reason"]["StringValue"])
        for m in letters
    ),
    "left": directory.attributes(jobs, fresh=True)["ApproximateNumberOfMessages"],
    "in_flight": directory.attributes(jobs, fresh=True)["ApproximateNumberOfMessagesNotVisible"],
    "kombu_loaded": any(name.startswith(("kombu.", "celery.")) for name in sys.modules),
}))
"""


@pytest.fixture
def run(endpoint: LocalEndpoint, prefix: str) -> Any:
    answer = subprocess.run(
        [sys.executable, "-c", CONSUMER_SCRIPT, endpoint.url, prefix],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout.strip().splitlines()[-1])


def test_the_engine_consumes_and_settles_with_kombu_and_celery_unimportable(run: Any) -> None:
    assert not run["kombu_loaded"]
    assert run["requeued"] == "requeue me" and run["redelivered"] is True
    assert run["got"] == "get me"
    assert run["dead"] == [
        ["reject me", "rejected without requeue"],
        ["unreadable", "unreadable: it says so"],
    ]
    assert (run["left"], run["in_flight"]) == ("0", "0")
