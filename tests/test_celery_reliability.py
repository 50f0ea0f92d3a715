"""Long tasks, crashed workers, countdowns and poison messages with real Celery workers."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery_app import AppSettings, create_app
from celery_helpers import WorkerProcess, read_records, task, wait_for

from sqsbus.local import LocalEndpoint

pytestmark = [pytest.mark.celery, pytest.mark.timeout(240)]

LEASE = 2


def settings_for(endpoint: LocalEndpoint, base: Path, **overrides: Any) -> AppSettings:
    (base / "results").mkdir(parents=True, exist_ok=True)
    (base / "state").mkdir(parents=True, exist_ok=True)
    return AppSettings(
        broker_url=endpoint.broker_url(),
        queue_name_prefix=f"l{uuid.uuid4().hex[:8]}-",
        result_dir=str(base / "results"),
        state_dir=str(base / "state"),
        **overrides,
    )


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()
    for worker in started:
        print(worker.log_hint())


def start(
    workers: list[WorkerProcess], settings: AppSettings, app: Any, name: str, tmp_path: Path
) -> WorkerProcess:
    worker = WorkerProcess(settings, tmp_path / f"{name}.log", name=name, concurrency=2)
    workers.append(worker.start())
    worker.wait_ready(app)
    return worker


def queue_attributes(endpoint: LocalEndpoint, name: str) -> dict[str, str]:
    import boto3

    client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
    url = client.get_queue_url(QueueName=name)["QueueUrl"]
    return dict(client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])


def test_task_running_past_many_leases_runs_once(
    endpoint: LocalEndpoint, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """acks_late task running 5 leases long: without the keeper it would run again."""
    settings = settings_for(
        endpoint, tmp_path, acks_late=True, transport_options={"lease_seconds": LEASE}
    )
    app = create_app(settings)
    worker = start(workers, settings, app, "long", tmp_path)
    result = task(app, "record").delay("long", 5 * LEASE)
    assert result.get(timeout=60) == result.id
    time.sleep(2 * LEASE)  # a redelivery would start it again by now
    records = read_records(Path(settings.state_dir) / "records-long.log")
    assert records == {result.id: {"start": 1, "done": 1}}, worker.log_hint()
    app.close()


def test_task_of_a_killed_worker_runs_on_another_within_two_leases(
    endpoint: LocalEndpoint, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """SIGKILL mid-task: the message returns after its lease, not after 30 minutes."""
    lease = 3
    settings = settings_for(
        endpoint, tmp_path, acks_late=True, transport_options={"lease_seconds": lease}
    )
    app = create_app(settings)
    doomed = start(workers, settings, app, "doomed", tmp_path)
    records = Path(settings.state_dir) / "records-crash.log"
    result = task(app, "record").delay("crash", 2.0)
    wait_for("the task to start", lambda: records.exists(), 30, context=doomed.log_hint)
    # Task still running: kill the worker and its pool at once (power-cut style).
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    killed = time.monotonic()
    start(workers, settings, app, "rescuer", tmp_path)
    assert result.get(timeout=60) == result.id
    recovered = time.monotonic() - killed
    starts = [line for line in records.read_text().splitlines() if line.startswith("start")]
    assert len(starts) == 2  # the killed run and the rescue
    assert recovered < 60  # the queue's own visibility timeout is 30 minutes
    app.close()


def test_countdown_tasks_wait_in_sqs_not_in_the_worker(
    endpoint: LocalEndpoint, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    settings = settings_for(endpoint, tmp_path)
    app = create_app(settings)
    start(workers, settings, app, "delays", tmp_path)
    queue = f"{settings.queue_name_prefix}celery"
    # The readiness ping's ack is batched (within 50 ms): let it land before counting.
    wait_for(
        "the ping to be acknowledged",
        lambda: queue_attributes(endpoint, queue)["ApproximateNumberOfMessagesNotVisible"] == "0",
        10,
    )
    sent = time.time()
    # Far enough ahead that a slow (loaded) machine still sees it delayed.
    result = task(app, "add").apply_async((2, 3), countdown=8)
    attributes = queue_attributes(endpoint, queue)
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"  # no worker holds it
    assert result.get(timeout=60) == 5
    assert time.time() - sent >= 7
    app.close()


def test_rejected_task_lands_in_the_dead_letter_queue(
    endpoint: LocalEndpoint, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    redrive = {"dead_letter_queue": "dead", "max_receive_count": 3}
    settings = settings_for(
        endpoint, tmp_path, acks_late=True, transport_options={"redrive_policy": redrive}
    )
    app = create_app(settings)
    worker = start(workers, settings, app, "poison", tmp_path)
    sent = task(app, "refuse").delay("bad input")
    dead = f"{settings.queue_name_prefix}dead"

    def dead_letter() -> dict[str, Any] | None:
        import boto3

        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        url = client.get_queue_url(QueueName=dead)["QueueUrl"]
        answer = client.receive_message(
            QueueUrl=url, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        messages = answer.get("Messages") or []
        return messages[0] if messages else None

    letter = wait_for("the dead letter", dead_letter, 30, context=worker.log_hint)
    reason = letter["MessageAttributes"]["sqsbus.dead-letter-reason"]["StringValue"]
    assert reason == "rejected without requeue"
    envelope = json.loads(base64.b64decode(letter["Body"]))
    assert envelope["headers"]["id"] == sent.id
    counts = queue_attributes(endpoint, f"{settings.queue_name_prefix}celery")
    assert counts["ApproximateNumberOfMessages"] == "0"
    app.close()


def test_urgent_task_overtakes_a_backlog(
    endpoint: LocalEndpoint, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    settings = settings_for(endpoint, tmp_path, max_priority=9, prefetch_multiplier=1)
    app = create_app(settings)
    record = task(app, "record")
    # The backlog is waiting in SQS, the urgent task last, before a worker starts: however
    # slowly a busy machine publishes, nothing is consumed meanwhile.
    backlog = [record.apply_async(("order", 0.3), priority=0) for _ in range(8)]
    urgent = record.apply_async(("order", 0.0), priority=9)
    worker = WorkerProcess(settings, tmp_path / "prio.log", name="prio", concurrency=1)
    workers.append(worker.start())
    worker.wait_ready(app)
    for result in [*backlog, urgent]:
        result.get(timeout=60)
    lines = (Path(settings.state_dir) / "records-order.log").read_text().splitlines()
    started = [line.split()[1] for line in lines if line.startswith("start")]
    # One or two routine tasks may be taken in the first receives; the rest wait for it.
    assert started.index(urgent.id) <= 2, worker.log_hint()
    app.close()
