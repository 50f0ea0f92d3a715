"""Celery on sqsbus, end to end: real ``celery worker`` processes against the embedded endpoint.

Most tests share one worker (``-c 2``, module scope) on its own queue prefix; the warm-shutdown
test starts and stops its own workers on another prefix. Results travel through Celery's
filesystem result backend, task side effects through files (see ``tests/celery_app``). A failing
test shows the worker's log in its captured output.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from celery import chain, chord, group
from celery_app import AppSettings, create_app
from celery_helpers import RESULT_TIMEOUT, Harness, WorkerProcess, read_records, task, wait_for
from kombu_helpers import counting_sends, queue_counts

import sqsbus
from sqsbus.engine.acker import DEFAULT_WINDOW as ACK_WINDOW
from sqsbus.errors import MessageTooLarge
from sqsbus.local import LocalEndpoint
from sqsbus.routing.exchanges import SUBSCRIBER_CACHE_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = [pytest.mark.celery, pytest.mark.timeout(180)]


def make_settings(endpoint: LocalEndpoint, base: Path, **overrides: Any) -> AppSettings:
    """Settings on a fresh queue prefix, with result and state directories under ``base``."""
    result_dir = base / "results"
    state_dir = base / "state"
    result_dir.mkdir(parents=True)
    state_dir.mkdir(parents=True)
    return AppSettings(
        broker_url=endpoint.broker_url(),
        queue_name_prefix=f"c{uuid.uuid4().hex[:8]}-",
        result_dir=str(result_dir),
        state_dir=str(state_dir),
        **overrides,
    )


def queue_names(sqs_client: SQSClient, prefix: str) -> list[str]:
    """Names of the SQS queues whose name starts with ``prefix``."""
    urls = sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    return sorted(url.rsplit("/", 1)[-1] for url in urls)


@pytest.fixture(scope="module")
def harness(endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One worker (prefork, concurrency 2) shared by the tests of this module."""
    base = tmp_path_factory.mktemp("celery-shared")
    settings = make_settings(endpoint, base)
    app = create_app(settings)
    worker = WorkerProcess(settings, base / "worker.log", name="shared", concurrency=2)
    try:
        worker.start()
        worker.wait_ready(app)
        yield Harness(app=app, worker=worker, settings=settings)
    finally:
        worker.stop()
        app.close()


@pytest.fixture
def shared(harness: Harness) -> Iterator[Harness]:
    """The shared worker; its log lines written during the test are shown if the test fails."""
    offset = len(harness.worker.log())
    yield harness
    print(f"--- shared worker log during this test ({harness.worker.log_file}) ---")
    print(harness.worker.log()[offset:])


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start dedicated workers; they are stopped (and their logs printed) at teardown."""
    started: list[WorkerProcess] = []

    def start(settings: AppSettings, name: str, concurrency: int) -> WorkerProcess:
        worker = WorkerProcess(
            settings, tmp_path / f"{name}.log", name=name, concurrency=concurrency
        )
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
    for worker in started:
        print(worker.log_hint())


# -- 1. results ----------------------------------------------------------------------------


def test_many_tasks_return_their_results(shared: Harness, sqs_client: SQSClient) -> None:
    add = shared.task("add")
    results = [add.delay(i, 1000 * i) for i in range(40)]

    values = [shared.get(result) for result in reversed(results)]

    assert values == [1001 * i for i in reversed(range(40))]
    assert all(result.successful() for result in results)
    assert len({result.id for result in results}) == 40
    # Every message was deleted (acked): nothing left to be redelivered later.
    queue = shared.settings.queue_name_prefix + "celery"
    wait_for(
        f"queue {queue} to be empty",
        lambda: queue_counts(sqs_client, queue) == (0, 0),
        10.0,
        context=lambda: f"; counts (visible, in flight): {queue_counts(sqs_client, queue)}",
    )


# -- 2. retries ----------------------------------------------------------------------------


def test_retry_with_countdown_succeeds_on_third_attempt(shared: Harness) -> None:
    key = uuid.uuid4().hex
    started = time.monotonic()

    value = shared.get(shared.task("flaky").delay(key, 2))

    elapsed = time.monotonic() - started
    assert value == {"attempts": 3, "retries": 2}
    attempts = (shared.state_dir / f"flaky-{key}.log").read_text().splitlines()
    assert [line.split()[0] for line in attempts] == ["0", "1", "2"]
    times = [float(line.split()[1]) for line in attempts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # countdown=1: each retry runs no sooner than a second after the failed attempt.
    assert all(gap >= 0.9 for gap in gaps), gaps
    assert elapsed >= 1.8


def test_retry_gives_up_after_max_retries(shared: Harness) -> None:
    key = uuid.uuid4().hex
    result = shared.task("flaky").delay(key, 10, max_retries=1)

    with pytest.raises(RuntimeError, match=f"{key}: attempt 2 failed"):
        shared.get(result)

    assert result.state == "FAILURE"
    assert len((shared.state_dir / f"flaky-{key}.log").read_text().splitlines()) == 2


# -- 3. canvas -----------------------------------------------------------------------------


def test_chain_group_and_chord(shared: Harness) -> None:
    add, mul, tsum = shared.task("add"), shared.task("mul"), shared.task("tsum")

    chained = chain(add.s(1, 2), add.s(3), mul.s(4)).apply_async()
    grouped = group(add.s(i, i) for i in range(10)).apply_async()
    chorded = chord((mul.s(i, i) for i in range(6)), tsum.s()).apply_async()

    assert shared.get(chained) == (1 + 2 + 3) * 4
    assert shared.get(grouped) == [2 * i for i in range(10)]
    assert shared.get(chorded) == sum(i * i for i in range(6))


def test_group_published_in_batched_publishing_takes_a_tenth_of_the_sends(shared: Harness) -> None:
    add = shared.task("add")
    with counting_sends() as sent, sqsbus.batched_publishing():
        grouped = group(add.s(i, i) for i in range(40)).apply_async()
    assert shared.get(grouped) == [2 * i for i in range(40)]
    # One thread published 40 tasks: without the block, 40 confirmed sends.
    assert sent["sqs.SendMessage"] == 0 and sent["sqs.SendMessageBatch"] <= 6, sent


# -- 4. failures ---------------------------------------------------------------------------


def test_failure_propagates_and_worker_carries_on(shared: Harness) -> None:
    failed = shared.task("fail").delay("boom 42")

    with pytest.raises(ValueError, match="boom 42"):
        shared.get(failed)
    assert failed.state == "FAILURE"
    assert isinstance(failed.result, ValueError)
    assert "ValueError: boom 42" in (failed.traceback or "")

    add = shared.task("add")
    later = [add.delay(i, 1) for i in range(5)]
    assert [shared.get(result) for result in later] == [i + 1 for i in range(5)]
    shared.worker.check_alive("after a task failure")


# -- 5. warm shutdown ----------------------------------------------------------------------


def test_warm_shutdown_loses_no_task(
    endpoint: LocalEndpoint,
    tmp_path: Path,
    sqs_client: SQSClient,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    settings = make_settings(endpoint, tmp_path / "shutdown", prefetch_multiplier=4)
    app = create_app(settings)
    records = Path(settings.state_dir) / "records-shutdown.log"
    try:
        first = start_worker(settings, "first", concurrency=1)
        first.wait_ready(app)
        record = task(app, "record")
        results = [record.delay("shutdown", 0.5) for _ in range(12)]

        wait_for(
            "the first task to start",
            lambda: any(entry["start"] for entry in read_records(records).values()),
            RESULT_TIMEOUT,
            context=first.log_hint,
        )
        # Prefetch limit 4 (multiplier 4 x concurrency 1): the rest stays for other workers.
        # Acks are batched: let the started task's delete go out before counting; on a busy
        # machine the delete of the task started last may still be on its way (+2). Without
        # the limit the worker would hold all 11 that have not run.
        time.sleep(4 * ACK_WINDOW)
        queue = settings.queue_name_prefix + "celery"
        _, held = queue_counts(sqs_client, queue)
        assert held <= 4 + 2, f"worker holds {held} messages with a prefetch limit of 4"
        first.warm_shutdown()
        code = first.wait()
        assert code == 0, f"warm shutdown exited with {code}{first.log_hint()}"
        assert "Warm shutdown" in first.log(), first.log_hint()
        after_first = read_records(records)

        # On close the transport made every unacked (prefetched) message visible again.
        ran = sum(entry["done"] for entry in after_first.values())
        visible, in_flight = queue_counts(sqs_client, queue)
        assert (visible, in_flight) == (12 - ran, 0), (
            f"{ran} task(s) ran before shutdown; queue has {visible} visible and "
            f"{in_flight} in-flight message(s){first.log_hint()}"
        )

        # The worker's remote-control queue (auto-delete) went away with it.
        assert queue_names(sqs_client, settings.queue_name_prefix) == [queue]

        second = start_worker(settings, "second", concurrency=2)
        ids = [str(result.get(timeout=RESULT_TIMEOUT, interval=0.1)) for result in results]
        second.check_alive("finishing the remaining tasks")
    finally:
        app.close()

    assert ids == [result.id for result in results]
    counts = read_records(records)
    assert set(counts) == set(ids), "some tasks never ran"
    interrupted = {task_id for task_id, c in counts.items() if c["start"] != c["done"]}
    assert not interrupted, f"tasks cut off by the warm shutdown: {interrupted}"
    # Acks early: a task acknowledged when it started is never redelivered, and the prefetched
    # ones had not started, so every task ran exactly once.
    duplicated = {task_id: c["done"] for task_id, c in counts.items() if c["done"] > 1}
    assert not duplicated, f"tasks executed more than once: {duplicated}"
    assert all(entry["done"] == 1 for entry in after_first.values())
    assert 1 <= len(after_first) < 12, "the first worker should have run some tasks, not all"


# -- 6. event loop without pycurl ----------------------------------------------------------


def test_worker_uses_event_loop_without_pycurl(shared: Harness) -> None:
    status = shared.worker.status()
    assert status["loop"] == "asynloop", status
    assert status["hub"] is True, status
    assert status["transport"] == "sqsbus.kombu.transport.Transport", status
    assert status["asynchronous"] is True, status
    assert status["curl_imported"] is False, status

    seen = shared.get(shared.task("introspect").delay())
    assert seen["transport"] == "sqsbus.kombu.transport.Transport", seen
    assert seen["asynchronous"] is True, seen
    assert seen["curl_imported"] is False, seen
    assert seen["pid"] != shared.worker.pid  # ran in a pool process

    assert "pycurl" not in shared.worker.log().lower(), shared.worker.log_hint()


# -- 7. remote control --------------------------------------------------------------------


def test_revoke_of_queued_task(shared: Harness) -> None:
    tag = f"revoke-{uuid.uuid4().hex[:8]}"
    records = shared.state_dir / f"records-{tag}.log"
    # The countdown gives the revoke broadcast time to reach the worker, even under load.
    result = shared.task("record").apply_async((tag, 0), countdown=6)

    shared.app.control.revoke(result.id)

    # When its countdown is up the worker discards it instead of running it.
    discarded = f"Discarding revoked task: sqsbus_tests.record[{result.id}]"
    wait_for(
        f"the worker to discard task {result.id}",
        lambda: discarded in shared.worker.log(),
        RESULT_TIMEOUT,
        context=shared.worker.log_hint,
    )
    assert result.state == "REVOKED"
    assert not records.exists(), "the revoked task ran"


def test_remote_control_ping_gets_a_reply(shared: Harness) -> None:
    replies = shared.app.control.ping(timeout=3, limit=1)

    hosts = [host for reply in replies for host in reply]
    assert any(host.startswith("shared@") for host in hosts), replies
    assert all(answer == {"ok": "pong"} for reply in replies for answer in reply.values())


def test_inspect_and_control_commands_get_replies(shared: Harness) -> None:
    inspect = shared.app.control.inspect(timeout=3)
    registered = inspect.registered() or {}
    [(host, tasks)] = [(h, t) for h, t in registered.items() if h.startswith("shared@")]
    assert "sqsbus_tests.add" in tasks
    stats = (inspect.stats() or {})[host]
    assert stats["pool"]["max-concurrency"] == 2
    assert host in (inspect.active() or {})
    reply = shared.app.control.rate_limit(
        "sqsbus_tests.mul", "100/m", destination=[host], reply=True, timeout=3
    )
    assert reply == [{host: {"ok": "new rate limit set successfully"}}]
    # Replies come back on one reused queue per client, not a new queue per command.
    reply_queues = [
        name for name in shared.app.connection().default_channel.connection.temporary_queues
    ]
    assert len([q for q in reply_queues if q.endswith("reply.celery.pidbox")]) <= 1


def test_events_reach_an_event_receiver(shared: Harness) -> None:
    app = shared.app
    seen: list[str] = []
    ready = threading.Event()
    receivers: list[Any] = []

    def capture() -> None:
        with app.connection() as conn:
            receiver = app.events.Receiver(
                conn, handlers={"*": lambda event: seen.append(event["type"])}
            )
            receivers.append(receiver)
            ready.set()
            with contextlib.suppress(TimeoutError, socket.timeout):
                receiver.capture(limit=None, timeout=60)

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(1)  # the receiver's queue is bound
    # The worker notices a new listener within SUBSCRIBER_CACHE_SECONDS.
    app.control.enable_events()
    try:
        wait_for(
            "task events",
            lambda: (
                shared.get(shared.task("add").delay(2, 2)) == 4
                and {"task-received", "task-started", "task-succeeded"} <= set(seen)
            ),
            timeout=SUBSCRIBER_CACHE_SECONDS + 30,
        )
        wait_for("a worker heartbeat", lambda: "worker-heartbeat" in seen, timeout=15)
    finally:
        app.control.disable_events()
        for receiver in receivers:
            receiver.should_stop = True
        thread.join(30)  # its connection closes, deleting its queue


# -- 8. publishing errors ------------------------------------------------------------------


def test_oversized_task_arguments_raise_message_too_large(shared: Harness) -> None:
    add = shared.task("add")
    with pytest.raises(MessageTooLarge, match="nothing was sent"):
        add.delay("x" * 1_100_000, "y")
    assert shared.get(add.delay(2, 3)) == 5  # the app keeps working
