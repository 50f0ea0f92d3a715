"""The embedded endpoint: moto's server running as a child process.

Everything it holds (queues, messages, topics, buckets) lives only in that process's memory
and is gone when it stops. It is meant for development, tests and demos, never for real data.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import re
import subprocess
import sys
import time
import urllib.request
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self
from urllib.parse import quote

from sqsbus.local._ports import connect_host, pick_free_port, port_is_free

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_REGION",
    "DEFAULT_SECRET_KEY",
    "MOTO_MISSING_MESSAGE",
    "LocalEndpoint",
    "LocalEndpointError",
    "MotoNotInstalledError",
]

MOTO_MISSING_MESSAGE: Final = (
    "the embedded endpoint needs moto's server: pip install 'sqsbus[local]'"
)
DEFAULT_ACCESS_KEY: Final = "testing"
DEFAULT_SECRET_KEY: Final = "testing"
DEFAULT_REGION: Final = "us-east-1"

# Modules `python -m moto.server` imports; moto without its [server] extra lacks the others.
_SERVER_MODULES: Final = ("moto", "werkzeug", "flask", "flask_cors")
_READY_PATH: Final = "/moto-api/config"
_RESET_PATH: Final = "/moto-api/reset"
_POLL_INTERVAL: Final = 0.05
_STOP_TIMEOUT: Final = 5.0
# An auto-picked port can be taken by another process before moto binds it: retry that many.
_PORT_ATTEMPTS: Final = 3
_LOG_TAIL_BYTES: Final = 8192
_LOG_TAIL_LINES: Final = 20
_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-9;]*m")

# Talk to loopback directly, whatever HTTP(S)_PROXY says.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalEndpointError(RuntimeError):
    """The embedded endpoint could not be started, reached or reset."""


class MotoNotInstalledError(LocalEndpointError):
    """moto's server (the ``local`` extra) is not installed in this interpreter."""


class _ExitedEarly(LocalEndpointError):
    """The server process exited before it answered."""


class LocalEndpoint:
    """An SQS + SNS + S3 compatible endpoint on this machine, served by moto in a subprocess.

    All data lives only in memory and is lost when the endpoint stops. moto accepts any
    credentials; :meth:`broker_url` and :meth:`env` use the conventional ``testing`` ones.

    Example::

        with LocalEndpoint() as endpoint:
            app.conf.broker_url = endpoint.broker_url()

    Args:
        host: address to bind; loopback by default. ``0.0.0.0``/``::`` are reached via loopback.
        port: TCP port to bind; 0 picks a free one at :meth:`start`.
        log_file: file that receives moto's output (one line per request), appended to.
            Without it the output is discarded.
        startup_timeout: seconds to wait for the server to answer before giving up.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_file: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port}")
        self._host = host
        self._requested_port = port
        self._port = port
        self._log_file = None if log_file is None else Path(log_file)
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], LocalEndpoint] | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server binds."""
        return self._host

    @property
    def port(self) -> int:
        """The server's TCP port: the chosen one once started, 0 before if none was given."""
        return self._port

    @property
    def url(self) -> str:
        """The endpoint URL for boto3 and friends, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self._netloc()}"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it was started by this object, else None."""
        return None if self._process is None else self._process.pid

    @property
    def log_file(self) -> Path | None:
        """Where moto's output goes, if anywhere."""
        return self._log_file

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until it answers HTTP requests.

        Raises:
            MotoNotInstalledError: moto's server is not installed.
            LocalEndpointError: the port is in use, or the server died or never answered.
        """
        if self._process is not None:
            raise LocalEndpointError(f"the endpoint is already started on {self.url}")
        _require_moto_server()
        if self._requested_port:
            if not port_is_free(self._host, self._requested_port):
                raise LocalEndpointError(
                    f"cannot start the embedded endpoint: {self._host} port "
                    f"{self._requested_port} is already in use"
                )
            self._start_on(self._requested_port)
            return self
        for _ in range(_PORT_ATTEMPTS - 1):
            with contextlib.suppress(_ExitedEarly):
                self._start_on(pick_free_port(self._host))
                return self
        self._start_on(pick_free_port(self._host))
        return self

    def stop(self) -> None:
        """Stop the server: terminate it, then kill it if it lingers. Safe to call again."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is not None:
            _terminate(process)

    def reset(self) -> None:
        """Wipe all state (queues, messages, topics, buckets) through moto's reset API."""
        if not self.running:
            raise LocalEndpointError("the endpoint is not running")
        request = urllib.request.Request(self.url + _RESET_PATH, data=b"", method="POST")
        try:
            with _OPENER.open(request, timeout=30.0) as response:
                response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise LocalEndpointError(f"could not reset the endpoint at {self.url}: {exc}") from exc

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- client configuration --------------------------------------------------------------

    def broker_url(
        self, access_key: str = DEFAULT_ACCESS_KEY, secret_key: str = DEFAULT_SECRET_KEY
    ) -> str:
        """The Kombu/Celery broker URL for this endpoint.

        The sqsbus transport sends requests for a loopback ``host:port`` to ``http://host:port``.
        """
        user = quote(access_key, safe="")
        password = quote(secret_key, safe="")
        return f"sqsbus://{user}:{password}@{self._netloc()}"

    def env(
        self,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        region: str = DEFAULT_REGION,
    ) -> dict[str, str]:
        """Environment variables giving child processes the endpoint's dummy credentials."""
        return {
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": region,
        }

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = self.url if self._port else f"{self._host}:<unassigned>"
        return f"<LocalEndpoint {where} {state}>"

    # -- internals -------------------------------------------------------------------------

    def _netloc(self) -> str:
        if not self._port:
            raise LocalEndpointError("the endpoint has no port yet: call start() first")
        host = connect_host(self._host)
        return f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"

    def _command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", self._host, "-p", str(port)]

    def _start_on(self, port: int) -> None:
        self._port = port
        with contextlib.ExitStack() as stack:
            output: IO[bytes] | int = subprocess.DEVNULL
            if self._log_file is not None:
                output = stack.enter_context(self._log_file.open("ab"))
            process = subprocess.Popen(
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._process = process
        # Don't leave the server behind if the owner forgets to stop it.
        self._finalizer = weakref.finalize(self, _terminate, process)
        try:
            self._wait_until_ready(process)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while True:
            code = process.poll()
            if code is not None:
                raise _ExitedEarly(
                    f"moto's server exited with code {code} before answering on {self.url}"
                    + self._log_hint()
                )
            if self._answers():
                return
            if time.monotonic() >= deadline:
                raise LocalEndpointError(
                    f"moto's server did not answer on {self.url} within "
                    f"{self._startup_timeout:g} s" + self._log_hint()
                )
            time.sleep(_POLL_INTERVAL)

    def _answers(self) -> bool:
        try:
            with _OPENER.open(self.url + _READY_PATH, timeout=1.0) as response:
                response.read()
                return True
        except (OSError, http.client.HTTPException):
            return False

    def _log_hint(self) -> str:
        if self._log_file is None:
            return " (give it a log_file to see its output)"
        try:
            with self._log_file.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
                text = log.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f" (could not read {self._log_file}: {exc})"
        lines = _ANSI_ESCAPE.sub("", text).splitlines()[-_LOG_TAIL_LINES:]
        if not lines:
            return f" ({self._log_file} is empty)"
        return f"; last lines of {self._log_file}:\n" + "\n".join(lines)


def _require_moto_server() -> None:
    """Raise MotoNotInstalledError unless ``python -m moto.server`` can run here."""
    if any(importlib.util.find_spec(name) is None for name in _SERVER_MODULES):
        raise MotoNotInstalledError(MOTO_MISSING_MESSAGE)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` politely, then forcefully, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
