"""Topic bindings during a rolling deploy: two worker processes of different releases.

The old release binds queue ``audit`` to topic exchange ``events`` with ``order.created``;
the new release adds ``order.*.paid``. Both consume ``audit``. Every message that reached
the queue because some binding wants it is delivered by whichever worker receives it, so
none is lost when the old worker receives an ``order.7.paid``; a message that only the
subscription's prefix filter let through (``order.refunded``) is dropped, with a log line.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Exchange, Producer
from kombu_helpers import connect

from sqsbus.local import LocalEndpoint

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 1000
KEYS = ("order.created", "order.7.paid", "order.refunded", "user.created")

WORKER = r"""
import sys, time
from pathlib import Path
from kombu import Connection, Consumer, Exchange, Queue, binding
import sqsbus

url, prefix, patterns, out, stop = sys.argv[1:6]
events = Exchange("events", type="topic")
audit = Queue("audit", bindings=[binding(events, routing_key=p) for p in patterns.split(",")])
conn = Connection(url, transport_options={
    "queue_name_prefix": prefix, "wait_time_seconds": 1, "polling_interval": 0})
seen = open(out, "a", buffering=1)

def on_message(body, message):
    seen.write(f"{body}\n")
    message.ack()

with Consumer(conn, [audit], callbacks=[on_message], prefetch_count=20):
    print("ready", flush=True)
    while not Path(stop).exists():
        try:
            conn.drain_events(timeout=0.5)
        except TimeoutError:
            pass
conn.release()
"""


@pytest.fixture
def workers(endpoint: LocalEndpoint, prefix: str, tmp_path: Path) -> Iterator[list[Path]]:
    stop = tmp_path / "stop"
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for release, patterns in (("old", "order.created"), ("new", "order.created,order.*.paid")):
            out = tmp_path / f"{release}.seen"
            out.touch()
            log = (tmp_path / f"{release}.log").open("wb")
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    endpoint.broker_url(),
                    prefix,
                    patterns,
                    str(out),
                    str(stop),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
            )
            started.append((child, out))
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"ready", tmp_path / f"{release}.log"
        yield [out for _child, out in started]
    finally:
        stop.touch()
        for child, _out in started:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        for release in ("old", "new"):
            log = tmp_path / f"{release}.log"
            if log.exists():
                print(f"--- {release} worker ---\n{log.read_text()[-3000:]}")


def test_no_message_is_lost_when_workers_of_two_releases_know_different_bindings(
    endpoint: LocalEndpoint, prefix: str, workers: list[Path]
) -> None:
    sent: dict[str, str] = {}
    with connect(endpoint, prefix) as conn:
        publish = Producer(conn).publish
        events = Exchange("events", type="topic")
        for number in range(MESSAGES):
            key = KEYS[number % len(KEYS)]
            body = f"{key}#{number}"
            sent[body] = key
            publish(body, exchange=events, routing_key=key)

    wanted = {body for body, key in sent.items() if key in ("order.created", "order.7.paid")}

    def seen() -> list[str]:
        return [line for out in workers for line in out.read_text().splitlines()]

    deadline = time.monotonic() + 120
    while not wanted <= set(seen()) and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(3)  # whatever else was going to be delivered
    delivered = set(seen())
    old_release = set(workers[0].read_text().splitlines())

    assert not wanted - delivered, f"lost {len(wanted - delivered)} of {len(wanted)}"
    assert delivered == wanted  # nothing that no binding wants
    assert any(sent[body] == "order.7.paid" for body in old_release), (
        "the old worker never received a message only the new release's binding wants"
    )
