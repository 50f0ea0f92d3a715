"""Where the demo's producer and its worker meet, and the constants both sides use.

The producer hands :class:`DemoSettings` to the worker it starts through ``SQSBUS_DEMO_*``
environment variables (:meth:`DemoSettings.to_env`); the worker's app reads them back
(:meth:`DemoSettings.from_env`). Nothing here imports Celery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "ADD_TASK",
    "CHORD_UNLOCK_INTERVAL",
    "FLAKY_FAILURES",
    "FLAKY_RETRY_COUNTDOWN",
    "FLAKY_TASK",
    "QUEUE",
    "READY_FILE",
    "TOTAL_TASK",
    "WAIT_TIME_SECONDS",
    "DemoSettings",
]

#: The names of the demo's tasks.
ADD_TASK: Final = "sqsbus.demo.add"
TOTAL_TASK: Final = "sqsbus.demo.total"
FLAKY_TASK: Final = "sqsbus.demo.flaky"
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
#: Name of the file the main worker process writes into the stats dir once it consumes.
READY_FILE: Final = "worker.ready"

_ENV_BROKER_URL: Final = "SQSBUS_DEMO_BROKER_URL"
_ENV_QUEUE_PREFIX: Final = "SQSBUS_DEMO_QUEUE_PREFIX"
_ENV_RESULT_DIR: Final = "SQSBUS_DEMO_RESULT_DIR"
_ENV_STATS_DIR: Final = "SQSBUS_DEMO_STATS_DIR"
_ENV_PARENT_PID: Final = "SQSBUS_DEMO_PARENT_PID"
_ENV_METRICS_PORT: Final = "SQSBUS_DEMO_METRICS_PORT"


@dataclass(frozen=True)
class DemoSettings:
    """Where the demo's producer and worker meet: the broker, queues, results and stats."""

    broker_url: str
    queue_name_prefix: str
    result_dir: Path
    stats_dir: Path
    #: The producer's pid: the worker stops itself if that process goes away.
    parent_pid: int | None = None
    #: The producer's Prometheus port (``--metrics``); the worker's processes serve on the
    #: ports after it (:mod:`sqsbus.demo.metrics`).
    metrics_port: int | None = None

    def to_env(self) -> dict[str, str]:
        """Environment variables that make a worker on the demo's app use these settings."""
        env = {
            _ENV_BROKER_URL: self.broker_url,
            _ENV_QUEUE_PREFIX: self.queue_name_prefix,
            _ENV_RESULT_DIR: str(self.result_dir),
            _ENV_STATS_DIR: str(self.stats_dir),
        }
        if self.parent_pid is not None:
            env[_ENV_PARENT_PID] = str(self.parent_pid)
        if self.metrics_port is not None:
            env[_ENV_METRICS_PORT] = str(self.metrics_port)
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DemoSettings | None:
        """The settings in ``environ`` (default ``os.environ``); None if there are none."""
        env = dict(os.environ if environ is None else environ)
        broker_url = env.get(_ENV_BROKER_URL)
        if not broker_url:
            return None
        missing = [name for name in (_ENV_RESULT_DIR, _ENV_STATS_DIR) if not env.get(name)]
        if missing:
            raise RuntimeError(f"sqsbus demo: {', '.join(missing)} must be set too")
        parent = env.get(_ENV_PARENT_PID)
        metrics_port = env.get(_ENV_METRICS_PORT)
        return cls(
            broker_url=broker_url,
            queue_name_prefix=env.get(_ENV_QUEUE_PREFIX, ""),
            result_dir=Path(env[_ENV_RESULT_DIR]),
            stats_dir=Path(env[_ENV_STATS_DIR]),
            parent_pid=int(parent) if parent else None,
            metrics_port=int(metrics_port) if metrics_port else None,
        )
