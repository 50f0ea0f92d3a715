"""Temporary queues of a connection left open are deleted when its process exits normally.

Each test runs a client in a child process: it declares a temporary queue (auto-delete with
an expiry, bound to a fanout exchange, so it has an SNS subscription) and then obeys the
lines the test writes to its stdin: ``fork`` (a forked child exits normally at once),
``close`` (closes the connection) and ``exit`` (returns without closing it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import boto3
import pytest

from sqsbus.expiry import EXIT_CLEANUP_SECONDS
from sqsbus.local import DEFAULT_REGION, LocalEndpoint
from sqsbus.testing.proxy import FaultProxy, Faults

pytestmark = pytest.mark.timeout(120)

ROOT: Final = Path(__file__).resolve().parents[1]
#: Seconds a child may take to exit before the test fails.
EXIT_TIMEOUT: Final = 60.0
#: Seconds an interpreter may take to exit besides the cleanup (a busy shared machine).
EXIT_SLACK: Final = 10.0

CHILD: Final = textwrap.dedent(
    """
    import json, os, sys, warnings
    from kombu import Connection, Exchange, Queue
    import sqsbus

    # Python 3.12+ warns about fork() in a process with threads (sqsbus's keep-alive thread).
    warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
    url, options, name, exchange = json.loads(sys.argv[1])
    conn = Connection(url, transport_options=options)
    queue = Queue(name, Exchange(exchange, "fanout"), auto_delete=True, expires=60)
    queue(conn.default_channel).declare()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "fork":
            pid = os.fork()
            if pid == 0:
                sys.exit(0)  # a normal exit: the atexit hooks it inherited run
            print("forked", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
        elif command == "close":
            conn.close()
            print("closed", flush=True)
        elif command == "exit":
            break
    """
)


class Client:
    """The child process; :meth:`ask` writes a command and reads the answer line."""

    def __init__(self, broker_url: str, options: dict[str, Any], name: str, exchange: str) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps([broker_url, options, name, exchange])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.read_line() == "ready", f"the client did not start: {self.stderr()}"

    def read_line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read_line()

    def exit(self) -> tuple[int, float]:
        """Tell it to return; its exit code and the seconds until it was gone."""
        started = time.monotonic()
        assert self.process.stdin is not None
        self.process.stdin.write("exit\n")
        self.process.stdin.close()
        code = self.process.wait(EXIT_TIMEOUT)
        return code, time.monotonic() - started

    def stderr(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    started: list[Client] = []
    yield started
    for client in started:
        client.kill()


def options(prefix: str, **more: Any) -> dict[str, Any]:
    return {"queue_name_prefix": prefix, "polling_interval": 0, **more}


def queue_names(sqs_client: Any, prefix: str) -> list[str]:
    urls = sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    return sorted(url.rsplit("/", 1)[-1][len(prefix) :] for url in urls)


def subscriptions(endpoint: LocalEndpoint, prefix: str, exchange: str) -> list[str]:
    sns = boto3.client("sns", endpoint_url=endpoint.url, region_name=DEFAULT_REGION)
    topic = f"arn:aws:sns:{DEFAULT_REGION}:123456789012:{prefix}{exchange}"
    answer = sns.list_subscriptions_by_topic(TopicArn=topic)
    return sorted(s["Endpoint"].rsplit(":", 1)[-1] for s in answer["Subscriptions"])


def test_a_connection_left_open_loses_its_temporary_queue_at_exit_but_not_in_a_fork(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, clients: list[Client]
) -> None:
    client = Client(endpoint.broker_url(), options(prefix), "ephemeral-open", "left-open")
    clients.append(client)
    assert queue_names(sqs_client, prefix) == ["ephemeral-open"]
    assert subscriptions(endpoint, prefix, "left-open") == [f"{prefix}ephemeral-open"]

    # A forked child that exits normally did not create the queue: it leaves it alone.
    assert client.ask("fork") == "forked 0"
    assert queue_names(sqs_client, prefix) == ["ephemeral-open"]
    assert subscriptions(endpoint, prefix, "left-open") == [f"{prefix}ephemeral-open"]

    code, seconds = client.exit()
    stderr = client.stderr()
    assert code == 0, stderr
    assert stderr == ""
    assert seconds < EXIT_CLEANUP_SECONDS + EXIT_SLACK
    assert queue_names(sqs_client, prefix) == []
    assert subscriptions(endpoint, prefix, "left-open") == []


def test_exit_after_close_has_nothing_left_to_delete(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, clients: list[Client]
) -> None:
    client = Client(endpoint.broker_url(), options(prefix), "ephemeral-closed", "closed")
    clients.append(client)
    assert client.ask("close") == "closed"
    assert queue_names(sqs_client, prefix) == []
    assert subscriptions(endpoint, prefix, "closed") == []

    code, _seconds = client.exit()
    stderr = client.stderr()
    assert code == 0, stderr
    assert stderr == ""


def test_exit_waits_a_bounded_time_for_an_endpoint_that_does_not_answer(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, clients: list[Client]
) -> None:
    with FaultProxy(endpoint.url) as proxy:
        client = Client(
            endpoint.broker_url(),
            options(prefix, endpoint_url=proxy.url),
            "ephemeral-stuck",
            "stuck",
        )
        clients.append(client)
        # The cleanup's requests hang (a minute each) from now on.
        proxy.faults = Faults(
            latency_ms=60_000, operations=frozenset({"sns.Unsubscribe", "sqs.DeleteQueue"})
        )
        code, seconds = client.exit()
        stderr = client.stderr()
        assert code == 0, stderr
        assert seconds < EXIT_CLEANUP_SECONDS + EXIT_SLACK, stderr
        assert proxy.request_counts().get("sns.Unsubscribe") == 1, "no cleanup was attempted"
        assert f"not deleted within {EXIT_CLEANUP_SECONDS:g} s at exit" in stderr
    # Left to the sweeps, like the queue of a process that died.
    assert queue_names(sqs_client, prefix) == ["ephemeral-stuck"]
