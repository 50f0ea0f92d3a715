"""``sqsbus top`` as a program against the endpoint: counts, dead-letter queues, the request
budget (counted at the wire by a proxy), CloudWatch's figures and its missing permission,
hostile names, and the live screen in a pseudo-terminal (redraw, resize, Ctrl-C)."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from sqsbus.admin.cloudwatch import QueueMetrics, read_sqs_metrics
from sqsbus.local import DEFAULT_REGION, LocalEndpoint
from sqsbus.testing.proxy import FaultProxy, Faults

ESC = "\x1b"
#: ``python -m sqsbus`` with Ctrl-C's default action back: a shell's background job (``./dev
#: test &``) ignores SIGINT, and its children inherit that, so Ctrl-C would not reach them.
SQSBUS = (
    sys.executable,
    "-c",
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('sqsbus', run_name='__main__', alter_sys=True)",
)


def on(endpoint: LocalEndpoint, prefix: str) -> list[str]:
    """The options naming the endpoint and this test's queue prefix."""
    return ["-b", endpoint.broker_url(), "-o", f"queue_name_prefix={prefix}"]


def sqsbus(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SQSBUS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def top(broker: str, prefix: str, *args: str) -> Any:
    """``sqsbus top --once --json`` on this test's queues: the one JSON document."""
    result = sqsbus(
        "top", "--once", "--json", *args, "-b", broker, "-o", f"queue_name_prefix={prefix}"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def through(proxy: FaultProxy, endpoint: LocalEndpoint, prefix: str) -> list[str]:
    """The options naming the endpoint behind ``proxy`` and this test's queue prefix."""
    broker = endpoint.broker_url().replace(endpoint.url.split("//", 1)[1], proxy.url[7:])
    return ["-b", broker, "-o", f"queue_name_prefix={prefix}"]


def make_jobs_with_dead_letters(sqs_client: Any, prefix: str) -> tuple[str, str]:
    """``jobs`` (dead letters to ``jobs-dlq`` after 3 receives) holding 4 visible, 2 in
    flight and 1 delayed message; ``jobs-dlq`` holding 1. Both URLs."""
    dlq = sqs_client.create_queue(QueueName=f"{prefix}jobs-dlq")["QueueUrl"]
    arn = sqs_client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    policy = {"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": "3"}
    jobs = sqs_client.create_queue(
        QueueName=f"{prefix}jobs", Attributes={"RedrivePolicy": json.dumps(policy)}
    )["QueueUrl"]
    for number in range(6):
        sqs_client.send_message(QueueUrl=jobs, MessageBody=f"job {number}")
    sqs_client.send_message(QueueUrl=jobs, MessageBody="later", DelaySeconds=300)
    held = sqs_client.receive_message(QueueUrl=jobs, MaxNumberOfMessages=2, VisibilityTimeout=300)
    assert len(held["Messages"]) == 2
    sqs_client.send_message(QueueUrl=dlq, MessageBody="dead")
    return jobs, dlq


def test_once_shows_the_counts_and_marks_the_dead_letter_queue(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    make_jobs_with_dead_letters(sqs_client, prefix)
    sqs_client.create_queue(QueueName=f"{prefix}idle")

    document = top(endpoint.broker_url(), prefix)
    by_name = {queue["name"]: queue for queue in document["queues"]}
    assert set(by_name) == {"jobs", "jobs-dlq", "idle"}
    jobs, dlq = by_name["jobs"], by_name["jobs-dlq"]
    assert (jobs["visible"], jobs["in_flight"], jobs["delayed"]) == (4, 2, 1)
    assert (dlq["visible"], dlq["in_flight"], dlq["delayed"]) == (1, 0, 0)
    assert dlq["dead_letter_queue"] is True
    assert dlq["dead_letter_for"] == [f"{prefix}jobs"]
    assert jobs["dead_letter_queue"] is False
    assert jobs["dead_letters_to"] == f"{prefix}jobs-dlq"
    assert by_name["idle"]["dead_letter_queue"] is False
    assert jobs["net_per_second"] is None  # one refresh: no change to measure yet
    assert document["cloudwatch"] == {"enabled": False}

    shown = sqsbus(
        "top", "--once", "-b", endpoint.broker_url(), "-o", f"queue_name_prefix={prefix}"
    )
    assert shown.returncode == 0, shown.stderr
    assert ESC not in shown.stdout  # not a terminal: no colour, no cursor movement
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line}
    assert rows["QUEUE"][:5] == ["QUEUE", "VISIBLE", "IN", "FLIGHT", "DELAYED"]
    assert rows["jobs"][:5] == ["jobs", "4", "2", "1", "-"]
    assert rows["jobs-dlq"][:6] == ["jobs-dlq", "1", "0", "0", "-", "DLQ"]
    assert "DLQ" not in rows["idle"]
    assert "3 queue(s): 5 visible, 2 in flight, 1 delayed" in shown.stdout
    assert "1 dead-letter queue(s) holding 1 message(s)" in shown.stdout
    assert "cost: 3 GetQueueAttributes per refresh" in shown.stdout


def test_the_redrive_policy_option_names_dead_letter_queues(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    """A DLQ that no listed queue points at yet (its sources are elsewhere, or not yet
    created) is still marked when it is the one the transport's option names."""
    sqs_client.create_queue(QueueName=f"{prefix}graveyard")
    sqs_client.create_queue(QueueName=f"{prefix}work")
    option = json.dumps({"dead_letter_queue": "graveyard", "max_receive_count": 5})
    document = top(endpoint.broker_url(), prefix, "-o", f"redrive_policy={option}")
    marked = {queue["name"]: queue["dead_letter_queue"] for queue in document["queues"]}
    assert marked == {"graveyard": True, "work": False}


def test_refreshes_report_the_net_change_per_second(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    url = sqs_client.create_queue(QueueName=f"{prefix}growing")["QueueUrl"]
    process = subprocess.Popen(
        [*SQSBUS, "top", "--json", "-n", "2", "-i", "2", *on(endpoint, prefix)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = json.loads(process.stdout.readline())
    for number in range(10):
        sqs_client.send_message(QueueUrl=url, MessageBody=str(number))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    second = json.loads(out.splitlines()[0])
    assert first["queues"][0]["net_per_second"] is None
    assert second["queues"][0]["visible"] == 10
    seconds = (
        datetime.datetime.fromisoformat(second["time"])
        - datetime.datetime.fromisoformat(first["time"])
    ).total_seconds()
    # 10 more messages over about 2 s (the reads' own times, not the documents', count).
    assert 10 / (seconds + 0.5) <= second["queues"][0]["net_per_second"] <= 10 / (seconds - 0.5)


def test_requests_stay_within_the_budget(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    for number in range(12):
        sqs_client.create_queue(QueueName=f"{prefix}q{number:02d}")
    with FaultProxy(endpoint.url) as proxy:
        once = sqsbus("top", "--once", "--json", *through(proxy, endpoint, prefix))
        assert once.returncode == 0, once.stderr
        assert proxy.request_counts() == {"sqs.ListQueues": 1, "sqs.GetQueueAttributes": 12}
        assert json.loads(once.stdout)["requests"]["this_refresh"] == {
            "sqs.GetQueueAttributes": 12,
            "sqs.ListQueues": 1,
        }
        assert json.loads(once.stdout)["budget"]["get_queue_attributes_per_refresh"] == 12

        proxy.reset_counts()
        live = sqsbus(
            "top",
            "--json",
            "-n",
            "3",
            "-i",
            "0.1",
            "--max-requests-per-second",
            "10",
            *through(proxy, endpoint, prefix),
        )
        assert live.returncode == 0, live.stderr
        # ListQueues once a minute, not once a refresh; one GetQueueAttributes per queue.
        assert proxy.request_counts() == {"sqs.ListQueues": 1, "sqs.GetQueueAttributes": 36}
    documents = [json.loads(line) for line in live.stdout.splitlines()]
    assert len(documents) == 3
    # 12 queues at 10 requests/s: the 0.1 s asked for is stretched to 1.2 s ...
    assert {d["budget"]["interval_seconds"] for d in documents} == {1.2}
    assert documents[0]["budget"]["requested_interval_seconds"] == 0.1
    # ... and each refresh's requests leave one slot of 1/10 s apart.
    requests = [sum(d["requests"]["this_refresh"].values()) for d in documents]
    assert requests == [13, 12, 12]
    for document, count in zip(documents, requests, strict=True):
        assert document["duration_seconds"] >= (count - 1) / 10 - 0.01


def cloudwatch_client(url: str) -> Any:
    return boto3.client(
        "cloudwatch",
        endpoint_url=url,
        region_name=DEFAULT_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def put_sqs_metrics(cloudwatch: Any, queue: str, *, minutes_ago: int, **values: float) -> None:
    """Data points as SQS would publish them for ``queue``, ``minutes_ago`` whole minutes
    ago (moto publishes none)."""
    minute = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
    stamp = minute - datetime.timedelta(minutes=minutes_ago)
    dimensions = [{"Name": "QueueName", "Value": queue}]
    cloudwatch.put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {"MetricName": name, "Dimensions": dimensions, "Value": value, "Timestamp": stamp}
            for name, value in values.items()
        ],
    )


def test_cloudwatch_figures_per_queue(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    """moto publishes no SQS metrics: the data points SQS would publish are put into
    CloudWatch's AWS/SQS namespace by hand, two minutes ago."""
    sqs_client.create_queue(QueueName=f"{prefix}busy")
    sqs_client.create_queue(QueueName=f"{prefix}quiet")
    put_sqs_metrics(
        cloudwatch_client(endpoint.url),
        f"{prefix}busy",
        minutes_ago=2,
        NumberOfMessagesSent=120.0,
        NumberOfMessagesDeleted=90.0,
        ApproximateAgeOfOldestMessage=312.0,
    )
    document = top(endpoint.broker_url(), prefix, "--cloudwatch")
    assert document["cloudwatch"]["state"] == "ok"
    by_name = {queue["name"]: queue["cloudwatch"] for queue in document["queues"]}
    assert by_name["busy"]["sent_per_second"] == 2.0
    assert by_name["busy"]["deleted_per_second"] == 1.5
    assert by_name["busy"]["oldest_age_seconds"] == 312.0
    assert by_name["quiet"]["sent_per_second"] is None
    assert document["requests"]["this_refresh"]["cloudwatch.GetMetricData"] == 1

    shown = sqsbus("top", "--once", "--cloudwatch", *on(endpoint, prefix))
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line}
    assert rows["busy"][5:8] == ["2", "1.5", "5m12s"]
    assert rows["quiet"][5:11] == ["no", "data", "no", "data", "no", "data"]


def test_cloudwatch_without_data_points_says_so(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    """What ``sqsbus local`` always shows: moto serves CloudWatch, SQS publishes nothing."""
    url = sqs_client.create_queue(QueueName=f"{prefix}unmeasured")["QueueUrl"]
    sqs_client.send_message(QueueUrl=url, MessageBody="one")
    result = sqsbus("top", "--once", "--json", "--cloudwatch", *on(endpoint, prefix))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["cloudwatch"]["state"] == "no data"
    assert document["queues"][0]["visible"] == 1
    assert document["queues"][0]["cloudwatch"]["oldest_age_seconds"] is None
    assert result.stderr.strip().startswith("CloudWatch: no SQS data points")


def test_cloudwatch_reads_many_queues_in_requests_of_500_metrics(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    names = [f"{prefix}many{number:03d}" for number in range(200)]  # 600 metric queries
    with FaultProxy(endpoint.url) as proxy:
        cloudwatch = cloudwatch_client(proxy.url)
        # In the second request.
        put_sqs_metrics(cloudwatch, names[180], minutes_ago=3, ApproximateAgeOfOldestMessage=75.0)
        proxy.reset_counts()
        reading = read_sqs_metrics(cloudwatch, names)
        assert proxy.request_counts() == {"cloudwatch.GetMetricData": 2}
    assert reading.state == "ok"
    assert reading.queues[names[180]].oldest_age_seconds == 75.0
    assert reading.queues[names[180]].sent_per_second is None
    assert reading.queues[names[0]] == QueueMetrics()


@pytest.fixture
def sqs_only_keys(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An endpoint of its own that checks IAM permissions, and the keys of a user allowed
    SQS and nothing else."""
    # moto checks IAM after its first requests: these three set the user up.
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "3")
    with LocalEndpoint() as strict:
        iam = boto3.client(
            "iam",
            endpoint_url=strict.url,
            region_name=DEFAULT_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        iam.create_user(UserName="operator")
        key = iam.create_access_key(UserName="operator")["AccessKey"]
        allow_sqs = {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [allow_sqs]}
        iam.put_user_policy(
            UserName="operator", PolicyName="sqs-only", PolicyDocument=json.dumps(policy)
        )
        yield strict, key["AccessKeyId"], key["SecretAccessKey"]


def test_cloudwatch_without_permission_says_so_and_shows_the_counts(sqs_only_keys: Any) -> None:
    strict, key_id, secret = sqs_only_keys
    broker = strict.broker_url(key_id, secret)
    sqs = boto3.client(
        "sqs",
        endpoint_url=strict.url,
        region_name=DEFAULT_REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="one")

    as_json = sqsbus("top", "--once", "--json", "--cloudwatch", "-b", broker)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["cloudwatch"]["state"] == "denied"
    assert [(q["name"], q["visible"]) for q in document["queues"]] == [("orders", 1)]
    notice = as_json.stderr.strip()
    assert len(notice.splitlines()) == 1
    assert "access denied to cloudwatch:GetMetricData" in notice
    assert "Traceback" not in as_json.stderr

    shown = sqsbus("top", "--once", "--cloudwatch", "-b", broker)
    assert shown.returncode == 0, shown.stderr
    orders = next(line.split() for line in shown.stdout.splitlines() if line.startswith("orders"))
    assert orders[:8] == ["orders", "1", "0", "0", "-", "denied", "denied", "denied"]
    assert "access denied to cloudwatch:GetMetricData" in shown.stdout
    assert secret not in shown.stdout + shown.stderr + as_json.stdout


def test_hostile_queue_names_are_shown_escaped(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    """SQS allows only plain queue names, but ``predefined_queues`` (configuration anyone
    with access to a settings file writes) names them freely."""
    url = sqs_client.create_queue(QueueName=f"{prefix}plain")["QueueUrl"]
    hostile = "\x1b]0;pwned\x07q\u202e\x9b2J"
    predefined = json.dumps({hostile: {"url": url}})
    args = ["-b", endpoint.broker_url(), "-o", f"predefined_queues={predefined}"]

    shown = sqsbus("top", "--once", *args)
    assert shown.returncode == 0, shown.stderr
    assert ESC not in shown.stdout and "\x9b" not in shown.stdout and "\u202e" not in shown.stdout
    assert "\\x1b]0;pwned\\x07q\\u202e\\x9b2J" in shown.stdout
    assert "(predefined queues)" in shown.stdout  # no ListQueues for predefined queues

    as_json = sqsbus("top", "--once", "--json", *args)
    assert ESC not in as_json.stdout and "\x9b" not in as_json.stdout
    assert json.loads(as_json.stdout)["queues"][0]["name"] == hostile


# -- the live screen in a pseudo-terminal ----------------------------------------------------


def read_until(fd: int, pattern: str, timeout: float = 30) -> str:
    """What the terminal received until ``pattern`` (a regex) matched."""
    received = ""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, received, re.DOTALL):
        left = deadline - time.monotonic()
        assert left > 0, f"no {pattern!r} in {received[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                received += os.read(fd, 65536).decode("utf-8", errors="replace")
            except OSError:  # the program closed the terminal
                break
    return received


def exit_status(process: subprocess.Popen[bytes], fd: int, timeout: float = 30) -> int:
    """``process``'s exit status; if it has not ended within ``timeout``, it is made to
    dump its threads' stacks (``PYTHONFAULTHANDLER``) and the test fails showing them."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        shown = _drain(fd, seconds=3)
        stacks = shown[-6000:]
        raise AssertionError(f"still running {timeout} s later; its threads: {stacks}") from None


def _drain(fd: int, seconds: float) -> str:
    received = ""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        try:
            received += os.read(fd, 65536).decode("utf-8", errors="replace")
        except OSError:
            break
    return received


def next_frame(fd: int, wanted: Callable[[str], bool], timeout: float) -> str:
    """The first whole frame (cursor home to erase-below) drawn from now on that is
    ``wanted``."""
    received = ""
    deadline = time.monotonic() + timeout
    while True:
        for frame in re.findall(r"\x1b\[H((?:(?!\x1b\[H).)*?)\x1b\[J", received, re.DOTALL):
            if wanted(frame):
                return str(frame)
        left = deadline - time.monotonic()
        assert left > 0, f"no such frame in {received[-3000:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            received += os.read(fd, 65536).decode("utf-8", errors="replace")


def widest_line(frame: str) -> int:
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame)
    return max(len(line.rstrip("\r")) for line in plain.split("\n"))


def set_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def test_live_screen_redraws_colours_dead_letters_follows_resizes_and_quits_on_ctrl_c(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    make_jobs_with_dead_letters(sqs_client, prefix)
    controller, terminal = pty.openpty()
    set_size(terminal, 40, 160)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    process = subprocess.Popen(
        [*SQSBUS, "top", "-i", "3", *on(endpoint, prefix)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**env, "TERM": "xterm", "PYTHONFAULTHANDLER": "1"},
    )
    os.close(terminal)
    try:
        first = read_until(controller, r"jobs-dlq.*?\n")
        assert "\x1b[?1049h" in first  # the alternate screen: the shell's text stays intact
        # The dead-letter queue holds a message: its row in bold red.
        assert re.search(r"\x1b\[1;31mjobs-dlq +1 +0 +0 .*DLQ", first)
        assert "\x1b[1;31mjobs " not in first
        # Refreshed in place: the cursor goes home, the count of requests grows.
        read_until(controller, r"\x1b\[H.*?; 5 since start")

        set_size(controller, 20, 50)
        process.send_signal(signal.SIGWINCH)
        # Redrawn at once (the next refresh is 3 s away) within the new size.
        narrow = next_frame(controller, lambda frame: widest_line(frame) <= 50, timeout=0.9)
        assert "jobs-dlq" in narrow

        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert exit_status(process, controller) == 0
        rest = read_until(controller, r"\x1b\[\?1049l.*jobs-dlq.*\n")
        assert "Traceback" not in rest and "interrupted" not in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


def test_an_outage_between_refreshes_is_reported_and_outlived(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    url = sqs_client.create_queue(QueueName=f"{prefix}steady")["QueueUrl"]
    sqs_client.send_message(QueueUrl=url, MessageBody="one")
    with FaultProxy(endpoint.url) as proxy:
        process = subprocess.Popen(
            [*SQSBUS, "top", "--json", "-n", "2", "-i", "1", *through(proxy, endpoint, prefix)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        proxy.start_outage()
        time.sleep(2.5)  # the refreshes due meanwhile fail
        proxy.end_outage()
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "refresh failed at" in err and "retrying" in err
    assert "Traceback" not in err
    second = json.loads(out)
    assert first["queues"][0]["visible"] == second["queues"][0]["visible"] == 1


def test_live_screen_gives_the_terminal_back_when_terminated(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    sqs_client.create_queue(QueueName=f"{prefix}calm")
    controller, terminal = pty.openpty()
    set_size(terminal, 30, 120)
    process = subprocess.Popen(
        [*SQSBUS, "top", "-i", "1", *on(endpoint, prefix)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "TERM": "xterm", "PYTHONFAULTHANDLER": "1"},
    )
    os.close(terminal)
    try:
        read_until(controller, r"\x1b\[\?1049h.*calm")
        process.terminate()
        assert exit_status(process, controller) == 0
        # The cursor shown again, the normal screen back, the last frame on it.
        read_until(controller, r"\x1b\[\?25h\x1b\[\?1049l.*calm")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


def test_ctrl_c_does_not_wait_for_paced_requests(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    """At 0.5 requests a second, 6 queues take 12 s to read: Ctrl-C ends it at once, without
    waiting for (or sending) the reads still queued."""
    for number in range(6):
        sqs_client.create_queue(QueueName=f"{prefix}slow{number}")
    with FaultProxy(endpoint.url) as proxy:
        process = subprocess.Popen(
            [
                *SQSBUS,
                "top",
                "--once",
                "--max-requests-per-second",
                "0.5",
                *through(proxy, endpoint, prefix),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_requests(proxy, 2)
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = process.communicate(timeout=60)
        stopped_after = time.monotonic() - started
        time.sleep(2.5)  # a paced read still queued would have gone out by now
        sent = proxy.total_requests
    assert process.returncode == 0, err
    assert stopped_after < 1.5
    assert sent <= 3, proxy.request_counts()


def test_ctrl_c_does_not_wait_for_a_request_the_network_holds(
    endpoint: LocalEndpoint, sqs_client: Any, prefix: str
) -> None:
    """A queue read the network holds (no answer for 20 s): Ctrl-C still ends ``top`` at
    once instead of when the request times out."""
    sqs_client.create_queue(QueueName=f"{prefix}stuck")
    with FaultProxy(endpoint.url) as proxy:
        proxy.faults = Faults(latency_ms=20_000, operations=frozenset({"GetQueueAttributes"}))
        process = subprocess.Popen(
            [*SQSBUS, "top", "--once", "--timeout", "30", *through(proxy, endpoint, prefix)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_requests(proxy, 2)
        time.sleep(0.5)  # the read is in flight
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = process.communicate(timeout=60)
        stopped_after = time.monotonic() - started
    assert process.returncode == 0, err
    assert stopped_after < 5


def wait_until_requests(proxy: FaultProxy, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while proxy.total_requests < count:
        assert time.monotonic() < deadline, proxy.request_counts()
        time.sleep(0.05)
