"""The fault-injecting proxy (sqsbus.testing.proxy), against the session endpoint.

Clients talk to the proxy, assertions look at the endpoint directly (``sqs_client``), so a
test sees what really reached the endpoint, not what the proxy claims.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from kombu import Connection, Consumer, Message
from kombu_helpers import connect, counts, direct_queue, wait_until

from sqsbus.local import DEFAULT_REGION, LocalEndpoint
from sqsbus.testing.children import first_line
from sqsbus.testing.proxy import FAULT_KINDS, FaultProxy, Faults

CONNECTION_ERRORS = (ConnectionClosedError, EndpointConnectionError)


@pytest.fixture
def proxy(endpoint: LocalEndpoint) -> Iterator[FaultProxy]:
    with FaultProxy(endpoint.url, seed=1) as started:
        yield started


def client(proxy: FaultProxy, service: str, *, attempts: int = 3, mode: str = "standard") -> Any:
    """A boto3 client that talks to the endpoint through ``proxy``."""
    config = Config(retries={"total_max_attempts": attempts, "mode": mode})
    return boto3.client(service, endpoint_url=proxy.url, region_name=DEFAULT_REGION, config=config)


def make_queue(sqs_client: Any, name: str) -> str:
    return str(sqs_client.create_queue(QueueName=name)["QueueUrl"])


def bodies_in(sqs_client: Any, url: str) -> list[str]:
    """Every body in the queue (received with a long visibility, so each once)."""
    found: list[str] = []
    while True:
        answer = sqs_client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
        )
        messages = answer.get("Messages") or []
        if not messages:
            return found
        found += [m["Body"] for m in messages]


# -- Faults: validation (no endpoint) --------------------------------------------------------


def test_faults_reject_impossible_settings_with_the_field_named() -> None:
    with pytest.raises(ValueError, match=r"Faults\.throttle must be a probability"):
        Faults(throttle=1.5)
    with pytest.raises(ValueError, match=r"Faults\.latency_ms must be zero or more"):
        Faults(latency_ms=-1)
    with pytest.raises(ValueError, match="at most 1"):
        Faults(reset_before=0.5, reset_after=0.3, error=0.2, throttle=0.1)
    with pytest.raises(TypeError, match=r"frozenset\(\{'SendMessage'\}\)"):
        Faults(operations="SendMessage")  # type: ignore[arg-type]
    assert Faults(operations=["SendMessage"]).operations == frozenset({"SendMessage"})  # type: ignore[arg-type]


def test_proxy_rejects_an_upstream_it_cannot_reach_by_plain_http() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        FaultProxy("https://sqs.us-east-1.amazonaws.com")
    with pytest.raises(ValueError, match="no path"):
        FaultProxy("http://127.0.0.1:4566/queue")


def test_proxy_says_when_its_port_is_taken(proxy: FaultProxy) -> None:
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1 port {proxy.port}"):
        FaultProxy(proxy.upstream_url, port=proxy.port).start()


# -- forwarding and counting -----------------------------------------------------------------


def test_counts_exactly_the_requests_made_per_operation(proxy: FaultProxy, prefix: str) -> None:
    sqs, sns, s3 = client(proxy, "sqs"), client(proxy, "sns"), client(proxy, "s3")
    url = sqs.create_queue(QueueName=f"{prefix}counted")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="one")
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(3)]
    )
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(received["Messages"])
        ],
    )
    topic = sns.create_topic(Name=f"{prefix}counted")["TopicArn"]
    sns.publish(TopicArn=topic, Message="hello")
    bucket = f"{prefix}counted"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 200_000)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x" * 200_000

    assert proxy.request_counts() == {
        "sqs.CreateQueue": 1,
        "sqs.SendMessage": 1,
        "sqs.SendMessageBatch": 1,
        "sqs.ReceiveMessage": 1,
        "sqs.DeleteMessageBatch": 1,
        "sns.CreateTopic": 1,
        "sns.Publish": 1,
        "s3.PUT": 2,
        "s3.GET": 1,
    }
    assert proxy.total_requests == 10
    # Queue URLs the endpoint builds point at the proxy (the Host header is kept).
    assert url.startswith(proxy.url + "/")
    proxy.reset_counts()
    assert proxy.request_counts() == {}
    assert proxy.fault_counts() == dict.fromkeys(FAULT_KINDS, 0)


def test_latency_is_added_to_every_request(proxy: FaultProxy) -> None:
    sqs = client(proxy, "sqs")
    sqs.list_queues()  # connect first: only the added latency is timed
    proxy.faults = Faults(latency_ms=150)
    started = time.monotonic()
    for _ in range(3):
        sqs.list_queues()
    assert time.monotonic() - started >= 0.45


def test_faults_apply_only_to_the_chosen_operations(proxy: FaultProxy, prefix: str) -> None:
    sqs = client(proxy, "sqs", attempts=1)
    url = sqs.create_queue(QueueName=f"{prefix}only")["QueueUrl"]
    proxy.faults = Faults(throttle=1.0, operations=frozenset({"sqs.SendMessage"}))
    with pytest.raises(ClientError, match="RequestThrottled"):
        sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.get_queue_attributes(QueueUrl=url)  # not faulted
    proxy.faults = Faults(throttle=1.0, operations=frozenset({"GetQueueAttributes"}))
    sqs.send_message(QueueUrl=url, MessageBody="x")
    assert proxy.fault_counts()["throttle"] == 1


# -- throttling and errors, as botocore sees them --------------------------------------------


THROTTLING = {
    # service: (operation call, error code, HTTP status)
    "sqs": (lambda c: c.list_queues(), "RequestThrottled", 403),
    "sns": (lambda c: c.list_topics(), "Throttling", 400),
    "s3": (lambda c: c.list_buckets(), "SlowDown", 503),
}


@pytest.mark.parametrize(
    ("service", "mode"),
    [("sqs", "standard"), ("sqs", "legacy"), ("sns", "standard"), ("s3", "standard")],
)
def test_throttling_is_the_aws_error_botocore_retries(
    proxy: FaultProxy, service: str, mode: str
) -> None:
    operation, code, status = THROTTLING[service]
    aws = client(proxy, service, attempts=2, mode=mode)
    proxy.faults = Faults(throttle=1.0)
    with pytest.raises(ClientError) as raised:
        operation(aws)
    error = raised.value.response
    assert error["Error"]["Code"] == code
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["ResponseMetadata"]["RetryAttempts"] == 1  # botocore retried it
    assert proxy.total_requests == 2
    assert proxy.fault_counts()["throttle"] == 2

    # Throttled once, then the retry goes through.
    aws.meta.events.register("needs-retry", lambda **_: proxy.clear_faults())
    proxy.faults = Faults(throttle=1.0)
    answer = operation(aws)
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_sqs_throttling_raises_the_modeled_exception(proxy: FaultProxy) -> None:
    sqs = client(proxy, "sqs", attempts=1)
    proxy.faults = Faults(throttle=1.0)
    with pytest.raises(sqs.exceptions.RequestThrottled):
        sqs.list_queues()


def test_server_errors_are_500_or_503_and_retried(proxy: FaultProxy) -> None:
    sqs = client(proxy, "sqs", attempts=4)
    proxy.faults = Faults(error=1.0)
    with pytest.raises(ClientError) as raised:
        sqs.list_queues()
    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) in {
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
    }
    assert error["ResponseMetadata"]["RetryAttempts"] == 3
    assert proxy.fault_counts()["error"] == 4


# -- connection resets and outages -----------------------------------------------------------


def test_reset_before_forwarding_does_nothing_upstream(
    proxy: FaultProxy, prefix: str, sqs_client: Any
) -> None:
    url = make_queue(sqs_client, f"{prefix}reset-before")
    sqs = client(proxy, "sqs", attempts=1)
    proxy.faults = Faults(reset_before=1.0)
    with pytest.raises(CONNECTION_ERRORS):
        sqs.send_message(QueueUrl=url, MessageBody="never sent")
    assert bodies_in(sqs_client, url) == []
    assert proxy.fault_counts()["reset_before"] == 1


def test_reset_after_forwarding_loses_only_the_answer(
    proxy: FaultProxy, prefix: str, sqs_client: Any
) -> None:
    url = make_queue(sqs_client, f"{prefix}reset-after")
    sqs = client(proxy, "sqs", attempts=1)
    proxy.faults = Faults(reset_after=1.0)
    with pytest.raises(CONNECTION_ERRORS):
        sqs.send_message(QueueUrl=url, MessageBody="sent, answer lost")
    assert bodies_in(sqs_client, url) == ["sent, answer lost"]
    assert proxy.fault_counts()["reset_after"] == 1


def test_faults_are_counted_per_operation_with_the_entries_whose_answer_was_lost(
    proxy: FaultProxy, prefix: str, sqs_client: Any
) -> None:
    url = make_queue(sqs_client, f"{prefix}lost-batch")
    sqs = client(proxy, "sqs", attempts=1)
    proxy.faults = Faults(reset_after=1.0, operations=frozenset({"SendMessageBatch"}))
    entries = [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(7)]
    with pytest.raises(CONNECTION_ERRORS):
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])  # no fault: not counted
    # All 7 were stored, the sender heard of none: each would be sent again.
    assert len(bodies_in(sqs_client, url)) == 7
    assert proxy.fault_counts_by_operation() == {
        "sqs.SendMessageBatch": {"reset_after": 1, "reset_after_entries": 7}
    }


def test_outage_fails_requests_until_cleared(proxy: FaultProxy) -> None:
    sqs = client(proxy, "sqs", attempts=2)
    sqs.list_queues()
    proxy.start_outage()
    assert proxy.in_outage
    for _ in range(2):
        with pytest.raises(CONNECTION_ERRORS):
            sqs.list_queues()
    proxy.end_outage()
    sqs.list_queues()
    assert proxy.fault_counts()["outage"] >= 4

    proxy.start_outage(seconds=0.5)
    with pytest.raises(CONNECTION_ERRORS):
        sqs.list_queues()
    assert wait_until(lambda: not proxy.in_outage, timeout=5)
    sqs.list_queues()


def test_outage_cuts_requests_in_flight(proxy: FaultProxy, prefix: str, sqs_client: Any) -> None:
    url = make_queue(sqs_client, f"{prefix}long-poll")
    sqs = client(proxy, "sqs", attempts=1)
    outcome: list[BaseException | dict[str, Any]] = []

    def long_poll() -> None:
        try:
            outcome.append(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10))
        except Exception as exc:
            outcome.append(exc)

    poller = threading.Thread(target=long_poll)
    poller.start()
    assert wait_until(lambda: proxy.request_counts().get("sqs.ReceiveMessage") == 1, timeout=5)
    proxy.start_outage()
    poller.join(timeout=8)
    assert not poller.is_alive(), "the long poll was not cut by the outage"
    assert isinstance(outcome[0], CONNECTION_ERRORS)


# -- partial batch failures ------------------------------------------------------------------


def test_partial_send_batch_failure_sends_exactly_the_succeeded_entries(
    proxy: FaultProxy, prefix: str, sqs_client: Any
) -> None:
    url = make_queue(sqs_client, f"{prefix}partial-send")
    sqs = client(proxy, "sqs")
    proxy.faults = Faults(partial=1.0)
    succeeded: set[str] = set()
    failed: set[str] = set()
    for batch in range(5):
        entries = [{"Id": f"e{i}", "MessageBody": f"{batch}-{i}"} for i in range(10)]
        answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert answer["Failed"], "every batch fails some entries with partial=1"
        for entry in answer["Failed"]:
            assert entry["SenderFault"] is False
            assert entry["Code"] == "InternalError"
            failed.add(f"{batch}-{entry['Id'][1:]}")
        succeeded |= {f"{batch}-{entry['Id'][1:]}" for entry in answer["Successful"]}
    assert succeeded | failed == {f"{b}-{i}" for b in range(5) for i in range(10)}
    assert not succeeded & failed
    assert sorted(bodies_in(sqs_client, url)) == sorted(succeeded)
    assert proxy.fault_counts()["partial"] == 5
    assert proxy.fault_counts()["partial_entries"] == len(failed)


def test_partial_delete_and_visibility_failures_leave_exactly_the_failed_entries(
    proxy: FaultProxy, prefix: str, sqs_client: Any
) -> None:
    url = make_queue(sqs_client, f"{prefix}partial-settle")
    sqs_client.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(10)]
    )
    received: list[dict[str, Any]] = []
    while len(received) < 10:
        answer = sqs_client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60
        )
        received += answer.get("Messages") or []
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)]
    sqs = client(proxy, "sqs")
    proxy.faults = Faults(partial=1.0)

    shown = sqs.change_message_visibility_batch(
        QueueUrl=url, Entries=[{**e, "VisibilityTimeout": 0} for e in entries]
    )
    assert shown["Failed"]
    # Only the entries reported successful became visible again.
    assert wait_until(
        lambda: counts(sqs_client, url) == (len(shown["Successful"]), 10 - len(shown["Successful"]))
    )

    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    assert deleted["Failed"]
    visible, in_flight = counts(sqs_client, url)
    assert visible + in_flight == len(deleted["Failed"])


def test_chunked_and_100_continue_uploads_reach_the_endpoint_whole(
    proxy: FaultProxy, prefix: str
) -> None:
    s3 = client(proxy, "s3")
    bucket = f"{prefix}uploads"
    s3.create_bucket(Bucket=bucket)
    # botocore sends "Expect: 100-continue" with every PutObject body.
    s3.put_object(Bucket=bucket, Key="continued", Body=io.BytesIO(b"c" * 70_000))
    # A body of unknown length is sent chunked (botocore does so only for such bodies).
    upload = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    upload.request("PUT", f"/{bucket}/chunked", body=iter([b"abc", b"d" * 70_000]))
    answer = upload.getresponse()
    answer.read()
    upload.close()
    assert answer.status == 200
    assert s3.get_object(Bucket=bucket, Key="continued")["Body"].read() == b"c" * 70_000
    assert s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"abc" + b"d" * 70_000


# -- temporary credentials checked as AWS does ---------------------------------------------

ROLE_ARN = "arn:aws:iam::123456789012:role/sqsbus-proxy-test"
EXPIRED_MESSAGE = "The security token included in the request is expired"


def assume_role(proxy: FaultProxy) -> dict[str, Any]:
    """Credentials of a 15-minute session asked of STS through the proxy."""
    answer = client(proxy, "sts").assume_role(
        RoleArn=ROLE_ARN, RoleSessionName="proxy-test", DurationSeconds=900
    )
    return dict(answer["Credentials"])


def as_role(proxy: FaultProxy, service: str, credentials: dict[str, Any]) -> Any:
    """A client through ``proxy`` signing with temporary ``credentials`` (3 attempts)."""
    return boto3.client(
        service,
        endpoint_url=proxy.url,
        region_name=DEFAULT_REGION,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        config=Config(retries={"total_max_attempts": 3, "mode": "standard"}),
    )


def test_credential_check_settings(endpoint: LocalEndpoint, proxy: FaultProxy) -> None:
    assert not proxy.checks_credentials  # off by default: moto checks nothing
    with pytest.raises(RuntimeError, match="check_credentials=True"):
        proxy.expire_credentials()
    with pytest.raises(ValueError, match="session_seconds must be positive"):
        FaultProxy(endpoint.url, session_seconds=0)
    assert FaultProxy(endpoint.url, session_seconds=5).checks_credentials


def test_requests_with_an_ended_session_get_expired_token_and_are_not_forwarded(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with FaultProxy(endpoint.url, check_credentials=True) as proxy:
        credentials = assume_role(proxy)
        sqs = as_role(proxy, "sqs", credentials)
        url = sqs.create_queue(QueueName=f"{prefix}expiring")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="while valid")
        assert proxy.sessions_granted == 1

        assert proxy.expire_credentials() == 1  # as a revoked session or a late clock would
        with pytest.raises(ClientError) as raised:
            sqs.send_message(QueueUrl=url, MessageBody="after expiry")
        answer = raised.value.response
        assert answer["Error"]["Code"] == "ExpiredToken"
        assert answer["Error"]["Message"] == EXPIRED_MESSAGE
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert answer["ResponseMetadata"]["RetryAttempts"] == 0  # botocore does not retry it
        assert bodies_in(sqs_client, url) == ["while valid"]
        assert proxy.expired_token_counts() == {"sqs.SendMessage": 1}
        assert proxy.fault_counts()["expired_token"] == 1

        # Static keys and a new session pass.
        client(proxy, "sqs").send_message(QueueUrl=url, MessageBody="static keys")
        as_role(proxy, "sqs", assume_role(proxy)).send_message(QueueUrl=url, MessageBody="new")
        assert sorted(bodies_in(sqs_client, url)) == ["new", "static keys"]


@pytest.mark.parametrize(
    ("service", "operation", "status", "message"),
    [
        ("sns", lambda c: c.list_topics(), 403, EXPIRED_MESSAGE),
        ("sts", lambda c: c.get_caller_identity(), 403, EXPIRED_MESSAGE),
        ("s3", lambda c: c.list_buckets(), 400, "The provided token has expired."),
    ],
)
def test_expired_token_has_each_services_wire_shape(
    endpoint: LocalEndpoint, service: str, operation: Any, status: int, message: str
) -> None:
    with FaultProxy(endpoint.url, check_credentials=True) as proxy:
        aws = as_role(proxy, service, assume_role(proxy))
        operation(aws)
        proxy.expire_credentials()
        with pytest.raises(ClientError) as raised:
            operation(aws)
    answer = raised.value.response
    assert (answer["Error"]["Code"], answer["Error"]["Message"]) == ("ExpiredToken", message)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == status
    assert answer["ResponseMetadata"]["RetryAttempts"] == 0


def test_sessions_are_shortened_and_end_on_time(endpoint: LocalEndpoint) -> None:
    with FaultProxy(endpoint.url, session_seconds=2) as proxy:
        asked_at = datetime.datetime.now(datetime.UTC)
        credentials = assume_role(proxy)
        lifetime = (credentials["Expiration"] - asked_at).total_seconds()
        assert 0 < lifetime <= 2  # moto granted the 900 s asked for; the proxy 2 s
        sqs = as_role(proxy, "sqs", credentials)
        sqs.list_queues()

        def rejected() -> bool:
            try:
                sqs.list_queues()
            except ClientError as exc:
                return exc.response["Error"]["Code"] == "ExpiredToken"
            return False

        assert wait_until(rejected, timeout=10, interval=0.2)
        assert proxy.expired_token_counts() == {"sqs.ListQueues": 1}


# -- command line ----------------------------------------------------------------------------


@contextlib.contextmanager
def proxy_command(endpoint: LocalEndpoint, *flags: str) -> Iterator[tuple[str, str, list[str]]]:
    """Run ``python -m sqsbus.testing.proxy`` with ``flags``; yield its URL, its description
    line and a list that gets its output after the block (stopped with Ctrl-C)."""
    command = [sys.executable, "-m", "sqsbus.testing.proxy", "--upstream", endpoint.url, *flags]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    output: list[str] = []
    try:
        url = first_line(process, what="the proxy", timeout=30)
        assert url.startswith("http://127.0.0.1:"), url
        assert process.stdout is not None
        yield url, process.stdout.readline().decode(), output
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    assert process.returncode == 0, err.decode()
    output += [out.decode(), err.decode()]


def test_command_line_prints_its_url_and_the_counts(endpoint: LocalEndpoint) -> None:
    flags = ("--latency-ms", "1", "--throttle", "0", "--seed", "1")
    with proxy_command(endpoint, *flags) as (url, described, output):
        boto3.client("sqs", endpoint_url=url, region_name=DEFAULT_REGION).list_queues()
    text = output[0]
    assert f"forwarding to {endpoint.url}; faults: latency 1±0 ms; seed 1" in described
    assert "sqs.ListQueues" in text and "requests: 1" in text
    assert "testing" not in described + "".join(output)  # no credentials echoed


def test_command_line_shortens_sessions_and_reports_expired_tokens(
    endpoint: LocalEndpoint,
) -> None:
    with proxy_command(endpoint, "--session-seconds", "1") as (url, described, output):
        sts = boto3.client("sts", endpoint_url=url, region_name=DEFAULT_REGION)
        asked_at = datetime.datetime.now(datetime.UTC)
        granted = sts.assume_role(
            RoleArn=ROLE_ARN, RoleSessionName="cli-test", DurationSeconds=900
        )["Credentials"]
        answered_at = datetime.datetime.now(datetime.UTC)
        # At most 1 s after the proxy handed it out, which is between the two readings
        # (asked_at alone failed by the 20 ms the request took).
        assert granted["Expiration"] > asked_at
        assert (granted["Expiration"] - answered_at).total_seconds() <= 1
        sqs = boto3.client(
            "sqs",
            endpoint_url=url,
            region_name=DEFAULT_REGION,
            aws_access_key_id=granted["AccessKeyId"],
            aws_secret_access_key=granted["SecretAccessKey"],
            aws_session_token=granted["SessionToken"],
        )
        time.sleep(1.5)
        with pytest.raises(ClientError, match="ExpiredToken"):
            sqs.list_queues()
    assert "credentials checked, sessions of at most 1 s" in described
    assert "sessions handed out: 1; ExpiredToken answers: sqs.ListQueues 1" in output[0]
    everything = described + "".join(output)
    assert granted["SecretAccessKey"] not in everything
    assert granted["SessionToken"] not in everything


def test_command_line_reports_bad_settings(endpoint: LocalEndpoint) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sqsbus.testing.proxy", "--upstream", endpoint.url, "--reset", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--reset must be a probability between 0 and 1, not 2" in result.stderr


# -- sqsbus end to end -----------------------------------------------------------------------


def test_sqsbus_loses_no_message_through_throttling_partial_failures_and_resets(
    endpoint: LocalEndpoint, prefix: str, proxy: FaultProxy, sqs_client: Any
) -> None:
    total, publishers = 300, 4
    queue = direct_queue("chaos")
    # Short leases: a receive whose answer is lost (reset after forwarding) hides its
    # messages for one lease only; held messages get their leases extended under faults too.
    options = {"endpoint_url": proxy.url, "lease_seconds": 4}
    connections = [connect(endpoint, prefix, **options) for _ in range(publishers)]
    consumer_conn: Connection = connect(endpoint, prefix, **options)
    publish_errors: list[BaseException] = []
    received: Counter[int] = Counter()
    try:
        for conn in [*connections, consumer_conn]:
            queue(conn.default_channel).declare()
        proxy.faults = Faults(throttle=0.10, partial=0.10, reset_before=0.01, reset_after=0.01)

        def produce(conn: Connection, worker: int) -> None:
            with conn.Producer() as producer:
                for n in range(worker, total, publishers):
                    try:
                        producer.publish(
                            {"n": n}, exchange=queue.exchange, routing_key=queue.routing_key
                        )
                    except Exception as exc:
                        publish_errors.append(exc)

        threads = [
            threading.Thread(target=produce, args=(conn, worker))
            for worker, conn in enumerate(connections)
        ]
        for thread in threads:
            thread.start()

        def on_message(body: Any, message: Message) -> None:
            received[int(body["n"])] += 1
            message.ack()

        with Consumer(consumer_conn, [queue], callbacks=[on_message], prefetch_count=10):
            deadline = time.monotonic() + 90
            while len(received) < total and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    consumer_conn.drain_events(timeout=0.5)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for conn in [*connections, consumer_conn]:
            conn.close()
    faults = proxy.fault_counts()
    duplicates = sum(count - 1 for count in received.values())
    summary = (
        f"{len(received)} of {total} unique, {duplicates} duplicates; "
        f"{proxy.total_requests} requests; faults {faults}"
    )
    print(summary)
    assert not publish_errors, f"{publish_errors[:3]}; {summary}"
    assert set(received) == set(range(total)), (
        f"missing {set(range(total)) - set(received)}; {summary}"
    )
    # The run did meet the faults it claims to survive.
    assert faults["throttle"] > 0 and faults["partial"] > 0, summary
