"""The Celery app of ``sqsbus demo``: its tasks, and per-process accounting for the summary.

``sqsbus demo`` imports this module in its own process (the producer) and starts a real
worker on it as a subprocess, ``python -m celery -A sqsbus.demo_app worker``. The worker
learns its settings from the ``SQSBUS_DEMO_*`` environment variables (see
:class:`DemoSettings`); without them this module configures nothing.

Every process that uses the app counts what it does, and a worker writes its counts to
``<stats dir>/stats-<pid>.json`` when it stops: the main worker process on
``worker_shutdown`` (and again at exit, to include anything done after it), each pool child on
``worker_process_shutdown``. A file holds the HTTP requests sqsbus made in that process
(:data:`sqsbus.aws.GLOBAL_STATS`), the task messages it published, and the tasks it ran,
retried or saw fail.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from celery import Celery, signals

from sqsbus.aws import GLOBAL_STATS
from sqsbus.local import DEFAULT_REGION

__all__ = [
    "FLAKY_FAILURES",
    "FLAKY_RETRY_COUNTDOWN",
    "QUEUE",
    "DemoSettings",
    "FlakyTaskError",
    "add",
    "app",
    "configure",
    "counters",
    "flaky",
    "stats_snapshot",
    "total",
]

#: The queue every demo task goes to (the SQS queue is this name after the run's prefix).
QUEUE: Final = "demo"
#: How many times each ``flaky`` task fails before it succeeds.
FLAKY_FAILURES: Final = 1
#: Seconds a failed ``flaky`` task waits before its retry runs.
FLAKY_RETRY_COUNTDOWN: Final = 1
#: Longest SQS long poll of the demo: moto answers them slowly, short ones keep a run brisk.
WAIT_TIME_SECONDS: Final = 2
#: Seconds Celery's ``chord_unlock`` waits between checks of a chord's header results.
CHORD_UNLOCK_INTERVAL: Final = 0.5

_ENV_BROKER_URL: Final = "SQSBUS_DEMO_BROKER_URL"
_ENV_QUEUE_PREFIX: Final = "SQSBUS_DEMO_QUEUE_PREFIX"
_ENV_RESULT_DIR: Final = "SQSBUS_DEMO_RESULT_DIR"
_ENV_STATS_DIR: Final = "SQSBUS_DEMO_STATS_DIR"
_ENV_PARENT_PID: Final = "SQSBUS_DEMO_PARENT_PID"
#: Name of the file the main worker process writes into the stats dir once it consumes.
READY_FILE: Final = "worker.ready"
_WATCHDOG_SECONDS: Final = 1.0


@dataclass(frozen=True)
class DemoSettings:
    """Where the demo's producer and worker meet: the broker, queues, results and stats."""

    broker_url: str
    queue_name_prefix: str
    result_dir: Path
    stats_dir: Path
    #: The producer's pid: the worker stops itself if that process goes away.
    parent_pid: int | None = None

    def to_env(self) -> dict[str, str]:
        """Environment variables that make a worker importing this module use these settings."""
        env = {
            _ENV_BROKER_URL: self.broker_url,
            _ENV_QUEUE_PREFIX: self.queue_name_prefix,
            _ENV_RESULT_DIR: str(self.result_dir),
            _ENV_STATS_DIR: str(self.stats_dir),
        }
        if self.parent_pid is not None:
            env[_ENV_PARENT_PID] = str(self.parent_pid)
        return env

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DemoSettings | None:
        """The settings in ``environ`` (default ``os.environ``); None if there are none."""
        env = dict(os.environ if environ is None else environ)
        broker_url = env.get(_ENV_BROKER_URL)
        if not broker_url:
            return None
        missing = [name for name in (_ENV_RESULT_DIR, _ENV_STATS_DIR) if not env.get(name)]
        if missing:
            raise RuntimeError(f"sqsbus.demo_app: {', '.join(missing)} must be set too")
        parent = env.get(_ENV_PARENT_PID)
        return cls(
            broker_url=broker_url,
            queue_name_prefix=env.get(_ENV_QUEUE_PREFIX, ""),
            result_dir=Path(env[_ENV_RESULT_DIR]),
            stats_dir=Path(env[_ENV_STATS_DIR]),
            parent_pid=int(parent) if parent else None,
        )


app: Any = Celery("sqsbus_demo", set_as_current=False)
_settings: DemoSettings | None = None


def configure(settings: DemoSettings) -> None:
    """Point :data:`app` at ``settings``' broker, result directory and queue prefix."""
    global _settings
    _settings = settings
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


add: Any = app.task(name="sqsbus.demo.add")(_add)
total: Any = app.task(name="sqsbus.demo.total")(_total)
flaky: Any = app.task(name="sqsbus.demo.flaky", bind=True)(_flaky)


# -- accounting --------------------------------------------------------------------------------


@dataclass
class Counters:
    """What this process did with the demo app, by task name."""

    published: Counter[str]
    succeeded: Counter[str]
    failed: Counter[str]
    retried: Counter[str]

    def clear(self) -> None:
        for counter in (self.published, self.succeeded, self.failed, self.retried):
            counter.clear()


counters: Final = Counters(Counter(), Counter(), Counter(), Counter())
_counters_lock = threading.Lock()


def _count(counter: Counter[str], name: object) -> None:
    with _counters_lock:
        counter[str(name)] += 1


def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", sender))


def stats_snapshot(role: str) -> dict[str, Any]:
    """This process's counts: HTTP requests by operation, task messages and task outcomes."""
    with _counters_lock:
        published = dict(counters.published)
        succeeded = dict(counters.succeeded)
        failed = dict(counters.failed)
        retried = dict(counters.retried)
    return {
        "pid": os.getpid(),
        "role": role,
        "http_requests": GLOBAL_STATS.http_requests(),
        "published": published,
        "succeeded": succeeded,
        "failed": failed,
        "retried": retried,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically: readers never see half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(partial, path)


def _dump_stats(role: str) -> None:
    if _settings is None:
        return
    _settings.stats_dir.mkdir(parents=True, exist_ok=True)
    _write_json(_settings.stats_dir / f"stats-{os.getpid()}.json", stats_snapshot(role))


def _on_after_task_publish(sender: Any = None, **_: Any) -> None:
    _count(counters.published, sender)


def _on_task_success(sender: Any = None, **_: Any) -> None:
    _count(counters.succeeded, _task_name(sender))


def _on_task_failure(sender: Any = None, **_: Any) -> None:
    _count(counters.failed, _task_name(sender))


def _on_task_retry(sender: Any = None, **_: Any) -> None:
    _count(counters.retried, _task_name(sender))


def _on_worker_init(**_: Any) -> None:
    atexit.register(_dump_stats, "worker")
    if _settings is not None and _settings.parent_pid is not None:
        threading.Thread(
            target=_watch_parent, args=(os.getppid(),), name="sqsbus-demo-watchdog", daemon=True
        ).start()


def _on_worker_ready(**_: Any) -> None:
    if _settings is not None:
        _write_json(_settings.stats_dir / READY_FILE, {"pid": os.getpid()})


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


def _on_worker_shutdown(**_: Any) -> None:
    _dump_stats("worker")


def _on_worker_process_init(**_: Any) -> None:
    # A pool child is a fork of the main worker process: start from zero, not its counts.
    GLOBAL_STATS.reset()
    counters.clear()


def _on_worker_process_shutdown(**_: Any) -> None:
    _dump_stats("pool")


def _watch_parent(parent: int) -> None:
    """Warm-shut this worker down if the demo that started it is gone (e.g. SIGKILLed)."""
    while True:
        time.sleep(_WATCHDOG_SECONDS)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


signals.after_task_publish.connect(_on_after_task_publish, weak=False)
signals.task_success.connect(_on_task_success, weak=False)
signals.task_failure.connect(_on_task_failure, weak=False)
signals.task_retry.connect(_on_task_retry, weak=False)
signals.worker_init.connect(_on_worker_init, weak=False)
signals.worker_ready.connect(_on_worker_ready, weak=False)
signals.worker_shutting_down.connect(_on_worker_shutting_down, weak=False)
signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)
signals.worker_process_init.connect(_on_worker_process_init, weak=False)
signals.worker_process_shutdown.connect(_on_worker_process_shutdown, weak=False)

_from_env = DemoSettings.from_env()
if _from_env is not None:
    configure(_from_env)
