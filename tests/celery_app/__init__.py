"""The Celery app the integration tests run in a real worker process.

The worker is started as ``python -m celery -A tests.celery_app worker ...`` with the repository
root on ``PYTHONPATH``; it builds its app from :data:`SETTINGS_VARIABLE`, a JSON-encoded
:class:`AppSettings` the test sets in the child's environment. The test process imports this
package too (as ``celery_app``) and calls :func:`create_app` with the same settings to get a
client app with the same tasks, configured identically.

Tasks have explicit names (``sqsbus_tests.*``) so both import paths register the same names.
Side effects the tests check (execution records, retry counters, the worker's status) go to
files under ``AppSettings.state_dir``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from celery import Celery
from celery.exceptions import Reject
from celery.signals import worker_ready
from kombu import Exchange, Queue

import sqsbus  # registers the sqsbus:// scheme with Kombu

__all__ = [
    "SETTINGS_VARIABLE",
    "AppSettings",
    "app",
    "create_app",
    "fanout_queue",
    "status_file",
    "topic_queue",
]

#: Environment variable holding the worker's :class:`AppSettings` as JSON.
SETTINGS_VARIABLE: Final = "SQSBUS_TEST_CELERY_SETTINGS"
#: Every task name starts with this, whichever module path imported the package.
TASK_PREFIX: Final = "sqsbus_tests."


@dataclasses.dataclass(frozen=True)
class AppSettings:
    """What differs between test workers: where the broker, queues and result files are."""

    broker_url: str = "sqsbus://"
    queue_name_prefix: str = ""
    #: Directory of Celery's filesystem result backend; empty: no result backend.
    result_dir: str = ""
    #: Directory for task side effects (records, counters) and the worker status file.
    state_dir: str = ""
    prefetch_multiplier: int = 4
    wait_time_seconds: int = 1
    #: Celery's ``task_acks_late``: acknowledge after the task ran, not before.
    acks_late: bool = False
    #: Celery's ``task_queue_max_priority`` (0: queues without priorities).
    max_priority: int = 0
    #: More transport options (e.g. ``lease_seconds``, ``redrive_policy``).
    transport_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Celery's ``task_default_queue`` (its default, ``celery``, when empty).
    default_queue: str = ""
    #: A topic exchange: the worker also consumes :func:`topic_queue` of it, bound by
    #: ``traced.#`` (empty: no such queue).
    topic_exchange: str = ""
    #: A fanout exchange: the worker also consumes :func:`fanout_queue` of it.
    fanout_exchange: str = ""
    #: Where the worker writes its finished OpenTelemetry spans (``spans.py``; empty: the
    #: worker is not traced).
    trace_file: str = ""

    def to_env(self) -> dict[str, str]:
        """Environment variables that make a worker process build this app."""
        return {SETTINGS_VARIABLE: json.dumps(dataclasses.asdict(self))}

    @classmethod
    def from_env(cls) -> AppSettings:
        """The settings a test gave this process, or inert defaults if none."""
        raw = os.environ.get(SETTINGS_VARIABLE)
        if not raw:
            return cls()
        return cls(**json.loads(raw))


def status_file(state_dir: str | os.PathLike[str], pid: int) -> Path:
    """Where the worker with main process ``pid`` describes itself once it is ready."""
    return Path(state_dir) / f"worker-{pid}.json"


def topic_queue(exchange: str) -> Queue:
    """The queue bound to topic exchange ``exchange`` by ``traced.#``."""
    return Queue(f"{exchange}-tasks", Exchange(exchange, type="topic"), routing_key="traced.#")


def fanout_queue(exchange: str) -> Queue:
    """The queue bound to fanout exchange ``exchange``."""
    return Queue(f"{exchange}-tasks", Exchange(exchange, type="fanout"))


def _append_line(path: Path, line: str) -> None:
    """Append one line with a single ``write`` on an ``O_APPEND`` descriptor (atomic)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _transport_info(transport: Any) -> dict[str, Any]:
    kind = type(transport)
    return {
        "transport": f"{kind.__module__}.{kind.__qualname__}",
        "asynchronous": bool(transport.implements.asynchronous),
        "exchange_types": sorted(transport.implements.exchange_type),
    }


def create_app(settings: AppSettings, *, set_as_current: bool = False) -> Any:
    """A Celery app on the sqsbus transport with the test tasks registered.

    The test process makes several (one per worker setup); only the worker's app becomes
    Celery's current app, so importing this module leaves the test process's current app alone.
    """
    app = Celery("sqsbus_tests", set_as_current=set_as_current)
    app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "queue_name_prefix": settings.queue_name_prefix,
            "wait_time_seconds": settings.wait_time_seconds,
            "polling_interval": 0,
            **settings.transport_options,
        },
        task_acks_late=settings.acks_late,
        task_default_queue=settings.default_queue or "celery",
        task_queue_max_priority=settings.max_priority or None,
        worker_prefetch_multiplier=settings.prefetch_multiplier,
        worker_hijack_root_logger=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    exchange_queues = [
        *([topic_queue(settings.topic_exchange)] if settings.topic_exchange else []),
        *([fanout_queue(settings.fanout_exchange)] if settings.fanout_exchange else []),
    ]
    if exchange_queues:
        app.conf.task_queues = [Queue(app.conf.task_default_queue), *exchange_queues]
    if settings.result_dir:
        app.conf.result_backend = Path(settings.result_dir).as_uri()
    state_dir = Path(settings.state_dir) if settings.state_dir else None

    def state_path(name: str) -> Path:
        if state_dir is None:
            raise RuntimeError(f"no state_dir configured ({SETTINGS_VARIABLE} is not set)")
        return state_dir / name

    def ping() -> str:
        return "pong"

    def add(x: int, y: int) -> int:
        return x + y

    def mul(x: int, y: int) -> int:
        return x * y

    def tsum(values: list[int]) -> int:
        return sum(values)

    def digest(data: str) -> dict[str, Any]:
        """Length and SHA-256 of ``data`` (large arguments arrive whole)."""
        return {"length": len(data), "sha256": hashlib.sha256(data.encode()).hexdigest()}

    def fail(message: str) -> None:
        raise ValueError(message)

    def flaky(self: Any, key: str, failures: int, max_retries: int = 5) -> dict[str, Any]:
        """Fail ``failures`` times (retrying after 1 s each time), then succeed."""
        path = state_path(f"flaky-{key}.log")
        _append_line(path, f"{self.request.retries} {time.time()!r}")
        attempts = len(path.read_text().splitlines())
        if attempts <= failures:
            raise self.retry(
                exc=RuntimeError(f"{key}: attempt {attempts} failed"),
                countdown=1,
                max_retries=max_retries,
            )
        return {"attempts": attempts, "retries": self.request.retries}

    def record(self: Any, tag: str, seconds: float) -> str:
        """Log ``start``, sleep ``seconds``, log ``done`` in ``records-<tag>.log``."""
        path = state_path(f"records-{tag}.log")
        task_id = str(self.request.id)
        _append_line(path, f"start {task_id} {os.getpid()}")
        time.sleep(seconds)
        _append_line(path, f"done {task_id} {os.getpid()}")
        return task_id

    def refuse(reason: str) -> None:
        """Reject the message without requeue (a poison message)."""
        raise Reject(reason, requeue=False)

    def introspect() -> dict[str, Any]:
        """What the pool process executing a task sees."""
        with app.connection_for_read() as connection:
            info = _transport_info(connection.transport)
        return {"curl_imported": "pycurl" in sys.modules, "pid": os.getpid(), **info}

    # Registered by call, not as decorators: Celery's decorators are untyped.
    plain: tuple[Callable[..., Any], ...] = (ping, add, mul, tsum, digest, fail, refuse, introspect)
    bound: tuple[Callable[..., Any], ...] = (flaky, record)
    for function in plain:
        app.task(name=TASK_PREFIX + function.__name__, shared=False)(function)
    for function in bound:
        app.task(name=TASK_PREFIX + function.__name__, bind=True, shared=False)(function)

    def on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
        """Describe the worker's consumer (event loop, transport) in its status file."""
        if sender is None or sender.app is not app or state_dir is None:
            return
        loop = getattr(sender, "loop", None)
        status = {
            "pid": os.getpid(),
            "loop": getattr(loop, "__name__", repr(loop)),
            "hub": sender.hub is not None,
            "curl_imported": "pycurl" in sys.modules,
            "sqsbus_version": sqsbus.__version__,
            **_transport_info(sender.connection.transport),
        }
        path = status_file(state_dir, os.getpid())
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(status))
        temporary.replace(path)

    worker_ready.connect(on_worker_ready, weak=False)
    return app


_worker_settings = AppSettings.from_env()
if _worker_settings.trace_file:
    from .spans import install

    install(_worker_settings.trace_file)

#: The app ``celery -A tests.celery_app`` finds.
app = create_app(_worker_settings, set_as_current=SETTINGS_VARIABLE in os.environ)
