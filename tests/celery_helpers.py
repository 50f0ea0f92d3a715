"""Helpers for tests that run real Celery workers (``celery -A tests.celery_app worker``).

:class:`WorkerProcess` starts a worker as a child process in its own process group, with its
output in a log file, waits for it to consume a ``ping`` task, and stops it with a warm shutdown
(``SIGTERM``) or, failing that, kills it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from celery_app import TASK_PREFIX, AppSettings, status_file

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
    """One ``celery worker`` child process running :mod:`tests.celery_app`."""

    def __init__(
        self,
        settings: AppSettings,
        log_file: Path,
        *,
        name: str,
        concurrency: int = 2,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log_file = log_file
        self.name = name
        self.concurrency = concurrency
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={self.concurrency}",
            "--pool=prefork",
            f"--hostname={self.name}@%h",
        ]

    def start(self) -> WorkerProcess:
        if self.process is not None:
            raise RuntimeError(f"worker {self.name} was already started")
        env = {
            **os.environ,
            **self.extra_env,
            **self.settings.to_env(),
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.settings.state_dir or None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, pool children included
            )
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"worker {self.name} was not started")
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait_ready(self, app: Any, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the worker has executed a ``ping`` task sent through ``app``."""
        result = task(app, "ping").delay()

        def pong() -> bool:
            self.check_alive("becoming ready")
            return bool(result.ready())

        wait_for(f"worker {self.name} to answer a ping", pong, timeout, context=self.log_hint)
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
        os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the worker to exit; return its exit code."""
        if self.process is None:
            raise RuntimeError(f"worker {self.name} was not started")
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise WorkerFailed(
                f"worker {self.name} did not exit within {timeout:g} s{self.log_hint()}"
            ) from None

    def stop(self) -> None:
        """Warm shutdown; kill the worker's process group if it lingers. Safe to call again."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)
        # Pool processes left behind by a killed or stuck main process.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- inspection --------------------------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

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
