"""Each Celery execution pool runs a worker on sqsbus: prefork, threads, solo, gevent, eventlet.

One test per pool starts one worker (``--pool=NAME``, two slots, one for ``solo``) and checks,
in turn: results come back, a countdown task runs no earlier than due, remote control answers
(``ping``, ``inspect stats/active``), and a warm shutdown (``SIGTERM``) while tasks run and
wait loses nothing: every task sent is either done (once, never cut off) or back in its queue,
visible, and the worker exits 0. Each test prints how long the warm shutdown took.

gevent and eventlet workers monkey-patch: sqsbus's receiver threads become green threads and
Celery runs its consumer without Kombu's hub, through ``drain_events`` (see
:mod:`sqsbus.kombu.worker_shutdown`). The last test checks that wait in process.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest
from celery.signals import worker_shutting_down
from celery_app import AppSettings, create_app
from celery_helpers import Harness, WorkerProcess, read_records, wait_for
from kombu import Consumer, Exchange, Message, Queue
from kombu_helpers import connect, direct_queue, publish, queue_counts

from sqsbus.kombu import worker_shutdown
from sqsbus.kombu.transport import HUB_TICK_SECONDS, SHUTDOWN_DRAIN_SECONDS
from sqsbus.local import LocalEndpoint
from sqsbus.testing.worker import POOLS

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = [pytest.mark.celery, pytest.mark.timeout(150)]

#: Seconds a remote-control client waits for replies (it returns at the first one).
REPLY_TIMEOUT: Final = 5.0
COUNTDOWN: Final = 3
#: How early a countdown task may start by the clocks involved (same host, Celery's timer).
CLOCK_SLACK: Final = 0.05
#: Tasks sent just before the warm shutdown, and how long each runs.
SHUTDOWN_TASKS: Final = 6
TASK_SECONDS: Final = 1.0
#: Seconds a warm shutdown may take here: the running tasks, then closing (long polls of
#: ``wait_time_seconds`` 1 in flight, temporary queues deleted).
SHUTDOWN_LIMIT: Final = 15.0
#: Celery's event loop per pool: green pools run without Kombu's hub.
LOOPS: Final = {"gevent": "synloop", "eventlet": "synloop"}


def concurrency(pool: str) -> int:
    return 1 if pool == "solo" else 2


@pytest.mark.parametrize("pool", POOLS)
def test_pool_runs_tasks_countdowns_remote_control_and_a_warm_shutdown(
    pool: str, endpoint: LocalEndpoint, tmp_path: Path, sqs_client: SQSClient
) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "state").mkdir()
    settings = AppSettings(
        broker_url=endpoint.broker_url(),
        queue_name_prefix=f"p{uuid.uuid4().hex[:8]}-",
        result_dir=str(tmp_path / "results"),
        state_dir=str(tmp_path / "state"),
    )
    app = create_app(settings)
    worker = WorkerProcess(
        settings, tmp_path / f"{pool}.log", name=pool, concurrency=concurrency(pool), pool=pool
    )
    try:
        worker.start()
        worker.wait_ready(app)
        harness = Harness(app=app, worker=worker, settings=settings)
        status = worker.status()
        assert status["loop"] == LOOPS.get(pool, "asynloop"), status
        assert status["transport"] == "sqsbus.kombu.transport.Transport", status

        check_results(harness)
        key = uuid.uuid4().hex
        due = time.time() + COUNTDOWN
        delayed = harness.task("flaky").apply_async((key, 0), countdown=COUNTDOWN)
        check_remote_control(harness, pool)  # while the countdown task waits in SQS
        assert harness.get(delayed) == {"attempts": 1, "retries": 0}
        [attempt] = (harness.state_dir / f"flaky-{key}.log").read_text().splitlines()
        started = float(attempt.split()[1])
        assert due - CLOCK_SLACK <= started < due + 20, f"ran {started - due:+.2f} s from due"

        check_warm_shutdown(harness, pool, sqs_client)
    finally:
        worker.stop()
        print(worker.log_hint())
        app.close()


def check_results(harness: Harness) -> None:
    add = harness.task("add")
    results = [add.delay(i, 100 * i) for i in range(8)]
    assert [harness.get(result) for result in results] == [101 * i for i in range(8)]
    with pytest.raises(ValueError, match="pool failure"):
        harness.get(harness.task("fail").delay("pool failure"))


def check_remote_control(harness: Harness, pool: str) -> None:
    control = harness.app.control
    replies = control.ping(timeout=REPLY_TIMEOUT, limit=1) or []
    [host] = [host for reply in replies for host in reply]
    assert host.startswith(f"{pool}@"), replies
    assert replies == [{host: {"ok": "pong"}}]
    inspect = control.inspect(destination=[host], timeout=REPLY_TIMEOUT, limit=1)
    stats = (inspect.stats() or {})[host]
    module = {"threads": "thread"}.get(pool, pool)
    assert stats["pool"]["implementation"] == f"celery.concurrency.{module}:TaskPool", stats
    assert stats["pool"]["max-concurrency"] == concurrency(pool), stats["pool"]
    assert host in (inspect.active() or {})


def check_warm_shutdown(harness: Harness, pool: str, sqs_client: SQSClient) -> None:
    """SIGTERM while tasks run and wait: each is done or back in the queue, none lost."""
    worker = harness.worker
    records = harness.state_dir / "records-shutdown.log"
    record = harness.task("record")
    results = {
        result.id: result
        for result in (record.delay("shutdown", TASK_SECONDS) for _ in range(SHUTDOWN_TASKS))
    }
    wait_for(
        "a task to start",
        lambda: any(entry["start"] for entry in read_records(records).values()),
        30,
        context=worker.log_hint,
    )
    signalled = time.monotonic()
    worker.warm_shutdown()
    code = worker.wait(SHUTDOWN_LIMIT)
    took = time.monotonic() - signalled
    after_last_task = time.time() - records.stat().st_mtime
    assert code == 0, f"warm shutdown exited with {code}{worker.log_hint()}"
    assert "Warm shutdown" in worker.log(), worker.log_hint()
    counts = read_records(records)
    print(
        f"{pool}: warm shutdown took {took:.2f} s, {after_last_task:.2f} s after the last task;"
        f" {len(counts)} of {SHUTDOWN_TASKS} tasks ran"
    )
    assert all(entry["done"] == entry["start"] == 1 for entry in counts.values()), counts
    ran = set(counts)
    if pool == "solo":
        # It runs each task in its consumer: it stops after the one running at SIGTERM
        # instead of running the prefetched ones first.
        assert len(ran) == 1, counts
    assert ran <= set(results), counts
    queue = harness.settings.queue_name_prefix + "celery"
    assert queue_counts(sqs_client, queue) == (SHUTDOWN_TASKS - len(ran), 0)
    queued = take_queued_task_ids(harness.app)
    assert sorted(queued) == sorted(set(results) - ran), (queued, ran)
    assert all(results[task_id].successful() for task_id in ran)
    assert all(results[task_id].state == "PENDING" for task_id in queued)


def take_queued_task_ids(app: Any) -> list[str]:
    """Consume the default queue through Kombu; the ids of the tasks it held."""
    ids: list[str] = []
    with app.connection_for_read() as connection:
        queue = app.amqp.queues[app.conf.task_default_queue].bind(connection.default_channel)
        while (message := queue.get()) is not None:
            ids.append(message.headers["id"])
            message.ack()
    return ids


# -- sqsbus's part: drain_events ends its wait when the worker shuts down -------------------


def test_drain_events_stops_waiting_once_the_celery_worker_shuts_down(
    endpoint: LocalEndpoint, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What gevent and eventlet workers wait on: a drain under way ends within a tick of
    Celery's ``worker_shutting_down``; later ones wait a moment only, and still deliver."""
    monkeypatch.setitem(worker_shutdown._state, "stopping", False)  # restored afterwards
    queue = direct_queue("idle")
    received: list[Any] = []

    def on_message(body: Any, message: Message) -> None:
        received.append(body)
        message.ack()

    with connect(endpoint, prefix) as conn, Consumer(conn, [queue], callbacks=[on_message]):
        ended: list[float] = []

        def drain() -> None:
            try:
                conn.drain_events(timeout=30)
            except TimeoutError:
                ended.append(time.monotonic())

        waiting = threading.Thread(target=drain, daemon=True)
        waiting.start()
        time.sleep(0.3)
        assert waiting.is_alive()
        signalled = time.monotonic()
        worker_shutting_down.send(sender="pools@test", sig="SIGTERM", how="Warm", exitcode=0)
        waiting.join(10)
        assert ended and ended[0] - signalled <= HUB_TICK_SECONDS + 0.5, ended

        started = time.monotonic()
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=30)
        assert time.monotonic() - started < SHUTDOWN_DRAIN_SECONDS + 0.5

        with connect(endpoint, prefix) as producer:
            publish(producer, queue, [{"n": 1}])

        def drained() -> bool:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=1)
            return bool(received)

        assert wait_for("the message to be delivered", drained, 10)
    assert received == [{"n": 1}]


def test_closing_does_not_wait_for_the_long_polls_of_its_temporary_queues(
    endpoint: LocalEndpoint, prefix: str, sqs_client: SQSClient
) -> None:
    """A private queue (Celery's pidbox, reply queues) is deleted at close: the long poll its
    receiver has in flight is not waited for (it would be, up to ``wait_time_seconds``, for
    any other queue, to release what it returns)."""
    conn = connect(endpoint, prefix, wait_time_seconds=10)
    private = Queue("box", Exchange("box", type="direct"), routing_key="box", exclusive=True)
    try:
        with Consumer(conn, [private], callbacks=[lambda body, message: None]):
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=1)  # its receiver is long-polling now
            started = time.monotonic()
    finally:
        conn.close()
    took = time.monotonic() - started
    assert took < 3, f"closing took {took:.1f} s"
    urls = sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    assert urls == [], urls
