"""Helpers for tests that run real Celery workers (``celery -A tests.celery_app worker``).

:class:`WorkerProcess` starts a worker through :class:`sqsbus.testing.worker.CeleryWorker` (a
child process in its own process group, its output in a log file), waits for it to answer a
``ping`` task, and stops it with a warm shutdown (``SIGTERM``) or, failing that, kills it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from celery_app import TASK_PREFIX, AppSettings, status_file

from sqsbus.testing.children import ChildFailed
from sqsbus.testing.worker import CeleryWorker

ROOT: Final = Path(__file__).resolve().parents[1]
#: Seconds a worker may take from start to executing its first task.
READY_TIMEOUT: Final = 60.0
#: Seconds a warm shutdown may take before the worker is killed.
STOP_TIMEOUT: Final = 30.0
LOG_TAIL_CHARS: Final = 6000
POLL_INTERVAL: Final = 0.05
#: Seconds a test waits for a task's result.
RESULT_TIMEOUT: Final = 30.0
#: How often AsyncResult.get polls the filesystem backend.
RESULT_INTERVAL: Final = 0.05

T = TypeVar("T")


class WorkerFailed(AssertionError):
    """A worker died, did not become ready, or did not stop."""


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    *,
    context: Callable[[], str] = lambda: "",
) -> T:
    """Call ``probe`` until it returns something other than None/False; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{context()}")
        time.sleep(POLL_INTERVAL)


def task(app: Any, name: str) -> Any:
    """The task ``sqsbus_tests.<name>`` of ``app``."""
    return app.tasks[TASK_PREFIX + name]


class WorkerProcess:
    """One ``celery worker`` child process running :mod:`tests.celery_app`.

    A :class:`sqsbus.testing.worker.CeleryWorker` with the test app's settings in its
    environment; failures carry the worker's log.
    """

    def __init__(
        self,
        settings: AppSettings,
        log_file: Path,
        *,
        name: str,
        concurrency: int = 2,
        pool: str = "prefork",
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log_file = log_file
        self.name = name
        env = {
            **os.environ,
            **(extra_env or {}),
            **settings.to_env(),
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        self.worker = CeleryWorker(
            "tests.celery_app",
            log_file,
            name=name,
            concurrency=concurrency,
            pool=pool,
            loglevel="INFO",
            options=(),
            env=env,
            cwd=settings.state_dir or None,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> WorkerProcess:
        self.worker.start()
        return self

    @property
    def pid(self) -> int:
        return self.worker.pid

    @property
    def returncode(self) -> int | None:
        return self.worker.returncode

    def wait_ready(self, app: Any, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the worker has executed a ``ping`` task sent through ``app``."""
        result = task(app, "ping").delay()
        try:
            self.worker.wait_ready(result.ready, timeout=timeout, context=self.log_hint)
        except ChildFailed as exc:
            raise WorkerFailed(str(exc)) from None
        answer = result.get(timeout=5)
        assert answer == "pong", f"ping answered {answer!r}{self.log_hint()}"

    def check_alive(self, doing: str) -> None:
        code = self.returncode
        if code is not None:
            raise WorkerFailed(
                f"worker {self.name} exited with code {code} while {doing}{self.log_hint()}"
            )

    def warm_shutdown(self) -> None:
        """Send ``SIGTERM`` (Celery's warm shutdown)."""
        self.check_alive("being sent SIGTERM")
        self.worker.terminate()

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the worker to exit; return its exit code."""
        code = self.worker.wait(timeout)
        if code is None:
            raise WorkerFailed(
                f"worker {self.name} did not exit within {timeout:g} s{self.log_hint()}"
            )
        return code

    def stop(self) -> None:
        """Warm shutdown; kill the worker's process group if it lingers. Safe to call again."""
        self.worker.stop(STOP_TIMEOUT)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- inspection --------------------------------------------------------------------------

    def log(self) -> str:
        return self.worker.log()

    def log_hint(self) -> str:
        text = self.log()
        if len(text) > LOG_TAIL_CHARS:
            text = "...\n" + text[-LOG_TAIL_CHARS:]
        return f"\n--- log of worker {self.name} ({self.log_file}) ---\n{text}"

    def status(self) -> dict[str, Any]:
        """What the worker wrote about itself once ready (see ``celery_app``)."""
        path = status_file(self.settings.state_dir, self.pid)
        raw = wait_for(
            f"{path} to be written",
            lambda: path.read_text() if path.exists() else None,
            10.0,
            context=self.log_hint,
        )
        status: dict[str, Any] = json.loads(raw)
        return status


def read_records(path: Path) -> dict[str, dict[str, int]]:
    """``records-<tag>.log`` as ``{task_id: {"start": n, "done": m}}``."""
    counts: dict[str, dict[str, int]] = {}
    if not path.exists():
        return counts
    for line in path.read_text().splitlines():
        event, task_id, _pid = line.split()
        entry = counts.setdefault(task_id, {"start": 0, "done": 0})
        entry[event] += 1
    return counts


@dataclass
class Harness:
    """A client app and the worker consuming its queues."""

    app: Any
    worker: WorkerProcess
    settings: AppSettings

    @property
    def state_dir(self) -> Path:
        return Path(self.settings.state_dir)

    def task(self, name: str) -> Any:
        return task(self.app, name)

    def get(self, result: Any, timeout: float = RESULT_TIMEOUT) -> Any:
        """``result.get()``, failing with the worker's log if the worker dies meanwhile."""
        self.worker.check_alive(f"waiting for task {result.id}")
        return result.get(timeout=timeout, interval=RESULT_INTERVAL)
