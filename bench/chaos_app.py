"""The Celery app of the chaos harness: one task that records which message it ran.

Workers are started as ``python -m celery -A bench.chaos_app worker`` with
``CHAOS_BROKER_URL``, ``CHAOS_TRANSPORT_OPTIONS`` (JSON) and ``CHAOS_DONE_FILE`` set;
:func:`record` appends its number to the done file with one ``write`` on an
``O_APPEND`` descriptor, so concurrent pool processes never interleave lines.
"""

from __future__ import annotations

import json
import os
from typing import Any, Final

from celery import Celery

import sqsbus  # noqa: F401  (registers sqsbus://)

QUEUE: Final = "chaos"

app: Any = Celery("sqsbus_chaos", set_as_current=False)
_done_fd: int | None = None


def configure(broker_url: str, transport_options: dict[str, Any]) -> None:
    """Point :data:`app` at the broker (the harness's producers and workers alike)."""
    app.conf.update(
        broker_url=broker_url,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_default_queue=QUEUE,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        task_serializer="json",
        accept_content=["json"],
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=True,
    )


def _record(number: int) -> None:
    global _done_fd
    if _done_fd is None:
        _done_fd = os.open(os.environ["CHAOS_DONE_FILE"], os.O_WRONLY | os.O_APPEND)
    os.write(_done_fd, f"{number}\n".encode())


record: Any = app.task(name="chaos.record")(_record)

if os.environ.get("CHAOS_BROKER_URL"):
    configure(
        os.environ["CHAOS_BROKER_URL"], json.loads(os.environ.get("CHAOS_TRANSPORT_OPTIONS", "{}"))
    )
