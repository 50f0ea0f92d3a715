"""Unit tests of ``sqsbus.aws``: error translation and request counting.

Pure: botocore exceptions are built by hand; no client, no endpoint, no network.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from sqsbus.aws import RequestStats, call, translate_error
from sqsbus.errors import (
    AccessDeniedError,
    CredentialsError,
    QueueDoesNotExist,
    SQSBusError,
    TransientError,
)


def client_error(code: str, status: int = 400, message: str = "details") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "ReceiveMessage")


# -- ClientError codes ----------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "OverLimit",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "KMS.ThrottlingException",
        "RequestTimeout",
    ],
)
def test_throttling_is_transient(code: str) -> None:
    error = translate_error(client_error(code), "receive from queue 'q'")
    assert isinstance(error, TransientError)
    assert isinstance(error, ConnectionError)  # Kombu reconnects and retries on these
    assert code in str(error)
    assert "receive from queue 'q'" in str(error)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
        ("SomethingNew", 500),
        ("", 502),
        ("WeirdGateway", 504),
    ],
)
def test_server_errors_are_transient(code: str, status: int) -> None:
    assert isinstance(translate_error(client_error(code, status), "send"), TransientError)


@pytest.mark.parametrize(
    "code",
    [
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "MissingAuthenticationToken",
    ],
)
def test_credential_codes_raise_credentials_error(code: str) -> None:
    error = translate_error(client_error(code, 403), "list queues")
    assert isinstance(error, CredentialsError)
    assert not isinstance(error, TransientError)  # retrying will not help
    assert code in str(error)
    assert "credential" in str(error).lower()


@pytest.mark.parametrize("code", ["ExpiredToken", "ExpiredTokenException", "RequestExpired"])
def test_expired_credentials_say_how_to_get_fresh_ones(code: str) -> None:
    error = translate_error(client_error(code, 403), "send to queue 'jobs'")
    assert isinstance(error, CredentialsError)
    assert f"as expired ({code})" in str(error)
    assert "sts_role_arn" in str(error) and "clock" in str(error)


@pytest.mark.parametrize("code", ["AccessDenied", "AccessDeniedException"])
def test_access_denied(code: str) -> None:
    error = translate_error(
        client_error(code, 403, "not authorized to perform sqs:SendMessage"), "send to 'q'"
    )
    assert isinstance(error, AccessDeniedError)
    assert "sqs:SendMessage" in str(error)
    assert "IAM" in str(error)


@pytest.mark.parametrize(
    "code", ["AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"]
)
def test_missing_queue(code: str) -> None:
    error = translate_error(client_error(code), "look up queue 'orders'")
    assert isinstance(error, QueueDoesNotExist)
    assert "'orders'" in str(error)


def test_other_client_errors_are_sqsbus_errors_with_code_and_message() -> None:
    error = translate_error(
        client_error("InvalidParameterValue", 400, "Value 30 for WaitTimeSeconds is invalid"),
        "receive from queue 'q'",
    )
    assert type(error) is SQSBusError
    text = str(error)
    assert "InvalidParameterValue" in text
    assert "WaitTimeSeconds" in text
    assert "receive from queue 'q'" in text


def test_client_error_without_message_shows_code() -> None:
    error = translate_error(client_error("OddCode", 400, ""), "act")
    assert "OddCode" in str(error)


def test_sqsbus_errors_pass_through_unchanged() -> None:
    original = QueueDoesNotExist("gone")
    assert translate_error(original, "anything") is original


# -- botocore transport errors --------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com/"),
        ReadTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com/"),
        ConnectTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com/"),
        ConnectionResetError("connection reset by peer"),
    ],
)
def test_network_failures_are_transient(exc: Exception) -> None:
    error = translate_error(exc, "receive from queue 'q'")
    assert isinstance(error, TransientError)
    assert "receive from queue 'q'" in str(error)
    assert type(exc).__name__ in str(error)


@pytest.mark.parametrize(
    "exc", [NoCredentialsError(), PartialCredentialsError(provider="env", cred_var="secret")]
)
def test_missing_credentials_say_how_to_fix(exc: Exception) -> None:
    error = translate_error(exc, "connect to SQS")
    assert isinstance(error, CredentialsError)
    text = str(error)
    assert "connect to SQS" in text
    assert "sqsbus://KEY:SECRET@" in text
    assert "AWS_ACCESS_KEY_ID" in text
    assert "profile" in text


def test_unexpected_exception_becomes_sqsbus_error() -> None:
    error = translate_error(RuntimeError("boom"), "act")
    assert type(error) is SQSBusError
    assert "RuntimeError" in str(error)
    assert "boom" in str(error)


# -- call() ---------------------------------------------------------------------


class FakeClient:
    """Records calls; raises ``fail`` if given."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_queue_url(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("get_queue_url", kwargs))
        if self.fail is not None:
            raise self.fail
        return {"QueueUrl": f"https://sqs.example/{kwargs['QueueName']}"}


def test_call_passes_parameters_and_returns_answer() -> None:
    client = FakeClient()
    answer = call(client, "get_queue_url", "look up", QueueName="orders")
    assert answer == {"QueueUrl": "https://sqs.example/orders"}
    assert client.calls == [("get_queue_url", {"QueueName": "orders"})]


def test_call_translates_client_errors_and_keeps_the_cause() -> None:
    original = client_error("AWS.SimpleQueueService.NonExistentQueue")
    with pytest.raises(QueueDoesNotExist) as caught:
        call(FakeClient(original), "get_queue_url", "look up queue 'orders'", QueueName="orders")
    assert caught.value.__cause__ is original


def test_call_translates_network_errors() -> None:
    failing = FakeClient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    with pytest.raises(TransientError):
        call(failing, "get_queue_url", "look up", QueueName="orders")


# -- RequestStats ---------------------------------------------------------------


def test_stats_count_calls_per_operation_and_queue() -> None:
    stats = RequestStats()
    stats.record_call("sqs.ReceiveMessage", "https://q/a")
    stats.record_call("sqs.ReceiveMessage", "https://q/a")
    stats.record_call("sqs.ReceiveMessage", "https://q/b")
    stats.record_call("sqs.ListQueues", None)
    assert stats.calls() == {"sqs.ReceiveMessage": 3, "sqs.ListQueues": 1}
    assert stats.per_queue() == {
        ("sqs.ReceiveMessage", "https://q/a"): 2,
        ("sqs.ReceiveMessage", "https://q/b"): 1,
    }


def test_stats_count_http_requests_separately() -> None:
    stats = RequestStats()
    stats.record_call("sqs.SendMessage", "https://q/a")
    for _ in range(3):  # botocore retried twice
        stats.record_http("sqs.SendMessage")
    stats.record_http("sqs.DeleteMessageBatch")
    assert stats.calls() == {"sqs.SendMessage": 1}
    assert stats.http_requests() == {"sqs.SendMessage": 3, "sqs.DeleteMessageBatch": 1}
    assert stats.total_http_requests == 4


def test_stats_snapshots_are_copies() -> None:
    stats = RequestStats()
    stats.record_call("sqs.SendMessage", None)
    snapshot = stats.calls()
    snapshot["sqs.SendMessage"] = 100
    assert stats.calls() == {"sqs.SendMessage": 1}


def test_stats_are_exact_under_concurrency() -> None:
    stats = RequestStats()
    threads_count, per_thread = 8, 2_000
    start = threading.Barrier(threads_count)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            stats.record_call("sqs.ReceiveMessage", "https://q/a")
            stats.record_http("sqs.ReceiveMessage")

    threads = [threading.Thread(target=work) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = threads_count * per_thread
    assert stats.calls() == {"sqs.ReceiveMessage": expected}
    assert stats.per_queue() == {("sqs.ReceiveMessage", "https://q/a"): expected}
    assert stats.total_http_requests == expected


def test_parent_aggregates_children() -> None:
    parent = RequestStats()
    first, second = RequestStats(parent=parent), RequestStats(parent=parent)
    first.record_call("sqs.SendMessage", "https://q/a")
    second.record_call("sqs.SendMessage", "https://q/b")
    second.record_http("sqs.SendMessage")
    assert first.calls() == {"sqs.SendMessage": 1}
    assert second.calls() == {"sqs.SendMessage": 1}
    assert parent.calls() == {"sqs.SendMessage": 2}
    assert parent.per_queue() == {
        ("sqs.SendMessage", "https://q/a"): 1,
        ("sqs.SendMessage", "https://q/b"): 1,
    }
    assert parent.total_http_requests == 1


def test_parent_aggregation_is_exact_under_concurrency() -> None:
    parent = RequestStats()
    children = [RequestStats(parent=parent) for _ in range(4)]

    def work(child: RequestStats) -> None:
        for _ in range(1_000):
            child.record_http("sqs.ReceiveMessage")

    threads = [threading.Thread(target=work, args=(child,)) for child in children]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert parent.total_http_requests == 4_000
    assert all(child.total_http_requests == 1_000 for child in children)


def test_reset_clears_only_that_instance() -> None:
    parent = RequestStats()
    child = RequestStats(parent=parent)
    child.record_call("sqs.SendMessage", "https://q/a")
    child.record_http("sqs.SendMessage")
    child.reset()
    assert child.calls() == {}
    assert child.per_queue() == {}
    assert child.http_requests() == {}
    assert child.total_http_requests == 0
    assert parent.calls() == {"sqs.SendMessage": 1}
    child.record_call("sqs.SendMessage", None)
    assert child.calls() == {"sqs.SendMessage": 1}
    assert parent.calls() == {"sqs.SendMessage": 2}
