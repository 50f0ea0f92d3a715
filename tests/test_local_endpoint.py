"""Integration tests for the embedded endpoint (sqsbus.local.LocalEndpoint)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from sqsbus.local import (
    DEFAULT_REGION,
    MOTO_MISSING_MESSAGE,
    LocalEndpoint,
    LocalEndpointError,
    MotoNotInstalledError,
)
from sqsbus.local import endpoint as endpoint_module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def client(service: str, url: str) -> Any:
    """A boto3 client for ``service`` on ``url`` (credentials come from the test environment)."""
    return boto3.client(service, endpoint_url=url, region_name=DEFAULT_REGION)  # type: ignore[call-overload]


def is_running(local: LocalEndpoint) -> bool:
    """``local.running``, read through a call so type checkers don't carry narrowing over."""
    return local.running


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


class _FakeServer(LocalEndpoint):
    """A LocalEndpoint whose "server" is an arbitrary Python snippet."""

    def __init__(self, code: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._code = code

    def _command(self, port: int) -> list[str]:
        return [sys.executable, "-c", self._code]


@pytest.mark.integration
def test_chosen_port_lifecycle(tmp_path: Path) -> None:
    port = free_port()
    log_file = tmp_path / "moto.log"
    local = LocalEndpoint(port=port, log_file=str(log_file))
    assert (local.port, is_running(local), local.url) == (port, False, f"http://127.0.0.1:{port}")

    assert local.start() is local
    try:
        assert is_running(local)
        assert local.pid is not None
        # Ready means ready: the first request needs no retry or sleep.
        sqs = client("sqs", local.url)
        queue_url = sqs.create_queue(QueueName="chosen")["QueueUrl"]
        assert sqs.list_queues()["QueueUrls"] == [queue_url]
        with pytest.raises(LocalEndpointError, match="already started"):
            local.start()
    finally:
        local.stop()

    assert not is_running(local)
    assert refuses_connections(port)
    local.stop()  # idempotent
    assert "POST /" in log_file.read_text(errors="replace")

    # The port is free again: a new endpoint can take it, and starts empty.
    with LocalEndpoint(port=port) as again:
        assert "QueueUrls" not in client("sqs", again.url).list_queues()


@pytest.mark.integration
def test_random_port_context_manager_and_reset() -> None:
    with LocalEndpoint() as local:
        assert is_running(local)
        port = local.port
        assert port > 0
        assert local.url == f"http://127.0.0.1:{port}"
        assert local.broker_url() == f"sqsbus://testing:testing@127.0.0.1:{port}"

        sqs = client("sqs", local.url)
        sqs.create_queue(QueueName="doomed")
        local.reset()
        assert "QueueUrls" not in sqs.list_queues()

    assert not is_running(local)
    assert refuses_connections(port)
    with pytest.raises(LocalEndpointError, match="not running"):
        local.reset()


def test_sqs_sns_and_s3_answer(endpoint: LocalEndpoint, prefix: str) -> None:
    sqs = client("sqs", endpoint.url)
    sns = client("sns", endpoint.url)
    s3 = client("s3", endpoint.url)

    queue_url = sqs.create_queue(QueueName=f"{prefix}fanout")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    topic_arn = sns.create_topic(Name=f"{prefix}topic")["TopicArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    sns.publish(TopicArn=topic_arn, Message=json.dumps({"hello": "sns"}))
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [{"hello": "sns"}]

    bucket = f"{prefix}bucket"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="payload", Body=b"x" * 300_000)
    assert s3.get_object(Bucket=bucket, Key="payload")["Body"].read() == b"x" * 300_000


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        local = LocalEndpoint(port=port)
        with pytest.raises(LocalEndpointError, match=f"port {port} is already in use"):
            local.start()
        assert not local.running


def test_missing_moto_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint_module, "_SERVER_MODULES", ("sqsbus_no_such_module",))
    with pytest.raises(MotoNotInstalledError) as info:
        LocalEndpoint().start()
    assert str(info.value) == MOTO_MISSING_MESSAGE
    assert "pip install 'sqsbus[local]'" in MOTO_MISSING_MESSAGE


def test_server_that_dies_reports_its_log(tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    crashing = _FakeServer(
        "import sys; print('boom: cannot serve', flush=True); sys.exit(3)",
        port=free_port(),
        log_file=log_file,
    )
    with pytest.raises(LocalEndpointError, match="exited with code 3") as info:
        crashing.start()
    assert "boom: cannot serve" in str(info.value)
    assert str(log_file) in str(info.value)
    assert not crashing.running


def test_server_that_never_answers_times_out() -> None:
    silent = _FakeServer("import time; time.sleep(60)", port=free_port(), startup_timeout=0.5)
    with pytest.raises(LocalEndpointError, match=r"did not answer .* within 0.5 s"):
        silent.start()
    assert not silent.running


def test_urls_and_env_without_starting() -> None:
    local = LocalEndpoint(port=4566)
    assert local.url == "http://127.0.0.1:4566"
    assert local.broker_url() == "sqsbus://testing:testing@127.0.0.1:4566"
    assert local.broker_url("AK/ID", "se:cr@t") == "sqsbus://AK%2FID:se%3Acr%40t@127.0.0.1:4566"
    assert local.env() == {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    assert LocalEndpoint("::1", 4566).url == "http://[::1]:4566"
    assert LocalEndpoint("0.0.0.0", 4566).url == "http://127.0.0.1:4566"
    with pytest.raises(LocalEndpointError, match="no port yet"):
        _ = LocalEndpoint().url
    with pytest.raises(ValueError, match="port"):
        LocalEndpoint(port=70000)
