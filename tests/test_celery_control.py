"""Celery remote control and events on sqsbus, as a user of `celery control`/`inspect` sees it.

One worker (``alpha``, prefork ``-c 2``) is shared by the module; the broadcast test starts a
second worker (``beta``) after ``alpha`` and its bindings exist, and stops it with ``control
shutdown``. Replies travel through SNS (``celery.pidbox`` and ``reply.celery.pidbox`` exchanges)
and each client's reply queue; results through Celery's filesystem result backend. The
``celery`` command line runs as a child process (``python -m celery -A tests.celery_app``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
import pytest
from celery_app import AppSettings, create_app
from celery_helpers import RESULT_TIMEOUT, ROOT, Harness, WorkerProcess, read_records, wait_for
from kombu_helpers import queue_counts

from sqsbus.local import DEFAULT_REGION, LocalEndpoint
from sqsbus.queues import canonical_name
from sqsbus.routing.exchanges import SUBSCRIBER_CACHE_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = [pytest.mark.celery, pytest.mark.timeout(180)]

#: Seconds a remote-control client waits for replies.
REPLY_TIMEOUT: Final = 3.0
#: Seconds during which a queue nobody consumes must keep its message: several long polls
#: (``wait_time_seconds`` is 1 in these tests) of a receiver, were one still running.
IDLE_SECONDS: Final = 4.0


@dataclass
class Cluster(Harness):
    """The client app, the shared worker and its Celery hostname."""

    host: str
    tmp: Path

    def sqs_name(self, queue: str) -> str:
        return self.settings.queue_name_prefix + queue.replace(".", "-")


def hosts_answering_ping(app: Any, expected: int) -> set[str]:
    replies = app.control.ping(timeout=REPLY_TIMEOUT, limit=expected) or []
    return {host for reply in replies for host in reply}


@pytest.fixture(scope="module")
def cluster(endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("celery-control")
    (base / "results").mkdir()
    (base / "state").mkdir()
    settings = AppSettings(
        broker_url=endpoint.broker_url(),
        queue_name_prefix=f"k{uuid.uuid4().hex[:8]}-",
        result_dir=str(base / "results"),
        state_dir=str(base / "state"),
    )
    app = create_app(settings)
    worker = WorkerProcess(settings, base / "alpha.log", name="alpha", concurrency=2)
    try:
        worker.start()
        worker.wait_ready(app)
        [host] = wait_for(
            "alpha to answer a ping", lambda: hosts_answering_ping(app, 1), RESULT_TIMEOUT
        )
        yield Cluster(app=app, worker=worker, host=host, settings=settings, tmp=base)
    finally:
        worker.stop()
        app.close()


@pytest.fixture
def alpha(cluster: Cluster) -> Iterator[Cluster]:
    """The shared worker; its log lines written during the test are shown if the test fails."""
    offset = len(cluster.worker.log())
    yield cluster
    print(f"--- alpha's log during this test ({cluster.worker.log_file}) ---")
    print(cluster.worker.log()[offset:])


# -- consumers -----------------------------------------------------------------------------


def test_add_consumer_then_cancel_consumer(alpha: Cluster, sqs_client: SQSClient) -> None:
    control, add = alpha.app.control, alpha.task("add")
    queue = f"extra-{uuid.uuid4().hex[:6]}"

    reply = control.add_consumer(queue, destination=[alpha.host], reply=True, timeout=5)
    assert reply == [{alpha.host: {"ok": f"add consumer {queue}"}}]
    assert alpha.get(add.apply_async((20, 22), queue=queue)) == 42
    active = control.inspect(timeout=REPLY_TIMEOUT).active_queues() or {}
    assert queue in {q["name"] for q in active.get(alpha.host, [])}, active

    reply = control.cancel_consumer(queue, destination=[alpha.host], reply=True, timeout=5)
    assert reply == [{alpha.host: {"ok": f"no longer consuming from {queue}"}}]
    active = control.inspect(timeout=REPLY_TIMEOUT).active_queues() or {}
    assert queue not in {q["name"] for q in active.get(alpha.host, [])}, active

    late = add.apply_async((1, 1), queue=queue)
    sqs_name = alpha.sqs_name(queue)
    wait_for(
        "the task to be in the queue", lambda: queue_counts(sqs_client, sqs_name) == (1, 0), 10
    )
    time.sleep(IDLE_SECONDS)
    # Nobody received it: still visible in SQS, not in flight, not run.
    assert queue_counts(sqs_client, sqs_name) == (1, 0)
    assert late.state == "PENDING"
    # The worker still serves its default queue.
    assert alpha.get(add.delay(2, 2)) == 4


# -- revoke --------------------------------------------------------------------------------


def test_revoke_of_a_task_still_in_sqs(alpha: Cluster, sqs_client: SQSClient) -> None:
    """A revoke broadcast before any worker received the task: it is discarded on receipt."""
    control, record = alpha.app.control, alpha.task("record")
    queue = f"later-{uuid.uuid4().hex[:6]}"
    tag = f"revoked-{uuid.uuid4().hex[:8]}"
    revoked = record.apply_async((tag, 0), queue=queue)
    kept = alpha.task("add").apply_async((3, 4), queue=queue)
    wait_for(
        "both tasks to wait in SQS",
        lambda: queue_counts(sqs_client, alpha.sqs_name(queue)) == (2, 0),
        10,
    )

    control.revoke(revoked.id)
    revoked_ids = wait_for(
        "alpha to list the revoked task",
        lambda: revoked.id in str(control.inspect(timeout=REPLY_TIMEOUT).revoked() or {}),
        RESULT_TIMEOUT,
    )
    assert revoked_ids
    control.add_consumer(queue, destination=[alpha.host], reply=True, timeout=5)
    try:
        assert alpha.get(kept) == 7
        discarded = f"Discarding revoked task: sqsbus_tests.record[{revoked.id}]"
        wait_for(
            f"alpha to discard {revoked.id}",
            lambda: discarded in alpha.worker.log(),
            RESULT_TIMEOUT,
            context=alpha.worker.log_hint,
        )
        assert revoked.state == "REVOKED"
        assert not (alpha.state_dir / f"records-{tag}.log").exists(), "the revoked task ran"
        wait_for(
            "the queue to be empty (the discarded task was acked)",
            lambda: queue_counts(sqs_client, alpha.sqs_name(queue)) == (0, 0),
            10,
        )
    finally:
        control.cancel_consumer(queue, destination=[alpha.host], reply=True, timeout=5)


def test_revoke_with_terminate_kills_the_running_task(alpha: Cluster) -> None:
    tag = f"terminate-{uuid.uuid4().hex[:8]}"
    records = alpha.state_dir / f"records-{tag}.log"
    result = alpha.task("record").delay(tag, 120)
    wait_for(
        "the long task to start",
        lambda: result.id in read_records(records),
        RESULT_TIMEOUT,
        context=alpha.worker.log_hint,
    )
    [running] = [
        job
        for jobs in (alpha.app.control.inspect(timeout=REPLY_TIMEOUT).active() or {}).values()
        for job in jobs
        if job["id"] == result.id
    ]
    pool_pid = running["worker_pid"]

    alpha.app.control.revoke(result.id, terminate=True)

    wait_for("the task to be revoked", lambda: result.state == "REVOKED", RESULT_TIMEOUT)
    wait_for("its pool process to be gone", lambda: not _pid_alive(pool_pid), RESULT_TIMEOUT)
    assert read_records(records)[result.id] == {"start": 1, "done": 0}
    # The pool replaced the terminated process and the worker carries on.
    assert alpha.get(alpha.task("add").delay(5, 5)) == 10
    active = alpha.app.control.inspect(timeout=REPLY_TIMEOUT).active() or {}
    assert result.id not in str(active)


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


# -- a second worker -----------------------------------------------------------------------


def test_a_worker_started_later_gets_broadcasts_and_control_shutdown_stops_it(
    alpha: Cluster,
) -> None:
    beta = WorkerProcess(alpha.settings, alpha.tmp / "beta.log", name="beta", concurrency=1)
    try:
        beta.start()
        beta.wait_ready(alpha.app)
        hosts = wait_for(
            "both workers to answer a ping",
            lambda: (lambda found: found if len(found) == 2 else None)(
                hosts_answering_ping(alpha.app, 2)
            ),
            RESULT_TIMEOUT,
            context=beta.log_hint,
        )
        [beta_host] = hosts - {alpha.host}
        assert beta_host.startswith("beta@")

        # A broadcast (no destination) reaches both workers and applies in both.
        limit = f"{uuid.uuid4().int % 90 + 10}/m"
        replies = alpha.app.control.rate_limit(
            "sqsbus_tests.mul", limit, reply=True, timeout=REPLY_TIMEOUT, limit=2
        )
        assert {host for reply in replies for host in reply} == hosts, replies
        registered = alpha.app.control.inspect(timeout=REPLY_TIMEOUT, limit=2).registered(
            "rate_limit"
        )
        for host in hosts:
            assert f"sqsbus_tests.mul [rate_limit={limit}]" in registered[host], registered

        # control shutdown stops beta only, cleanly.
        alpha.app.control.shutdown(destination=[beta_host])
        code = beta.wait()
        assert code == 0, f"beta exited with {code}{beta.log_hint()}"
        assert hosts_answering_ping(alpha.app, 2) == {alpha.host}
    finally:
        beta.stop()
        print(beta.log_hint())


# -- a killed worker ----------------------------------------------------------------------


def test_a_killed_worker_s_remote_control_queue_is_swept(
    alpha: Cluster, sqs_client: SQSClient, endpoint: LocalEndpoint
) -> None:
    """SIGKILL leaves the worker's pidbox queue behind; a sweep deletes it once it expired."""
    # Celery's control_queue_expires (10 s) becomes the expiry with this low floor.
    settings = dataclasses.replace(
        alpha.settings, transport_options={"temporary_queue_min_expires": 1}
    )
    gamma = WorkerProcess(settings, alpha.tmp / "gamma.log", name="gamma", concurrency=1)
    prefix = settings.queue_name_prefix
    try:
        gamma.start()
        gamma.wait_ready(alpha.app)
        hosts = wait_for(
            "gamma to answer a ping",
            lambda: (lambda found: found if len(found) == 2 else None)(
                hosts_answering_ping(alpha.app, 2)
            ),
            RESULT_TIMEOUT,
            context=gamma.log_hint,
        )
        [gamma_host] = hosts - {alpha.host}
        os.killpg(gamma.pid, signal.SIGKILL)
        gamma.wait()
    finally:
        gamma.stop()
    pidbox = canonical_name(f"{gamma_host}.celery.pidbox", prefix)
    alpha_pidbox = canonical_name(f"{alpha.host}.celery.pidbox", prefix)
    names = queue_names(sqs_client, prefix)
    assert pidbox in names, names
    url = sqs_client.get_queue_url(QueueName=pidbox)["QueueUrl"]
    arn = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    pidbox_arn = arn["Attributes"]["QueueArn"]
    _arn, _aws, _sqs, region, account, _name = pidbox_arn.split(":")
    topic = f"arn:aws:sns:{region}:{account}:{prefix}celery-pidbox"
    assert pidbox_arn in subscribed_queue_arns(endpoint, topic)

    with alpha.app.connection() as conn:
        conn.ensure_connection()
        swept = wait_for(
            f"a sweep to delete {pidbox}",
            lambda: pidbox in conn.transport.sweep_orphan_queues().deleted,
            RESULT_TIMEOUT,
        )
    assert swept
    names = queue_names(sqs_client, prefix)
    assert pidbox not in names and alpha_pidbox in names, names
    assert pidbox_arn not in subscribed_queue_arns(endpoint, topic)
    # Remote control still works, and only the living worker answers.
    assert hosts_answering_ping(alpha.app, 2) == {alpha.host}


def subscribed_queue_arns(endpoint: LocalEndpoint, topic_arn: str) -> set[str]:
    sns = boto3.client("sns", endpoint_url=endpoint.url, region_name="us-east-1")
    answer = sns.list_subscriptions_by_topic(TopicArn=topic_arn)
    return {subscription["Endpoint"] for subscription in answer["Subscriptions"]}


def queue_names(sqs_client: SQSClient, prefix: str) -> list[str]:
    urls = sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    return sorted(url.rsplit("/", 1)[-1] for url in urls)


# -- short-lived clients -------------------------------------------------------------------


def run_celery(settings: AppSettings, *args: str) -> subprocess.CompletedProcess[str]:
    """``celery -A tests.celery_app ARGS`` in a child process, with ``settings``."""
    env = {
        **os.environ,
        **settings.to_env(),
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tests.celery_app", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def reply_topic(prefix: str) -> str:
    """The SNS topic of Celery's reply exchange (``reply.celery.pidbox``)."""
    return f"arn:aws:sns:{DEFAULT_REGION}:123456789012:{prefix}reply-celery-pidbox"


def test_celery_inspect_commands_leave_no_reply_queue_behind(
    alpha: Cluster, sqs_client: SQSClient, endpoint: LocalEndpoint
) -> None:
    """Each ``celery inspect ping`` gets a reply queue subscribed to the reply exchange and
    exits without closing its connection: both are deleted when it exits."""
    prefix = alpha.settings.queue_name_prefix
    # The reply queues of this process's clients (still open).
    queues = queue_names(sqs_client, prefix)
    subscribers = subscribed_queue_arns(endpoint, reply_topic(prefix))

    for _ in range(4):  # each one leaving something would show after the first
        result = run_celery(
            alpha.settings, "inspect", "ping", "-d", alpha.host, "--timeout", str(REPLY_TIMEOUT)
        )
        # A reply came: the command had a reply queue, subscribed.
        assert result.returncode == 0 and "pong" in result.stdout, result.stdout + result.stderr
        assert result.stderr == "", result.stderr

    assert queue_names(sqs_client, prefix) == queues
    assert subscribed_queue_arns(endpoint, reply_topic(prefix)) == subscribers


def test_control_commands_no_worker_answers_leave_nothing_behind(
    endpoint: LocalEndpoint, sqs_client: SQSClient
) -> None:
    settings = AppSettings(
        broker_url=endpoint.broker_url(), queue_name_prefix=f"k{uuid.uuid4().hex[:8]}-"
    )
    for command in (("inspect", "ping"), ("status",)):
        result = run_celery(settings, *command, "--timeout", "1")
        assert result.returncode != 0, result.stdout
        assert "No nodes replied" in result.stderr, result.stderr
    # The reply exchange's topic exists (both commands subscribed to it), unsubscribed.
    assert queue_names(sqs_client, settings.queue_name_prefix) == []
    assert subscribed_queue_arns(endpoint, reply_topic(settings.queue_name_prefix)) == set()


# -- events --------------------------------------------------------------------------------


def test_event_receiver_sees_a_task_from_sent_to_succeeded(alpha: Cluster) -> None:
    # A fresh client app: it publishes task-sent events (and has not yet looked for listeners).
    app = create_app(alpha.settings)
    app.conf.task_send_sent_event = True
    events: list[dict[str, Any]] = []
    ready = threading.Event()
    receivers: list[Any] = []

    def capture() -> None:
        with app.connection() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": events.append})
            # Called once its queue is declared and bound to the celeryev exchange.
            receiver.on_consume_ready = lambda *args, **kwargs: ready.set()
            receivers.append(receiver)
            with contextlib.suppress(TimeoutError, socket.timeout):
                receiver.capture(limit=None, timeout=60)

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    try:
        # 0.5 s on a quiet machine, 5 s beside 16 busy processes.
        assert ready.wait(60), "the event receiver did not start"
        app.control.enable_events(destination=[alpha.host])

        def task_events() -> dict[str, set[str]] | None:
            result = app.tasks["sqsbus_tests.add"].delay(2, 3)
            assert result.get(timeout=RESULT_TIMEOUT, interval=0.05) == 5
            # The worker notices the new listener within SUBSCRIBER_CACHE_SECONDS.
            time.sleep(1)
            kinds = {e["type"] for e in events if e.get("uuid") == result.id}
            wanted = {"task-sent", "task-received", "task-started", "task-succeeded"}
            return {result.id: kinds} if wanted <= kinds else None

        found = wait_for(
            "the four task events of one task",
            task_events,
            SUBSCRIBER_CACHE_SECONDS + 30,
            context=lambda: f"; events so far: {sorted({e['type'] for e in events})}",
        )
        [(task_id, _kinds)] = found.items()
        by_type = {e["type"]: e for e in events if e.get("uuid") == task_id}
        assert by_type["task-sent"]["name"] == "sqsbus_tests.add"
        assert by_type["task-received"]["hostname"] == alpha.host
        assert by_type["task-succeeded"]["result"] == "5"
        # The worker's own events are in order.  (task-sent is stamped by the client after
        # its publish returned, so the worker may well have received the task before.)
        received, started, succeeded = (
            by_type[kind]["timestamp"]
            for kind in ("task-received", "task-started", "task-succeeded")
        )
        assert received <= started <= succeeded
    finally:
        app.control.disable_events(destination=[alpha.host])
        for receiver in receivers:
            receiver.should_stop = True
        thread.join(30)
        app.close()
