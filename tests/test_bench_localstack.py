"""The benchmark's LocalStack launcher, without LocalStack: interpreter discovery, the venv's
place, the server's command and environment, its request log lines and its listening sockets.

Nothing here installs or starts LocalStack (CI must not download it); ``python -m bench
--endpoint localstack`` exercises the rest.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import interpreters, localstack
from bench.common import EndpointLog, open_endpoint
from bench.localstack import (
    PYTHON_ENV,
    LocalStackError,
    find_python,
    listening_sockets,
    parse_request_line,
    server_command,
    server_environment,
    venv_dir,
)

PY313 = (3, 13)


def _python(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_the_variable_wins_when_it_names_a_313() -> None:
    found = find_python(
        {PYTHON_ENV: "/opt/py/bin/python3.13"},
        which=lambda name: "/usr/bin/python3.13",
        version_of=lambda exe: PY313,
        roots=[],
    )
    assert found == "/opt/py/bin/python3.13"


def test_a_variable_naming_another_version_is_an_error_not_a_fallback() -> None:
    with pytest.raises(LocalStackError, match=r"is Python 3\.11.*needs Python 3\.13"):
        find_python(
            {PYTHON_ENV: "/usr/bin/python3.11"},
            which=lambda name: "/usr/bin/python3.13",
            version_of=lambda exe: (3, 11) if "3.11" in exe else PY313,
            roots=[],
        )


def test_a_broken_python313_on_path_falls_through_to_pyenv(tmp_path: Path) -> None:
    # A pyenv shim for a version that is not selected is on PATH but fails to run.
    older = _python(tmp_path / "versions" / "3.13.0" / "bin" / "python3.13")
    newer = _python(tmp_path / "versions" / "3.13.2" / "bin" / "python3.13")
    _python(tmp_path / "versions" / "3.12.1" / "bin" / "python3.12")
    shim = "/root/.pyenv/shims/python3.13"
    found = find_python(
        {},
        which=lambda name: shim,
        version_of=lambda exe: None if exe == shim else PY313,
        roots=[tmp_path],
    )
    assert found == str(newer)
    assert interpreters.installed([tmp_path], "3.13") == [str(newer), str(older)]


def test_uv_managed_interpreters_are_found(tmp_path: Path) -> None:
    uv = _python(tmp_path / "cpython-3.13.1-linux-x86_64-gnu" / "bin" / "python3.13")
    assert interpreters.installed([tmp_path], "3.13") == [str(uv)]


def test_no_interpreter_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(LocalStackError) as raised:
        find_python({}, which=lambda name: None, version_of=lambda exe: None, roots=[tmp_path])
    message = str(raised.value)
    assert PYTHON_ENV in message and "pyenv install 3.13" in message


def test_the_venv_is_keyed_by_its_pins(tmp_path: Path) -> None:
    first = venv_dir(tmp_path)
    assert first == venv_dir(tmp_path)
    assert first.parent == tmp_path
    assert venv_dir(tmp_path, (*localstack.PINS, "extra==1")) != first


def test_the_server_listens_on_loopback_offline_with_path_style_urls(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "PYTHONPATH": "/repo",
        "VIRTUAL_ENV": "/repo/.venv",
        "LS_LOG": "warn",
    }
    env = server_environment(base, 4566, tmp_path)
    assert env["GATEWAY_LISTEN"] == "127.0.0.1:4566"
    assert env["LOCALSTACK_HOST"] == "127.0.0.1:4566"
    assert env["FILESYSTEM_ROOT"] == str(tmp_path)
    assert env["SQS_ENDPOINT_STRATEGY"] == "path"
    assert env["DNS_ADDRESS"] == "0" and env["DISABLE_EVENTS"] == "1"
    assert env["SERVICES"] == "sqs,sns,s3"
    assert env["LS_LOG"] == "info"  # the request lines are what is counted
    assert env["PATH"] == "/usr/bin"
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env


def test_the_command_binds_twisted_to_the_listen_address() -> None:
    command = server_command("/venv/bin/python")
    assert command[:2] == ["/venv/bin/python", "-c"]
    boot = command[2]
    compile(boot, "<boot>", "exec")
    assert "GATEWAY_LISTEN" in boot and "localstack.runtime.main" in boot


@pytest.mark.parametrize(
    ("line", "operation"),
    [
        (
            "2026-11-25T21:27:39.757  INFO --- [et.reactor-0] localstack.request.aws     : "
            "AWS sqs.SendMessageBatch => 200",
            "sqs.SendMessageBatch",
        ),
        (
            "2026-11-25T21:27:39.764  INFO --- [et.reactor-0] localstack.request.aws     : "
            "AWS sqs.GetQueueUrl => 400 (QueueDoesNotExist)",
            "sqs.GetQueueUrl",
        ),
        (
            "2026-11-25T21:32:03.695  INFO --- [et.reactor-0] localstack.request.http    : "
            "POST /?x=1 => 200",
            "http.POST /",
        ),
        ("... localstack.request.http    : GET /_localstack/health => 200", None),
        ("... localstack.utils.bootstrap : Execution of require took 813.05ms", None),
        ("Ready.", None),
    ],
)
def test_request_lines(line: str, operation: str | None) -> None:
    assert parse_request_line(line) == operation


def test_the_log_counts_requests_by_operation(tmp_path: Path) -> None:
    path = tmp_path / "localstack.log"
    log = EndpointLog(path, parse_request_line)
    assert log.poll() == 0  # no file yet
    path.write_text(
        "Ready.\n"
        "x localstack.request.aws : AWS sqs.ReceiveMessage => 200\n"
        "x localstack.request.aws : AWS sqs.ReceiveMessage => 200\n"
        "x localstack.request.aws : AWS sqs.DeleteMess"  # not a whole line yet
    )
    assert log.poll() == 2
    with path.open("a") as more:
        more.write("ageBatch => 200\n")
    assert log.poll() == 3
    assert log.operations() == {"sqs.ReceiveMessage": 2, "sqs.DeleteMessageBatch": 1}


def test_listening_sockets_are_read_from_proc() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert ("127.0.0.1", port) in listening_sockets([os.getpid()])


def test_unknown_endpoint_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="moto, localstack"):
        open_endpoint("nope", tmp_path)  # type: ignore[arg-type]


def test_a_made_venv_is_reused_without_looking_for_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = venv_dir(tmp_path)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "sqsbus-bench-ready.json").write_text("{}")

    def no_search(*args: object, **kwargs: object) -> str:
        raise AssertionError("looked for an interpreter although the venv is there")

    monkeypatch.setattr(localstack, "find_python", no_search)
    assert localstack.ensure_venv(tmp_path) == venv / "bin" / "python"


def _consume_run(endpoint_ops: dict[str, int], own_ops: dict[str, int]) -> dict[str, Any]:
    return {
        "consume/10": {
            "sqsbus": {
                "ok": True,
                "params": {"queues": 10},
                "details": {
                    "measured": {
                        "transport_requests": sum(endpoint_ops.values()),
                        "sqsbus_requests": sum(own_ops.values()),
                        "sqsbus_by_operation": own_ops,
                        "endpoint_by_operation": endpoint_ops,
                    }
                },
            }
        }
    }


def test_the_cross_check_allows_only_long_polls_in_flight() -> None:
    from bench.report import build_cross_check, format_cross_check

    in_flight = build_cross_check(
        _consume_run(
            {"sqs.ReceiveMessage": 52, "sqs.DeleteMessageBatch": 50},
            {"sqs.ReceiveMessage": 62, "sqs.DeleteMessageBatch": 50},
        )
    )
    assert in_flight[0]["differences"] == {"sqs.ReceiveMessage": [52, 62]}
    assert in_flight[0]["agrees"] is True
    assert "MISMATCH" not in format_cross_check(in_flight)

    lost_delete = build_cross_check(
        _consume_run(
            {"sqs.ReceiveMessage": 62, "sqs.DeleteMessageBatch": 49},
            {"sqs.ReceiveMessage": 62, "sqs.DeleteMessageBatch": 50},
        )
    )
    assert lost_delete[0]["agrees"] is False
    assert "DeleteMessageBatch 49/50  MISMATCH" in format_cross_check(lost_delete)
