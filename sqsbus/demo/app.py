"""The Celery app of ``sqsbus demo``: its tasks, configured for a run.

``sqsbus demo`` imports this module in its own process (the producer) and starts a real
worker on it as a subprocess, ``python -m celery -A sqsbus.demo.app:app worker``. The worker
learns its settings from the ``SQSBUS_DEMO_*`` environment variables
(:class:`~sqsbus.demo.settings.DemoSettings`); without them this module configures nothing.
Every process using the app counts what it does (:mod:`sqsbus.demo.stats`). A worker stops
itself (warm shutdown) when the demo that started it is gone.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Final

from celery import Celery, signals

from sqsbus.demo import metrics, stats
from sqsbus.demo.settings import (
    ADD_TASK,
    FLAKY_FAILURES,
    FLAKY_RETRY_COUNTDOWN,
    FLAKY_TASK,
    QUEUE,
    TOTAL_TASK,
    WAIT_TIME_SECONDS,
    DemoSettings,
)
from sqsbus.local import DEFAULT_REGION

__all__ = [
    "FlakyTaskError",
    "add",
    "app",
    "configure",
    "counters",
    "flaky",
    "total",
]

_WATCHDOG_SECONDS: Final = 1.0

app: Any = Celery("sqsbus_demo", set_as_current=False)
#: This process's counts (see :mod:`sqsbus.demo.stats`).
counters: Final = stats.counters
_settings: DemoSettings | None = None


def configure(settings: DemoSettings) -> None:
    """Point :data:`app` at ``settings``' broker, result directory and queue prefix."""
    global _settings
    _settings = settings
    stats.use(settings)
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options={
            "queue_name_prefix": settings.queue_name_prefix,
            "region": DEFAULT_REGION,
            "wait_time_seconds": WAIT_TIME_SECONDS,
            "polling_interval": 0,
        },
        broker_connection_retry_on_startup=True,
        # Celery's filesystem result backend: no Redis or database needed.
        result_backend=settings.result_dir.resolve().as_uri(),
        task_default_queue=QUEUE,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # The demo needs no remote control nor events: fewer queues, fewer requests.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=True,
    )


# -- tasks -------------------------------------------------------------------------------------


class FlakyTaskError(RuntimeError):
    """The simulated failure of a ``flaky`` task's first attempts."""


def _add(x: int, y: int) -> int:
    return x + y


def _total(values: list[int]) -> int:
    return sum(values)


def _flaky(task: Any, number: int) -> dict[str, int]:
    attempt = int(task.request.retries) + 1
    if attempt <= FLAKY_FAILURES:
        raise task.retry(
            exc=FlakyTaskError(f"flaky task {number}: simulated failure of attempt {attempt}"),
            countdown=FLAKY_RETRY_COUNTDOWN,
            max_retries=FLAKY_FAILURES,
        )
    return {"number": number, "attempts": attempt}


add: Any = app.task(name=ADD_TASK)(_add)
total: Any = app.task(name=TOTAL_TASK)(_total)
flaky: Any = app.task(name=FLAKY_TASK, bind=True)(_flaky)


# -- the worker's lifecycle --------------------------------------------------------------------


def _on_worker_init(**_: Any) -> None:
    if _settings is None:
        return
    if _settings.parent_pid is not None:
        threading.Thread(
            target=_watch_parent, args=(os.getppid(),), name="sqsbus-demo-watchdog", daemon=True
        ).start()
    if _settings.metrics_port is not None:
        metrics.serve(metrics.worker_port(_settings.metrics_port), "sqsbus-demo-worker")


def _on_worker_process_init(**_: Any) -> None:
    """A pool process serves its own metrics (retries and chord callbacks it publishes)."""
    if _settings is None or _settings.metrics_port is None:
        return
    from celery.utils.log import current_process_index

    index = current_process_index(base=0)
    if index is not None:
        metrics.serve_forked(metrics.pool_port(_settings.metrics_port, index))


def _watch_parent(parent: int) -> None:
    """Warm-shut this worker down if the demo that started it is gone (e.g. SIGKILLed)."""
    while True:
        time.sleep(_WATCHDOG_SECONDS)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _on_worker_shutting_down(**_: Any) -> None:
    """Wake the worker's event loop so that it notices the shutdown at once.

    Celery's SIGTERM handler only flags the shutdown; the loop sees the flag when it next
    wakes up. An idle sqsbus worker has no timers but Celery's pool maintenance, every 5 s,
    so without this a warm shutdown waits up to that long. ``call_soon`` writes to the loop's
    wake-up pipe only when called from another thread, hence the thread.
    """
    from kombu.asynchronous import get_event_loop

    hub = get_event_loop()
    if hub is not None:
        threading.Thread(target=hub.call_soon, args=(_nothing,), daemon=True).start()


def _nothing() -> None:
    pass


signals.worker_init.connect(_on_worker_init, weak=False)
signals.worker_process_init.connect(_on_worker_process_init, weak=False)
signals.worker_shutting_down.connect(_on_worker_shutting_down, weak=False)

_from_env = DemoSettings.from_env()
if _from_env is not None:
    configure(_from_env)
