"""The Celery app of the Celery scenario: one trivial task, configured from the environment.

The scenario starts ``python -m celery -A bench.celery_app worker`` with the ``BENCH_CELERY_*``
variables set (see :func:`settings_env`) and publishes a ``group`` of :data:`noop` tasks from
its own process. Results are not stored: each task appends one byte to a file shared by every
pool process, so the harness knows how many ran without a result backend adding traffic.

The worker's main process writes a ready file once it consumes and, with sqsbus, keeps writing
the HTTP requests sqsbus counted in that process (:data:`sqsbus.aws.GLOBAL_STATS`) to a stats
file, so the harness can cross-check the endpoint's count.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Final

from celery import Celery, signals

__all__ = ["QUEUE", "app", "configure", "noop", "settings_env"]

QUEUE: Final = "bench"
_PREFIX: Final = "BENCH_CELERY_"
_STATS_INTERVAL: Final = 0.05

app: Any = Celery("sqsbus_bench", set_as_current=False)
_done_fd: int | None = None


def settings_env(
    *,
    broker_url: str,
    transport_options: dict[str, Any],
    done_file: Path,
    ready_file: Path,
    stats_file: Path,
) -> dict[str, str]:
    """Environment variables that make a worker importing this module use these settings."""
    return {
        f"{_PREFIX}BROKER_URL": broker_url,
        f"{_PREFIX}TRANSPORT_OPTIONS": json.dumps(transport_options),
        f"{_PREFIX}DONE_FILE": str(done_file),
        f"{_PREFIX}READY_FILE": str(ready_file),
        f"{_PREFIX}STATS_FILE": str(stats_file),
    }


def configure(broker_url: str, transport_options: dict[str, Any]) -> None:
    """Point :data:`app` at the broker; the same settings for both transports."""
    if broker_url.startswith("sqsbus://"):
        import sqsbus  # noqa: F401  (registers the sqsbus:// scheme with Kombu)
    app.conf.update(
        broker_url=broker_url,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=True,
    )


def _noop(number: int) -> None:
    global _done_fd
    if _done_fd is None:
        _done_fd = os.open(os.environ[f"{_PREFIX}DONE_FILE"], os.O_WRONLY | os.O_APPEND)
    os.write(_done_fd, b".")


noop: Any = app.task(name="bench.noop")(_noop)


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _sqsbus_requests() -> dict[str, int] | None:
    if not str(app.conf.broker_url).startswith("sqsbus://"):
        return None
    from sqsbus.aws import GLOBAL_STATS

    return GLOBAL_STATS.http_requests()


def _report_stats(path: Path) -> None:
    stop = threading.Event()
    while not stop.wait(_STATS_INTERVAL):
        _write(path, json.dumps({"pid": os.getpid(), "sqsbus_requests": _sqsbus_requests()}))


def _on_worker_ready(**_: Any) -> None:
    stats = os.environ.get(f"{_PREFIX}STATS_FILE")
    if stats:
        threading.Thread(
            target=_report_stats, args=(Path(stats),), name="bench-stats", daemon=True
        ).start()
    ready = os.environ.get(f"{_PREFIX}READY_FILE")
    if ready:
        _write(Path(ready), json.dumps({"pid": os.getpid()}))


signals.worker_ready.connect(_on_worker_ready, weak=False)

if os.environ.get(f"{_PREFIX}BROKER_URL"):
    configure(
        os.environ[f"{_PREFIX}BROKER_URL"],
        json.loads(os.environ.get(f"{_PREFIX}TRANSPORT_OPTIONS", "{}")),
    )
