"""Two Celery applications in one AWS account and region, as two teams would run them.

Each has its own worker process and task queue, and leaves ``queue_name_prefix`` empty (as a
Kombu ``sqs://`` user migrating does); each names its exchange topics with
``topic_name_prefix``. Neither can reach the other's workers with remote control, nor see the
other's task events (docs/security.md, control-plane isolation). Without any prefix the
topics are shared, which sqsbus says in a warning (``test_trust_boundaries.py``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from celery_app import AppSettings, create_app
from celery_helpers import RESULT_TIMEOUT, WorkerProcess, task, wait_for

from sqsbus.local import LocalEndpoint
from sqsbus.routing.exchanges import SUBSCRIBER_CACHE_SECONDS

pytestmark = [pytest.mark.celery, pytest.mark.timeout(240)]

#: Seconds a remote-control client waits for replies.
REPLY_TIMEOUT: Final = 3.0


@dataclass
class Team:
    app: Any
    worker: WorkerProcess
    host: str = ""


def answering(app: Any) -> set[str]:
    """Hosts answering a broadcast ping (waits the whole timeout, for any stray answer)."""
    replies = app.control.ping(timeout=REPLY_TIMEOUT) or []
    return {host for reply in replies for host in reply}


@pytest.fixture
def teams(endpoint: LocalEndpoint, tmp_path: Path) -> Iterator[tuple[Team, Team]]:
    uid = uuid.uuid4().hex[:8]
    started: list[Team] = []
    try:
        for name in ("a", "b"):
            base = tmp_path / name
            (base / "results").mkdir(parents=True)
            (base / "state").mkdir()
            settings = AppSettings(
                broker_url=endpoint.broker_url(),
                queue_name_prefix="",
                default_queue=f"{uid}-{name}-tasks",
                result_dir=str(base / "results"),
                state_dir=str(base / "state"),
                transport_options={"topic_name_prefix": f"{uid}-{name}-"},
            )
            worker = WorkerProcess(settings, base / "worker.log", name=name + uid, concurrency=1)
            started.append(Team(create_app(settings), worker.start()))
        for team in started:
            team.worker.wait_ready(team.app)
            app = team.app
            [team.host] = wait_for(
                f"{team.worker.name} to answer a ping",
                lambda: answering(app) or None,  # noqa: B023 (called before the next pass)
                RESULT_TIMEOUT,
            )
        yield started[0], started[1]
    finally:
        for team in started:
            team.worker.stop()
            print(team.worker.log_hint())
            team.app.close()


def test_two_apps_in_one_account_reach_neither_each_other_s_workers_nor_events(
    teams: tuple[Team, Team],
) -> None:
    a, b = teams
    # Broadcasts reach only the application's own worker.
    assert answering(a.app) == {a.host}
    assert answering(b.app) == {b.host}

    # A shutdown from A naming B's worker does not reach it.
    a.app.control.shutdown(destination=[b.host])
    time.sleep(REPLY_TIMEOUT)
    assert b.worker.returncode is None, b.worker.log_hint()
    assert answering(b.app) == {b.host}

    # B's event monitor sees B's tasks, and none of A's.
    events: list[dict[str, Any]] = []
    ready = threading.Event()
    receivers: list[Any] = []

    failed: list[BaseException] = []

    def capture() -> None:
        started = time.monotonic()
        try:
            with b.app.connection() as conn:
                receiver = b.app.events.Receiver(conn, handlers={"*": events.append})

                def consume_ready(*args: Any, **kwargs: Any) -> None:
                    print(f"B's event receiver consumes after {time.monotonic() - started:.1f} s")
                    ready.set()

                receiver.on_consume_ready = consume_ready
                receivers.append(receiver)
                with contextlib.suppress(TimeoutError, socket.timeout):
                    receiver.capture(limit=None, timeout=60)
        except BaseException as exc:
            failed.append(exc)
            raise

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    a_tasks: list[str] = []
    try:
        assert ready.wait(60), f"B's event receiver did not start: {failed or 'no error'}"
        for team in (a, b):
            team.app.control.enable_events(destination=[team.host])

        def b_task_seen() -> bool:
            on_a, on_b = (task(team.app, "add").delay(2, 3) for team in (a, b))
            assert on_a.get(timeout=RESULT_TIMEOUT) == on_b.get(timeout=RESULT_TIMEOUT) == 5
            a_tasks.append(on_a.id)
            time.sleep(1)
            return any(e.get("uuid") == on_b.id and e["type"] == "task-succeeded" for e in events)

        wait_for("B's monitor to see B's task", b_task_seen, SUBSCRIBER_CACHE_SECONDS + 30)
        assert not [e for e in events if e.get("uuid") in a_tasks or e.get("hostname") == a.host]
    finally:
        for team in (a, b):
            team.app.control.disable_events(destination=[team.host])
        for receiver in receivers:
            receiver.should_stop = True
        thread.join(30)
