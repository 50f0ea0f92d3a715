"""A ``celery worker`` child process, for tests, benchmarks and the demo.

:class:`CeleryWorker` runs ``python -m celery -A APP worker`` (a prefork pool unless told
otherwise) in a session of its own, so that the worker and its pool processes form one process
group, and appends its output to a log file. :meth:`~CeleryWorker.wait_ready` waits for a
readiness check the caller gives (a ready file its app writes, a task it answered) while
watching that it still runs; :meth:`~CeleryWorker.stop` asks for Celery's warm shutdown
(``SIGTERM``) and kills the whole group if that takes too long; :meth:`~CeleryWorker.kill`
does so at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Self

from sqsbus.testing.children import wait_for_child

__all__ = ["LEAN", "POOLS", "CeleryWorker"]

#: Worker options that leave out what a single worker does not need (fewer queues, requests).
LEAN: Final = ("--without-gossip", "--without-mingle", "--without-heartbeat")
#: Seconds a worker gets by default to become ready, and to finish its warm shutdown.
READY_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 30.0
LOG_TAIL_LINES: Final = 40
#: Celery's execution pools (``--pool``); gevent and eventlet need their package installed.
POOLS: Final = ("prefork", "threads", "solo", "gevent", "eventlet")


def _no_context() -> str:
    return ""


class CeleryWorker:
    """``python -m celery -A app worker`` as a child process in its own process group.

    Args:
        app: the ``-A`` argument, e.g. ``sqsbus.demo.app:app``.
        log_file: where the worker's stdout and stderr are appended.
        name: the worker's node name is ``name@<host>``.
        concurrency: pool processes (threads, green threads; ignored by ``solo``).
        pool: Celery's ``--pool``, one of :data:`POOLS`.
        loglevel: Celery's ``--loglevel``.
        options: more ``celery worker`` options (default :data:`LEAN`).
        env: the worker's whole environment (default: this process's).
        cwd: the worker's working directory (default: this process's).
    """

    def __init__(
        self,
        app: str,
        log_file: Path,
        *,
        name: str,
        concurrency: int = 1,
        pool: str = "prefork",
        loglevel: str = "warning",
        options: Sequence[str] = LEAN,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.app = app
        self.log_file = log_file
        self.name = name
        if pool not in POOLS:
            raise ValueError(f"unknown Celery pool {pool!r}; one of {', '.join(POOLS)}")
        self.concurrency = concurrency
        self.pool = pool
        self.loglevel = loglevel
        self.options = tuple(options)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            self.app,
            "worker",
            f"--pool={self.pool}",
            f"--concurrency={self.concurrency}",
            f"--loglevel={self.loglevel}",
            *self.options,
            f"--hostname={self.name}@%h",
        ]

    @property
    def what(self) -> str:
        """How messages name this worker."""
        return f"the Celery worker {self.name}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the worker (once)."""
        if self._process is not None:
            raise RuntimeError(f"{self.what} was already started")
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, "PYTHONUNBUFFERED": "1"},
                cwd=self.cwd,
                start_new_session=True,  # its own process group, pool processes included
            )
        return self

    @property
    def started(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int:
        """The main worker process's id (it leads the group); only once started."""
        return self._started().pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the worker exited; None while it runs or before it started."""
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait_ready(
        self,
        ready: Callable[[], Any],
        *,
        timeout: float = READY_TIMEOUT,
        context: Callable[[], str] = _no_context,
    ) -> float:
        """Wait until ``ready()`` is true; return the seconds it took.

        Raises :class:`~sqsbus.testing.children.ChildFailed` if the worker exits first or
        ``timeout`` passes (``context()`` is added to the message).
        """
        started = time.monotonic()
        wait_for_child(self._started(), ready, what=self.what, timeout=timeout, context=context)
        return time.monotonic() - started

    def terminate(self) -> None:
        """Ask for a warm shutdown (``SIGTERM``): running tasks finish, then it exits."""
        process = self._started()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the worker to exit; its exit code, or None."""
        try:
            return self._started().wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Warm shutdown, then SIGKILL to the whole group if it lingers; safe to call again.

        Returns the worker's exit code, None if it had to be killed (or never started).
        Pool processes a failed main process left behind are killed either way.
        """
        process = self._process
        if process is None:
            return None
        self.terminate()
        if self.wait(timeout) is None:
            self.kill()
            return None
        self._kill_group()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the worker and every process of its group, and reap it."""
        process = self._process
        if process is None:
            return
        self._kill_group()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- its log ---------------------------------------------------------------------------

    def log(self) -> str:
        """Everything the worker wrote so far ("" if nothing)."""
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the worker's log."""
        tail = self.log().splitlines()[-lines:]
        return "\n".join(tail) if tail else f"(nothing in {self.log_file})"

    # -- internals -------------------------------------------------------------------------

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self.what} was not started")
        return self._process

    def _kill_group(self) -> None:
        # The worker leads its own process group (start_new_session): only it and its pool.
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
