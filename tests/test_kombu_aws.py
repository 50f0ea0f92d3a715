"""Credentials, STS, botocore config, unreachable endpoints, secrets — through Kombu."""

from __future__ import annotations

import http.server
import logging
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from kombu import Connection
from kombu_helpers import connect, consume, direct_queue, publish

from sqsbus.errors import ConfigurationError, CredentialsError, TransientError
from sqsbus.local import LocalEndpoint
from sqsbus.testing.proxy import FaultProxy

ROLE_ARN = "arn:aws:iam::123456789012:role/sqsbus-test"
CANARY_SECRET = "canary-SECRET-4f1e"
CANARY_TOKEN = "canary-TOKEN-9b2c"


def credentials_of(client: Any) -> Any:
    return client._request_signer._credentials


def test_sts_role_is_assumed_once_for_every_client(endpoint: LocalEndpoint, prefix: str) -> None:
    with connect(endpoint, prefix, sts_role_arn=ROLE_ARN, sts_token_timeout=900) as conn:
        queue = direct_queue("sts")
        publish(conn, queue, ["as role"])
        [(body, _)] = consume(conn, [queue], 1)
        assert body == "as role"
        assert conn.transport.stats.calls()["sts.AssumeRole"] == 1
        credentials = credentials_of(conn.transport.aws.client("sqs"))
        assert credentials.method == "sts-assume-role"
        assert credentials.get_frozen_credentials().access_key != "testing"
        # 900 s granted: renewed 90 s before expiry.
        assert (credentials.expiry - credentials.renew_at).total_seconds() == pytest.approx(
            90, abs=1
        )


def test_short_sessions_are_renewed_before_they_expire(
    endpoint: LocalEndpoint, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Asked for 900 s, granted 4 s by the proxy, which refuses expired credentials as AWS does.
    queue = direct_queue("renewed")
    sent: list[str] = []
    received: list[str] = []
    with (
        caplog.at_level(logging.DEBUG),
        FaultProxy(endpoint.url, session_seconds=4) as proxy,
        connect(endpoint, prefix, endpoint_url=proxy.url, sts_role_arn=ROLE_ARN) as conn,
    ):
        while proxy.request_counts().get("sts.AssumeRole", 0) < 4:
            body = f"message {len(sent)}"
            publish(conn, queue, [body])
            sent.append(body)
            received += [body for body, _ in consume(conn, [queue], 1)]
        frozen = credentials_of(conn.transport.aws.client("sqs")).get_frozen_credentials()
    assert received == sent
    assert proxy.expired_token_counts() == {}  # renewed ahead of expiry every time
    assert frozen.secret_key not in caplog.text
    assert frozen.token not in caplog.text


def test_credentials_rejected_as_expired_are_renewed_and_the_call_retried(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    queue = direct_queue("revoked")
    with (
        FaultProxy(endpoint.url, check_credentials=True) as proxy,
        connect(endpoint, prefix, endpoint_url=proxy.url, sts_role_arn=ROLE_ARN) as conn,
    ):
        publish(conn, queue, ["before"])
        # The session ends long before its expiry (revoked, or this host's clock is late).
        proxy.expire_credentials()
        publish(conn, queue, ["after"])
        assert proxy.expired_token_counts() == {"sqs.SendMessageBatch": 1}
        assert proxy.request_counts()["sts.AssumeRole"] == 2
        assert sorted(body for body, _ in consume(conn, [queue], 2)) == ["after", "before"]


def test_static_credentials_rejected_as_expired_are_a_clear_error(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    with FaultProxy(endpoint.url, check_credentials=True) as proxy:
        sts = boto3.client("sts", endpoint_url=proxy.url, region_name="us-east-1")
        keys = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="static-test")["Credentials"]
        url = f"sqsbus://{keys['AccessKeyId']}:{quote(keys['SecretAccessKey'], safe='')}@x"
        options = {
            "endpoint_url": proxy.url,
            "session_token": keys["SessionToken"],
            "queue_name_prefix": prefix,
        }
        with Connection(url, transport_options=options) as conn:
            publish(conn, direct_queue("static"), ["valid"])
            proxy.expire_credentials()
            with pytest.raises(CredentialsError, match=r"as expired \(ExpiredToken\)"):
                publish(conn, direct_queue("static"), ["expired"])
        assert proxy.expired_token_counts() == {"sqs.SendMessageBatch": 1}  # not retried
        assert proxy.request_counts()["sts.AssumeRole"] == 1  # nothing to renew


def test_session_token_is_used(endpoint: LocalEndpoint, prefix: str) -> None:
    with connect(endpoint, prefix, session_token=CANARY_TOKEN) as conn:
        publish(conn, direct_queue("tok"), ["x"])
        credentials = credentials_of(conn.transport.aws.client("sqs"))
        assert credentials.token == CANARY_TOKEN
        assert CANARY_TOKEN not in repr(conn.transport.options)


def test_client_config_reaches_botocore(endpoint: LocalEndpoint, prefix: str) -> None:
    options = {"client-config": {"connect_timeout": 3, "retries": {"max_attempts": 2}}}
    with connect(endpoint, prefix, **options) as conn:
        client = conn.transport.aws.client("sqs")
        assert client.meta.config.connect_timeout == 3
        # Room for the long polls of many queues, unless client-config says otherwise.
        assert client.meta.config.max_pool_connections == 64


def test_bad_option_fails_at_connect_with_a_clear_message(endpoint: LocalEndpoint) -> None:
    conn = Connection(endpoint.broker_url(), transport_options={"wait_time_second": 5})
    with pytest.raises(ConfigurationError, match="did you mean 'wait_time_seconds'"):
        conn.connect()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_endpoint_is_a_connection_error() -> None:
    conn = Connection(
        f"sqsbus://k:s@127.0.0.1:{free_port()}",
        transport_options={"client-config": {"retries": {"max_attempts": 1}, "connect_timeout": 1}},
    )
    with pytest.raises(TransientError, match="cannot reach the endpoint") as raised:
        conn.connect()
    assert isinstance(raised.value, conn.connection_errors)


def test_missing_credentials_are_explained(
    endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    conn = Connection("sqsbus://", transport_options={"endpoint_url": endpoint.url})
    with pytest.raises(CredentialsError, match="no AWS credentials found"):
        conn.connect()


def test_secrets_never_appear_in_reprs_errors_or_debug_logs(
    endpoint: LocalEndpoint, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqsbus://testing:{CANARY_SECRET}@127.0.0.1:{endpoint.port}"
    options = {"queue_name_prefix": prefix, "session_token": CANARY_TOKEN, "wait_time_seconds": 1}
    with caplog.at_level(logging.DEBUG):
        with Connection(url, transport_options=options) as conn:
            publish(conn, direct_queue("canary"), ["x"])
            consume(conn, [direct_queue("canary")], 1)
            shown = [
                repr(conn),
                conn.as_uri(),
                repr(conn.transport.options),
                str(conn.transport.options),
            ]
        with pytest.raises(ConfigurationError) as raised:
            Connection(url, transport_options={**options, "session_token": 12}).connect()
        shown.append(str(raised.value))
    text = "\n".join([*shown, caplog.text])
    assert CANARY_SECRET not in text
    assert CANARY_TOKEN not in text


#: Prints temporary credentials whose session token is the text of the file it is given.
#: They expire in 5 minutes, within botocore's mandatory refresh window: botocore runs the
#: process again before signing every request, so a new token signs the next request.
CREDENTIAL_PROCESS = """
import datetime, json, pathlib, sys
token = pathlib.Path(sys.argv[1]).read_text().strip()
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
print(json.dumps({"Version": 1, "AccessKeyId": "ASIACANARY", "SecretAccessKey": token + "-key",
                  "SessionToken": token, "Expiration": expiry.isoformat()}))
"""


@pytest.fixture
def process_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default credential chain runs a ``credential_process`` of an AWS config profile;
    write a token to the returned file to have it refreshed to that token."""
    script, token_file = tmp_path / "credentials.py", tmp_path / "token"
    script.write_text(CREDENTIAL_PROCESS)
    command = shlex.join([sys.executable, str(script), str(token_file)])
    config = tmp_path / "config"
    config.write_text(f"[profile canary]\ncredential_process = {command}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "canary")
    return token_file


def test_refreshed_session_tokens_never_appear_in_debug_logs(
    endpoint: LocalEndpoint,
    prefix: str,
    process_credentials: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = "canary-REFRESHED-TOKEN-1a7e", "canary-REFRESHED-TOKEN-2c9d"
    queue = direct_queue("refreshed")
    process_credentials.write_text(first)
    options = {"endpoint_url": endpoint.url, "queue_name_prefix": prefix, "wait_time_seconds": 1}
    with caplog.at_level(logging.DEBUG), Connection("sqsbus://", transport_options=options) as conn:
        publish(conn, queue, ["first"])
        process_credentials.write_text(second)
        publish(conn, queue, ["second"])
        assert sorted(body for body, _ in consume(conn, [queue], 2)) == ["first", "second"]
        credentials = credentials_of(conn.transport.aws.client("sqs"))
        assert credentials.method == "custom-process"
        assert credentials.get_frozen_credentials().token == second
    for canary in (first, second):
        assert canary not in caplog.text  # nor its secret key, "<canary>-key"
    # Requests signed with a session token (other threads of the process, e.g. the expiry
    # keeper, may sign with the environment's static keys meanwhile, without one).
    signed = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("Canonical") and "x-amz-security-token:" in r.getMessage()
    ]
    assert signed and all("x-amz-security-token:***" in text for text in signed)


def test_base_credentials_of_an_assumed_role_never_appear_in_debug_logs(
    endpoint: LocalEndpoint,
    prefix: str,
    process_credentials: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = "canary-BASE-TOKEN-3f0b", "canary-BASE-TOKEN-4e6a"
    process_credentials.write_text(first)
    options = {"endpoint_url": endpoint.url, "queue_name_prefix": prefix, "sts_role_arn": ROLE_ARN}
    with caplog.at_level(logging.DEBUG), Connection("sqsbus://", transport_options=options) as conn:
        publish(conn, direct_queue("base"), ["x"])
        process_credentials.write_text(second)
        credentials_of(conn.transport.aws.client("sqs")).renew()  # signed with the second
        assert conn.transport.stats.calls()["sts.AssumeRole"] == 2
    assert "AssumeRole" in caplog.text
    for canary in (first, second):
        assert canary not in caplog.text


@pytest.fixture
def untrusted_https_endpoint(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate nobody trusts."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_certificates_are_verified_by_default(untrusted_https_endpoint: str) -> None:
    """Even on a loopback address, an https endpoint must present a trusted certificate."""
    conn = Connection(
        "sqsbus://k:s@",
        transport_options={
            "endpoint_url": untrusted_https_endpoint,
            "client-config": {"retries": {"max_attempts": 0}, "connect_timeout": 2},
        },
    )
    with pytest.raises(ConfigurationError, match="TLS certificate could not be verified"):
        conn.connect()
