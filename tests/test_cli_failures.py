"""What the operator commands say when they fail, run as the real ``sqsbus`` program.

Endpoints that misbehave are real TCP servers on threads of this test process: one that
accepts connections and never answers, one whose accept queue is full (connections time
out), and a web server answering an HTML error page, as a proxy in front of SQS would.
Each test asserts the line an operator reads: what went wrong, where, and the fix.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from kombu import Connection

from sqsbus.errors import ConfigurationError, SQSBusError
from sqsbus.local import LocalEndpoint

#: A secret that must never appear in any output.
CANARY_SECRET = "canary-SECRET-9c3d"
#: Seconds the program may take to start and print, on top of its own bound.
STARTUP_MARGIN = 8.0


def sqsbus(
    *args: str, stdin: int | None = subprocess.DEVNULL, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The ``sqsbus`` program, in the sanitised test environment (no broker of its own)."""
    return subprocess.run(
        [sys.executable, "-m", "sqsbus", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=stdin,
        env=dict(os.environ),
    )


def timed(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    result = sqsbus(*args)
    return time.monotonic() - started, result


def one_error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The program failed with exit status 1 and one line on stderr; that line."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sqsbus {command}: ")
    assert "Traceback" not in result.stderr
    return lines[0]


# -- endpoints that misbehave --------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        server.close()


@pytest.fixture
def full_backlog_port() -> Iterator[int]:
    """A TCP port whose accept queue is full: new connections wait until they time out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers: list[socket.socket] = []
    while True:  # Linux queues backlog + 1 connections, then drops SYNs
        filler = socket.socket()
        filler.settimeout(0.5)
        try:
            filler.connect(("127.0.0.1", port))
        except OSError:
            filler.close()
            break
        fillers.append(filler)
        assert len(fillers) < 64, "the accept queue never filled"
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


class HtmlErrorPage(http.server.BaseHTTPRequestHandler):
    """Answers every request with ``status`` and nginx's HTML error page."""

    status = 502
    page = (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
        b"</body>\r\n</html>\r\n"
    )

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def html_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A web server answering HTTP ``request.param`` with an HTML page."""
    handler = type("Handler", (HtmlErrorPage,), {"status": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def broker_at(port: int) -> str:
    return f"sqsbus://AKIDEXAMPLE:{CANARY_SECRET}@127.0.0.1:{port}"


# -- timeouts ------------------------------------------------------------------------------


def test_a_silent_endpoint_fails_within_the_timeout_naming_it_and_the_fix(
    silent_port: int,
) -> None:
    elapsed, result = timed("queues", "--broker", broker_at(silent_port), "--timeout", "2")
    line = one_error_line(result, "queues")
    assert f"no answer from http://127.0.0.1:{silent_port}/ within 2 s (2 attempts)" in line
    assert "it accepted the connection, then said nothing" in line
    assert "(from --broker)" in line and "--timeout SECONDS" in line
    assert CANARY_SECRET not in result.stderr + result.stdout
    # Two attempts of 2 s, the backoff between them (at most 2 s in botocore's standard mode).
    assert elapsed < 2 * 2 + 2 + STARTUP_MARGIN, elapsed

    elapsed, result = timed("peek", "work", "--broker", broker_at(silent_port))
    assert "within 10 s (2 attempts)" in one_error_line(result, "peek")
    assert elapsed < 2 * 10 + 2 + STARTUP_MARGIN, elapsed


def test_an_endpoint_that_does_not_accept_fails_within_the_timeout(
    full_backlog_port: int,
) -> None:
    elapsed, result = timed("queues", "--broker", broker_at(full_backlog_port), "--timeout", "2")
    line = one_error_line(result, "queues")
    assert f"could not connect to http://127.0.0.1:{full_backlog_port}/ within 2 s" in line
    assert "Check the host and port of the broker URL (from --broker)" in line
    assert "--timeout SECONDS" in line
    assert elapsed < 2 * 2 + 2 + STARTUP_MARGIN, elapsed


@pytest.mark.parametrize("value", ["1", "soon", "nan"])
def test_timeout_must_be_a_number_of_seconds_above_the_receive_wait(value: str) -> None:
    result = sqsbus("queues", "--timeout", value)
    assert result.returncode == 2
    assert "argument --timeout:" in result.stderr
    assert "must be at least 2 seconds" in result.stderr or "is not a number" in result.stderr


# -- answers that are not AWS's ------------------------------------------------------------


@pytest.mark.parametrize("html_port", [200, 403, 404, 502], indirect=True)
def test_an_html_answer_is_named_by_its_status_and_title_never_quoted(html_port: int) -> None:
    result = sqsbus("queues", "--broker", broker_at(html_port))
    line = one_error_line(result, "queues")
    assert "<" not in result.stderr and "nginx" not in result.stderr
    if "HTTP 502" in line:  # botocore reads a 5xx answer's status line, not its page
        assert "answered HTTP 502 (Bad Gateway) without an AWS error" in line
    else:  # the page says 502 whatever the status, as proxies' pages do; a 200 is no
        # more an answer than a 403 (botocore alone would read it as "no queues")
        assert "with an HTML page ('502 Bad Gateway'), not an AWS answer" in line
        assert any(f"HTTP {status} " in line for status in (200, 403, 404))


@pytest.mark.parametrize("html_port", [403], indirect=True)
def test_a_kombu_connection_names_the_html_page_too(html_port: int) -> None:
    conn = Connection(broker_at(html_port), transport_options={"region": "us-east-1"})
    with pytest.raises(SQSBusError) as raised:
        conn.connect()
    message = str(raised.value)
    assert "answered HTTP 403 with an HTML page ('502 Bad Gateway'), not an AWS answer" in message
    assert "<" not in message and CANARY_SECRET not in message


# -- regions -------------------------------------------------------------------------------


def test_a_misspelt_region_is_the_transports_region_error() -> None:
    conn = Connection(
        f"sqsbus://AKIDEXAMPLE:{CANARY_SECRET}@",
        transport_options={"region": "eu-wset-1", "client-config": {"connect_timeout": 2}},
    )
    with pytest.raises(ConfigurationError) as raised:
        conn.connect()
    kombu_says = str(raised.value)

    for args in (["--region", "eu-wset-1"], ["-o", "region=eu-wset-1"]):
        line = one_error_line(sqsbus("queues", *args), "queues")
        assert line == f"sqsbus queues: {kombu_says}"
        assert "region 'eu-wset-1' is not an AWS region botocore knows" in line
        assert "Check the 'region' transport option" in line


def test_a_misspelt_region_in_the_endpoint_host_is_named() -> None:
    result = sqsbus("queues", "--broker", "sqsbus://AKIDEXAMPLE:x@sqs.eu-wset-1.amazonaws.com")
    line = one_error_line(result, "queues")
    assert "region 'eu-wset-1' is not an AWS region botocore knows" in line
    assert "Check the host name of the endpoint URL" in line


def test_region_given_twice_must_agree() -> None:
    result = sqsbus("queues", "--region", "eu-west-1", "-o", "region=us-east-1")
    line = one_error_line(result, "queues")
    assert "--region eu-west-1 and -o region=us-east-1 disagree; give the region once" in line


# -- hints where the fix is known ----------------------------------------------------------


@pytest.mark.parametrize("secret", ["wJalr/K7MDENG", "1234/K7MDENG", "wJalr#K7MDENG"])
def test_an_unquoted_slash_in_the_secret_gets_the_quoting_hint(secret: str) -> None:
    result = sqsbus("queues", "--broker", f"sqsbus://AKIDEXAMPLE:{secret}@127.0.0.1:1")
    line = one_error_line(result, "queues")
    assert "the broker URL is malformed" in line
    assert "URL-quote the secret key in the broker URL: '/' as %2F and '+' as %2B" in line
    assert "K7MDENG" not in result.stderr


def test_a_secret_with_a_decoded_plus_gets_the_quoting_hint(
    authenticating_endpoint: LocalEndpoint,
) -> None:
    iam = boto3.client("iam", endpoint_url=authenticating_endpoint.url, region_name="us-east-1")
    iam.create_user(UserName="operator")
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    secret = str(key["SecretAccessKey"])
    # What a '+' of the secret becomes where a URL is decoded as a form: a space.
    mangled = f"{secret[:20]} {secret[21:]}"
    at = f"@127.0.0.1:{authenticating_endpoint.port}"
    url = f"sqsbus://{key['AccessKeyId']}:{quote(mangled, safe='')}{at}"

    line = one_error_line(sqsbus("queues", "--broker", url), "queues")
    assert "AWS rejected the credentials" in line
    assert "Likely cause: the secret key in the broker URL has a space" in line
    assert "'+' as %2B" in line
    assert secret[:20] not in line and secret[21:] not in line

    # Quoted, the same secret signs: the user has no permission yet, and the error says so
    # in one line of text (the endpoint's XML error reduced to its message).
    right = f"sqsbus://{key['AccessKeyId']}:{quote(secret, safe='')}{at}"
    line = one_error_line(sqsbus("queues", "--broker", right), "queues")
    assert "list queues: access denied (User: arn:aws:iam::" in line
    assert "is not authorized to perform: sqs:ListQueues)" in line
    assert "<" not in line


def test_purge_without_yes_and_without_a_terminal_says_to_pass_yes(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str, tmp_path: Path
) -> None:
    url = sqs_client.create_queue(QueueName=prefix + "keep")["QueueUrl"]
    sqs_client.send_message(QueueUrl=url, MessageBody="precious")
    args = ("purge", "keep", "--broker", endpoint.broker_url(), "-o", f"queue_name_prefix={prefix}")

    result = sqsbus(*args)  # stdin is /dev/null: nobody can answer
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "sqsbus purge: aborted; nothing was purged "
        "(stdin is not a terminal: pass -y to purge unasked)"
    )
    attributes = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"


def test_an_option_value_meant_as_json_says_where_it_is_not_valid() -> None:
    # What the shell leaves of -o predefined_queues={"celery": {"url": "..."}} unquoted.
    result = sqsbus(
        "queues", "--broker", broker_at(1), "-o", "predefined_queues={celery: {url: https://q}}"
    )
    line = one_error_line(result, "queues")
    assert "option 'predefined_queues': the value is not valid JSON" in line
    assert "Expecting property name enclosed in double quotes at line 1 column 2" in line
    assert "quote it for the shell" in line
