"""The queue policy statements that let exchange topics (SNS) send to bound queues."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from kombu import Exchange, Queue
from kombu_helpers import connect, consume, url_of, wait_until

from sqsbus.local import DEFAULT_ACCESS_KEY, DEFAULT_REGION, DEFAULT_SECRET_KEY, LocalEndpoint
from sqsbus.routing.exchanges import policy_statement_id

#: Binds the queue "shared" to fanout topics of its own through the exchange router, one
#: per round; round i starts at the same moment (``go`` time + i * spacing) in every binder,
#: so both processes read and write the queue policy at once.
BINDER = r"""
import json, sys, time
from pathlib import Path
from kombu import Connection
import sqsbus

url, prefix, who, rounds, spacing, barrier = sys.argv[1:]
rounds, spacing, barrier = int(rounds), float(spacing), Path(barrier)
with Connection(url, transport_options={"queue_name_prefix": prefix}) as conn:
    transport = conn.transport
    ref = transport.directory.ensure("shared")
    transport.directory.attributes(ref)  # QueueArn cached: a round only writes the policy
    exchanges = [f"fan-{who}-{i}" for i in range(rounds)]
    arns = [transport.router.topic_arn(exchange) for exchange in exchanges]
    (barrier / f"ready-{who}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.002)
    start = float((barrier / "go").read_text())
    for i, exchange in enumerate(exchanges):
        time.sleep(max(0.0, start + i * spacing - time.time()))
        transport.router.subscribe(exchange, ref)
    print(json.dumps(arns), flush=True)
    # Running on, as a worker would, while its writes are checked again.
    while not (barrier / "stop").exists():
        time.sleep(0.05)
"""


def source_arns(policy: dict[str, Any]) -> list[str]:
    """The aws:SourceArn of each statement of a queue policy."""
    return [
        statement["Condition"]["ArnEquals"]["aws:SourceArn"] for statement in policy["Statement"]
    ]


def queue_policy(sqs_client: Any, url: str) -> dict[str, Any]:
    answer = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
    return dict(json.loads(answer.get("Attributes", {}).get("Policy") or '{"Statement": []}'))


def sns_client(endpoint: LocalEndpoint, region: str = DEFAULT_REGION) -> Any:
    return boto3.client(
        "sns",
        endpoint_url=endpoint.url,
        region_name=region,
        aws_access_key_id=DEFAULT_ACCESS_KEY,
        aws_secret_access_key=DEFAULT_SECRET_KEY,
    )


def test_statement_ids_are_unique_per_topic_arn() -> None:
    long_name = "celery-" + "x" * 120
    arns = [
        f"arn:aws:sns:us-east-1:123456789012:{long_name}-a",
        f"arn:aws:sns:us-east-1:123456789012:{long_name}-b",
        f"arn:aws:sns:eu-west-1:123456789012:{long_name}-a",
        f"arn:aws:sns:us-east-1:210987654321:{long_name}-a",
        "arn:aws:sns:us-east-1:123456789012:events",
        "arn:aws:sns:eu-west-1:123456789012:events",
        "arn:aws:sns:us-east-1:210987654321:events",
        "arn:aws-cn:sns:cn-north-1:123456789012:events",
        "arn:aws:sns:us-east-1:123456789012:events.fifo",
    ]
    sids = [policy_statement_id(arn) for arn in arns]
    assert len(set(sids)) == len(arns)
    assert sids == [policy_statement_id(arn) for arn in arns]  # stable across processes
    for sid in sids:
        # SQS statement ids (permission labels): letters, digits, - and _, at most 80.
        assert re.fullmatch(r"sqsbus-[A-Za-z0-9_-]+", sid) and len(sid) <= 80
    assert sids[4].startswith("sqsbus-events-")  # readable: names the topic


def test_binders_in_two_processes_at_once_keep_every_statement(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, tmp_path: Path
) -> None:
    """Without a re-read after writing, one statement of each round was lost (SNS would
    then drop that topic's messages without telling anyone); without the later checks,
    a busy machine still lost one now and then."""
    rounds = 10
    with connect(endpoint, prefix) as conn:
        url = str(conn.transport.directory.ensure("shared").url)
    args = [str(rounds), "0.25", str(tmp_path)]
    binders = [
        subprocess.Popen(
            [sys.executable, "-c", BINDER, endpoint.broker_url(), prefix, who, *args],
            stdout=subprocess.PIPE,
            env=os.environ.copy(),
            text=True,
        )
        for who in ("a", "b")
    ]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready-{who}").exists() for who in ("a", "b")):
            assert time.monotonic() < deadline, "binder processes did not get ready"
            assert all(binder.poll() is None for binder in binders), "a binder failed"
            time.sleep(0.01)
        (tmp_path / "go.tmp").write_text(str(time.time() + 0.2))
        (tmp_path / "go.tmp").rename(tmp_path / "go")
        topics = []
        for binder in binders:
            assert binder.stdout is not None
            topics += json.loads(binder.stdout.readline() or "[]")
        assert len(set(topics)) == 2 * rounds
        # A statement overwritten after its writer read it back is made again by that
        # writer's later check (2 s on): on a busy machine that happened 1 time in 20.
        assert wait_until(
            lambda: sorted(source_arns(queue_policy(sqs_client, url))) == sorted(topics), 30
        ), sorted(set(topics) - set(source_arns(queue_policy(sqs_client, url))))
        (tmp_path / "stop").touch()
        for binder in binders:
            binder.communicate(timeout=30)
    finally:
        for binder in binders:
            if binder.poll() is None:
                binder.kill()
                binder.wait()
    assert [binder.returncode for binder in binders] == [0, 0]

    policy = queue_policy(sqs_client, url)
    assert sorted(s["Sid"] for s in policy["Statement"]) == sorted(
        policy_statement_id(arn) for arn in topics
    )
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"

    # Every binding delivers (moto does not enforce the policy; the subscriptions are checked).
    sns = sns_client(endpoint)
    for arn in topics:
        sns.publish(TopicArn=arn, Message=arn)
    received: list[str] = []
    deadline = time.monotonic() + 30
    while len(received) < len(topics) and time.monotonic() < deadline:
        answer = sqs_client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in answer.get("Messages", []):
            received.append(message["Body"])
            sqs_client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert sorted(received) == sorted(topics)


def test_a_statement_another_writer_drops_after_it_was_verified_is_made_again(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A process that read the policy before this one wrote, and writes after it read its
    statement back, drops it: the check 2 s later adds it again, with a warning."""
    caplog.set_level(logging.WARNING, logger="sqsbus")
    with connect(endpoint, prefix) as conn:
        url = str(conn.transport.directory.ensure("kept").url)
        before = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        stale = before["Attributes"].get("Policy") or json.dumps({"Statement": []})
        Queue("kept", Exchange("kept-fan", type="fanout"))(conn.default_channel).declare()
        [topic] = source_arns(queue_policy(sqs_client, url))
        sqs_client.set_queue_attributes(QueueUrl=url, Attributes={"Policy": stale})
        assert source_arns(queue_policy(sqs_client, url)) == []
        assert wait_until(lambda: source_arns(queue_policy(sqs_client, url)) == [topic], 15)
        assert "lost the statement letting topic" in caplog.text
        # Delivered again through the topic.
        with conn.Producer() as producer:
            producer.publish("through the topic", exchange="kept-fan")
        assert [body for body, _ in consume(conn, [Queue("kept")], 1)] == ["through the topic"]


def test_same_topic_name_in_two_regions_gets_two_statements(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    name = f"{prefix}{'same-long-name-' * 8}"
    east = sns_client(endpoint).create_topic(Name=name)["TopicArn"]
    west = sns_client(endpoint, "eu-west-1").create_topic(Name=name)["TopicArn"]
    assert east != west
    exchanges = {"east": {"arn": east}, "west": {"arn": west}}
    queue_east = Queue("both", Exchange("east", type="fanout"))
    queue_west = Queue("both", Exchange("west", type="fanout"))
    with connect(endpoint, prefix, predefined_exchanges=exchanges) as conn:
        queue_east(conn.default_channel).declare()
        queue_west(conn.default_channel).declare()
        url = url_of(conn, "both")
        with conn.Producer() as producer:
            producer.publish("from east", exchange="east")
            producer.publish("from west", exchange="west")
        received = consume(conn, [queue_east], 2)
    assert sorted(body for body, _ in received) == ["from east", "from west"]
    assert sorted(source_arns(queue_policy(sqs_client, url))) == sorted([east, west])


def test_binding_keeps_other_statements_and_reuses_older_sqsbus_statements(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    topic = sns_client(endpoint).create_topic(Name=f"{prefix}legacy")["TopicArn"]
    url = sqs_client.create_queue(QueueName=f"{prefix}legacy-q")["QueueUrl"]
    queue_arn = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    foreign = {
        "Sid": "OpsReadOnly",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:role/ops"},
        "Action": "sqs:GetQueueAttributes",
        "Resource": queue_arn,
    }
    # What sqsbus wrote before statement ids named the full topic ARN.
    older = {
        "Sid": f"sqsbus-{prefix}legacy",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
    }
    policy = {"Version": "2012-10-17", "Statement": [foreign, older]}
    sqs_client.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})

    other = sns_client(endpoint).create_topic(Name=f"{prefix}other")["TopicArn"]
    exchanges = {"legacy": {"arn": topic}, "other": {"arn": other}}
    with connect(endpoint, prefix, predefined_exchanges=exchanges) as conn:
        Queue("legacy-q", Exchange("legacy", type="fanout"))(conn.default_channel).declare()
        assert "sqs.SetQueueAttributes" not in conn.transport.stats.calls()
        assert queue_policy(sqs_client, url) == policy  # already allowed: not rewritten
        Queue("legacy-q", Exchange("other", type="fanout"))(conn.default_channel).declare()
    statements = queue_policy(sqs_client, url)["Statement"]
    assert statements[:2] == [foreign, older]
    assert [s["Sid"] for s in statements[2:]] == [policy_statement_id(other)]
