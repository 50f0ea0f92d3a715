"""What each process of the demo's app did, written to a file for the summary.

Every process that uses the app counts the task messages it published and the tasks it ran,
retried or saw fail, beside the HTTP requests sqsbus made in it
(:data:`sqsbus.aws.GLOBAL_STATS`). A worker writes its counts to
``<stats dir>/stats-<pid>.json`` when it stops: the main worker process on
``worker_shutdown`` (and again at exit, to include anything done after it), each pool child
on ``worker_process_shutdown``. The main process also writes :data:`READY_FILE` there once it
consumes. Importing this module connects its Celery signal handlers; :func:`use` says where
the files go.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from celery import signals

from sqsbus.aws import GLOBAL_STATS
from sqsbus.demo.settings import READY_FILE, DemoSettings

__all__ = ["Counters", "counters", "stats_snapshot", "use"]


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
_settings: DemoSettings | None = None


def use(settings: DemoSettings) -> None:
    """Write this process's stats (and a worker's ready file) under ``settings.stats_dir``."""
    global _settings
    _settings = settings


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


def _on_worker_ready(**_: Any) -> None:
    if _settings is not None:
        _write_json(_settings.stats_dir / READY_FILE, {"pid": os.getpid()})


def _on_worker_shutdown(**_: Any) -> None:
    _dump_stats("worker")


def _on_worker_process_init(**_: Any) -> None:
    # A pool child is a fork of the main worker process: start from zero, not its counts.
    GLOBAL_STATS.reset()
    counters.clear()


def _on_worker_process_shutdown(**_: Any) -> None:
    _dump_stats("pool")


signals.after_task_publish.connect(_on_after_task_publish, weak=False)
signals.task_success.connect(_on_task_success, weak=False)
signals.task_failure.connect(_on_task_failure, weak=False)
signals.task_retry.connect(_on_task_retry, weak=False)
signals.worker_init.connect(_on_worker_init, weak=False)
signals.worker_ready.connect(_on_worker_ready, weak=False)
signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)
signals.worker_process_init.connect(_on_worker_process_init, weak=False)
signals.worker_process_shutdown.connect(_on_worker_process_shutdown, weak=False)
