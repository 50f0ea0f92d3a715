"""Tests for the ``sqsbus`` command line: ``sqsbus local`` as a real subprocess, demo dispatch."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from sqsbus import cli
from sqsbus.local.record import read_record

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sqsbus_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sqsbus", *args]


class RunningCli:
    """``sqsbus ARGS`` in a subprocess, its output (stdout and stderr) read line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            sqsbus_command(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: list[str] = []
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            self._pending.put(line)
        self._pending.put(None)

    def wait_for(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """Wait for an output line matching ``pattern``."""
        while True:
            try:
                line = self._pending.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {timeout} s: {self.output}")
            if line is None:
                pytest.fail(f"exited before printing {pattern!r}: {self.output}")
            if match := re.search(pattern, line):
                return match

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit and its output to be read; return its exit code."""
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        """Terminate the process (which stops its endpoint), killing it if it hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def run_cli(tmp_path: Path) -> Iterator[Callable[..., RunningCli]]:
    """Start ``sqsbus ARGS`` subprocesses (recording ``sqsbus local`` under ``tmp_path/state``
    unless ``env`` says otherwise); any still running at the end are stopped."""
    started: list[RunningCli] = []

    def start(*args: str, env: dict[str, str] | None = None) -> RunningCli:
        started.append(
            RunningCli(*args, env={"SQSBUS_STATE_DIR": str(tmp_path / "state"), **(env or {})})
        )
        return started[-1]

    yield start
    for running in started:
        running.stop()


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.integration
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_local_serves_until_signalled(
    run_cli: Callable[..., RunningCli], stop_signal: signal.Signals
) -> None:
    port = free_port()
    running = run_cli("local", "--port", str(port))
    url = running.wait_for(r"listening on (http://\S+)").group(1)
    assert url == f"http://127.0.0.1:{port}"
    running.wait_for("Press Ctrl-C to stop")

    sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="from-cli-test")["QueueUrl"]
    assert sqs.list_queues()["QueueUrls"] == [queue_url]

    running.process.send_signal(stop_signal)
    assert running.finish() == 0, running.output
    assert refuses_connections(port), "moto's server outlived the CLI"

    output = running.output
    assert f'broker_url = "sqsbus://testing:testing@127.0.0.1:{port}"' in output
    for line in (
        "export AWS_ACCESS_KEY_ID=testing",
        "export AWS_SECRET_ACCESS_KEY=testing",
        "export AWS_DEFAULT_REGION=us-east-1",
    ):
        assert line in output
    assert "memory only" in output


@pytest.mark.integration
def test_each_local_endpoint_keeps_its_own_private_record(
    run_cli: Callable[..., RunningCli], tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    state = {"SQSBUS_STATE_DIR": str(state_dir)}
    first = run_cli("local")
    first_url = first.wait_for(r"listening on (http://\S+)").group(1)
    first.wait_for("Press Ctrl-C to stop")
    second = run_cli("local")
    second_url = second.wait_for(r"listening on (http://\S+)").group(1)
    second.wait_for("Press Ctrl-C to stop")

    records = sorted(state_dir.iterdir())
    assert len(records) == 2
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert {stat.S_IMODE(path.stat().st_mode) for path in records} == {0o600}
    newest = read_record(state)
    assert newest is not None and newest.url == second_url

    second.process.send_signal(signal.SIGTERM)
    assert second.finish() == 0, second.output
    remaining = read_record(state)  # stopping the second left the first's record alone
    assert remaining is not None and remaining.url == first_url
    assert remaining.pid == first.process.pid

    first.process.send_signal(signal.SIGTERM)
    assert first.finish() == 0, first.output
    assert list(state_dir.iterdir()) == []


def test_local_port_in_use_exits_1(run_cli: Callable[..., RunningCli]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        running = run_cli("local", "--port", str(port))
        assert running.finish() == 1
    assert f"port {port} is already in use" in running.output


def test_version() -> None:
    result = subprocess.run(
        sqsbus_command("--version"), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sqsbus ")


def test_unknown_options_are_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["local", "--no-such-option"])
    assert info.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_demo_gets_its_arguments_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        received.append(argv)
        return 7

    fake_demo = types.ModuleType("sqsbus.demo")
    fake_demo.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sqsbus.demo", fake_demo)

    assert cli.main(["demo", "--help", "--port", "3", "x"]) == 7
    assert received == [["--help", "--port", "3", "x"]]
