"""FIFO message groups are handed out one message at a time, in order, groups in parallel.

SQS returns several messages of one group in a receive; the consumer hands out the next
message of a group only once the earlier one was settled (acked, rejected or requeued), while
messages of other groups go on. Under Celery with ``task_acks_late`` a worker therefore never
runs two tasks of one group at once, whatever its pool and concurrency.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery_app import AppSettings, create_app
from celery_helpers import RESULT_TIMEOUT, WorkerProcess, task
from kombu import Consumer, Message
from kombu_helpers import connect, direct_queue, publish

from sqsbus.local import LocalEndpoint

GROUPS = ("a", "b", "c", "d")
PER_GROUP = 20
#: Long enough that tasks of different groups overlap even on a busy machine.
TASK_SECONDS = 0.25


def test_the_next_message_of_a_group_waits_for_the_earlier_one_to_be_settled(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    queue = direct_queue("orders.fifo")
    held: list[Message] = []
    delivered: list[str] = []

    def on_message(body: Any, message: Message) -> None:
        delivered.append(body)
        held.append(message)

    def drain(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.2)

    with connect(endpoint, prefix) as conn:
        for body, group in (("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("b2", "b")):
            publish(conn, queue, [body], MessageGroupId=group)
        with Consumer(conn, [queue], callbacks=[on_message], prefetch_count=10):
            drain(3)
            assert sorted(delivered) == ["a1", "b1"]  # one per group, the first of each
            held.pop(0).ack()  # a1
            drain(2)
            assert sorted(delivered) == ["a1", "a2", "b1"]
            next(m for m in held if m.payload == "a2").requeue()
            drain(2)
            assert delivered.count("a2") == 2 and "a3" not in delivered  # a2 again, first
            for message in held:
                if message.acknowledged:
                    continue  # the requeued delivery of a2
                message.ack()
            drain(3)
            assert sorted(set(delivered)) == ["a1", "a2", "a3", "b1", "b2"]


@pytest.fixture
def fifo_worker(endpoint: LocalEndpoint, tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    (tmp_path / "results").mkdir()
    (tmp_path / "state").mkdir()
    settings = AppSettings(
        broker_url=endpoint.broker_url(),
        queue_name_prefix=f"g{uuid.uuid4().hex[:8]}-",
        default_queue="groups.fifo",
        result_dir=str(tmp_path / "results"),
        state_dir=str(tmp_path / "state"),
        acks_late=True,
        prefetch_multiplier=4,
    )
    app = create_app(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log", name="fifo", concurrency=4)
    try:
        worker.start()
        worker.wait_ready(app)
        yield app, tmp_path / "state"
    finally:
        worker.stop()
        print(worker.log_hint())
        app.close()


@pytest.mark.celery
@pytest.mark.timeout(240)
def test_celery_runs_each_group_in_order_never_overlapping_and_groups_in_parallel(
    fifo_worker: tuple[Any, Path],
) -> None:
    app, state = fifo_worker
    record = task(app, "record")
    # Round robin over the groups, so that every group has work waiting from the start.
    results: dict[str, list[Any]] = {group: [] for group in GROUPS}
    for _ in range(PER_GROUP):
        for group in GROUPS:
            results[group].append(record.apply_async(("all", TASK_SECONDS), MessageGroupId=group))
    for group_results in results.values():
        for result in group_results:
            result.get(timeout=RESULT_TIMEOUT * 3)

    group_of = {r.id: group for group, rs in results.items() for r in rs}
    lines = [line.split() for line in (state / "records-all.log").read_text().splitlines()]
    running: dict[str, str] = {}  # group -> task id started and not done
    most_groups_at_once = 0
    for event, task_id, _pid in lines:
        group = group_of[task_id]
        if event == "start":
            assert group not in running, f"two tasks of group {group} ran at once"
            running[group] = task_id
            most_groups_at_once = max(most_groups_at_once, len(running))
        else:
            assert running.pop(group) == task_id
    for group, group_results in results.items():
        started = [t for event, t, _ in lines if event == "start" and group_of[t] == group]
        assert started == [r.id for r in group_results], f"group {group} out of order"
    assert most_groups_at_once >= 3, "groups did not run in parallel"
