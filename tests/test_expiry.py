"""Orphaned temporary queues: kept alive while their connection lives, swept once it is dead.

Integration tests use expiries of a few seconds (``temporary_queue_min_expires=1`` and Kombu's
``expires=2``); a "dead" owner is a child process holding a Kombu connection, killed with
SIGKILL so that it never closes its connection.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Consumer, Exchange, Queue
from kombu_helpers import connect, drain_for, publish, wait_until

from sqsbus.config import DEFAULT_ORPHAN_QUEUE_PATTERNS, parse_options
from sqsbus.errors import ConfigurationError, QueueDeletedRecently, QueueDoesNotExist
from sqsbus.expiry import (
    ALIVE_TAG,
    EXPIRES_TAG,
    SUBSCRIPTION_TAG,
    candidate_names,
    expires_seconds,
    expiry_tags,
    is_expired,
    recorded_subscriptions,
    refresh_seconds,
    subscription_tag,
)
from sqsbus.kombu import Transport
from sqsbus.local import LocalEndpoint

#: Transport options of every connection here: short expiries, our own name pattern.
FAST = {"temporary_queue_min_expires": 1, "orphan_queue_patterns": ["ephemeral-*"]}

# -- unit ----------------------------------------------------------------------------------


def test_expiry_is_x_expires_in_seconds_with_a_floor() -> None:
    assert expires_seconds(10_000, 300) == 300  # Celery's pidbox queues: 10 s -> the floor
    assert expires_seconds(600_000, 300) == 600
    assert expires_seconds(2_500, 1) == 3  # rounded up, never shorter than asked
    assert expires_seconds(None, 300) == 300  # exclusive queues without x-expires
    assert expires_seconds("junk", 60) == 60
    assert refresh_seconds(300) == 100


def test_expired_only_when_tagged_and_older_than_the_expiry() -> None:
    tags = expiry_tags(10, now=1000.2)
    assert tags[ALIVE_TAG] == "1001" and tags[EXPIRES_TAG] == "10"
    assert not is_expired(tags, 1010.5)
    assert is_expired(tags, 1011.5)
    assert not is_expired({}, 1e12)  # not declared temporary by sqsbus: never
    assert not is_expired({EXPIRES_TAG: "10"}, 1e12)
    assert not is_expired({EXPIRES_TAG: "10", ALIVE_TAG: "soon"}, 1e12)


def test_subscriptions_are_recorded_one_tag_per_topic() -> None:
    first = "arn:aws:sns:us-east-1:123456789012:celery-pidbox:0b1c"
    again = "arn:aws:sns:us-east-1:123456789012:celery-pidbox:9f8e"
    other = "arn:aws:sns:us-east-1:123456789012:celeryev:aaaa"
    assert subscription_tag(first) == subscription_tag(again)
    assert subscription_tag(first) != subscription_tag(other)
    assert subscription_tag(first).startswith(SUBSCRIPTION_TAG)
    assert len(subscription_tag(first)) <= 128
    tags = {subscription_tag(first): first, subscription_tag(other): other, "team": "x"}
    assert recorded_subscriptions(tags) == sorted([first, other])


def test_candidates_are_names_under_the_prefix_matching_a_pattern() -> None:
    names = [
        "p-celery_host-celery-pidbox",
        "p-4f2a-reply-celery-pidbox",
        "p-celeryev-5e1c",
        "p-amq-gen-77",
        "p-celery",
        "p-pidbox-archive",
        "q-celeryev-1",
    ]
    found = candidate_names(names, "p-", DEFAULT_ORPHAN_QUEUE_PATTERNS)
    assert found == [
        "p-4f2a-reply-celery-pidbox",
        "p-amq-gen-77",
        "p-celery_host-celery-pidbox",
        "p-celeryev-5e1c",
    ]
    assert candidate_names(names, "", ["q-*"]) == ["q-celeryev-1"]


def test_expiry_options_are_validated() -> None:
    options = parse_options({"orphan_queue_patterns": "mine-*", "orphan_sweep_interval": 0})
    assert options.orphan_queue_patterns == ("mine-*",)
    assert options.orphan_sweep_interval == 0
    assert options.temporary_queue_expiry is True
    with pytest.raises(ConfigurationError, match="temporary_queue_min_expires"):
        parse_options({"temporary_queue_min_expires": 0})
    with pytest.raises(ConfigurationError, match="orphan_queue_patterns"):
        parse_options({"orphan_queue_patterns": [""]})


def test_a_name_sqs_still_blocks_after_a_sweep_is_a_connection_error() -> None:
    """Celery reconnects (and declares again) instead of stopping the worker."""
    assert issubclass(QueueDeletedRecently, Transport.connection_errors)
    assert issubclass(QueueDeletedRecently, QueueDoesNotExist)


# -- integration ---------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import sqsbus
    from kombu import Connection, Exchange, Queue

    url, options, name, exchange, expires = json.loads(sys.argv[1])
    conn = Connection(url, transport_options=options)
    queue = Queue(name, Exchange(exchange, "fanout"), auto_delete=True, expires=expires)
    queue(conn.default_channel).declare()
    print("ready", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def owner(endpoint: LocalEndpoint, prefix: str) -> Iterator[Any]:
    """``owner(queue, exchange, kill=True, expires=2)``: a process with a temporary queue.

    With ``kill``, it is killed with SIGKILL (its connection is never closed); otherwise it
    lives, idle, until the end of the test.
    """
    processes: list[subprocess.Popen[str]] = []

    def start(name: str, exchange: str, *, kill: bool = True, expires: float = 2) -> None:
        options = {"queue_name_prefix": prefix, **FAST}
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                json.dumps([endpoint.broker_url(), options, name, exchange, expires]),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", "the owner did not start"
        if kill:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def queue_urls(sqs_client: Any, prefix: str) -> dict[str, str]:
    urls = sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    return {url.rsplit("/", 1)[-1][len(prefix) :]: url for url in urls}


def subscribed_queue_arns(endpoint: LocalEndpoint, prefix: str, exchange: str) -> set[str]:
    import boto3

    sns = boto3.client("sns", endpoint_url=endpoint.url, region_name="us-east-1")
    topic = f"arn:aws:sns:us-east-1:123456789012:{prefix}{exchange}"
    answer = sns.list_subscriptions_by_topic(TopicArn=topic)
    return {subscription["Endpoint"] for subscription in answer["Subscriptions"]}


def queue_arn(sqs_client: Any, url: str) -> str:
    attributes = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def test_a_temporary_queue_is_tagged_and_kept_alive(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    exchange = Exchange("lively", type="fanout")
    queue = Queue("ephemeral-live", exchange, auto_delete=True, expires=2)
    with connect(endpoint, prefix, **FAST) as conn:
        queue(conn.default_channel).declare()
        url = queue_urls(sqs_client, prefix)["ephemeral-live"]
        tags = sqs_client.list_queue_tags(QueueUrl=url)["Tags"]
        assert tags[EXPIRES_TAG] == "2"
        assert abs(int(tags[ALIVE_TAG]) - time.time()) < 5
        [subscription] = recorded_subscriptions(tags)
        assert f":{prefix}lively:" in subscription
        first_mark = int(tags[ALIVE_TAG])
        assert wait_until(
            lambda: int(sqs_client.list_queue_tags(QueueUrl=url)["Tags"][ALIVE_TAG]) > first_mark,
            timeout=10,
        ), "the alive mark was not refreshed"
        # Declaring it again on the same connection costs no request.
        before = conn.transport.stats.calls().get("sqs.TagQueue", 0)
        queue(conn.default_channel).declare()
        assert conn.transport.stats.calls().get("sqs.TagQueue", 0) == before
    assert "ephemeral-live" not in queue_urls(sqs_client, prefix)  # deleted at close


def test_a_live_process_sweeps_a_killed_process_queue_and_keeps_its_own(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, owner: Any
) -> None:
    exchange = Exchange("orphans", type="fanout")
    live = Queue("ephemeral-live", exchange, auto_delete=True, expires=2)
    durable = Queue("ephemeral-durable", exchange)  # matches the pattern, but not temporary
    with connect(endpoint, prefix, orphan_sweep_interval=1, **FAST) as conn:
        with Consumer(conn, [live, durable], callbacks=[lambda _b, _m: None]):
            pass
        owner("ephemeral-dead", "orphans")
        urls = queue_urls(sqs_client, prefix)
        dead_arn = queue_arn(sqs_client, urls["ephemeral-dead"])
        assert dead_arn in subscribed_queue_arns(endpoint, prefix, "orphans")

        # This connection keeps a temporary queue, so its process sweeps every second.
        assert wait_until(
            lambda: "ephemeral-dead" not in queue_urls(sqs_client, prefix), timeout=20
        ), f"the dead process's queue was not swept: {sorted(queue_urls(sqs_client, prefix))}"

        assert set(queue_urls(sqs_client, prefix)) == {"ephemeral-live", "ephemeral-durable"}
        subscribers = subscribed_queue_arns(endpoint, prefix, "orphans")
        assert dead_arn not in subscribers, "the dead queue's subscription was left behind"
        assert len(subscribers) == 2
        # The live temporary queue still works, long past its 2 s expiry.
        publish(conn, live, ["still here"])
        assert drain_for(conn, [live], 3) == ["still here"]


def test_explicit_sweep_deletes_only_expired_queues(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, owner: Any
) -> None:
    owner("ephemeral-dead", "swept")
    # Refreshed every 4/3 s: survives a late refresh on a busy machine, not a missing one.
    owner("ephemeral-alive", "swept", kill=False, expires=4)
    # No automatic sweeps here: only the explicit one deletes.
    with connect(endpoint, prefix, orphan_sweep_interval=0, **FAST) as conn:
        time.sleep(5)  # past both expiries: only the live owner's mark is fresh
        report = conn.transport.sweep_orphan_queues()
        assert report.deleted == [f"{prefix}ephemeral-dead"]
        assert (report.candidates, report.checked) == (2, 2)
        assert set(queue_urls(sqs_client, prefix)) == {"ephemeral-alive"}
        again = conn.transport.sweep_orphan_queues()
        assert (again.deleted, again.candidates) == ([], 1)


def test_queues_of_a_connection_without_expiry_are_not_tagged(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    queue = Queue("ephemeral-plain", Exchange("plain", type="fanout"), auto_delete=True, expires=2)
    with connect(endpoint, prefix, temporary_queue_expiry=False) as conn:
        queue(conn.default_channel).declare()
        url = queue_urls(sqs_client, prefix)["ephemeral-plain"]
        assert sqs_client.list_queue_tags(QueueUrl=url).get("Tags", {}) == {}
        assert "sqs.TagQueue" not in conn.transport.stats.calls()
    assert "ephemeral-plain" not in queue_urls(sqs_client, prefix)


def test_sweep_command_deletes_a_dead_process_queue(
    owner: Any,
    endpoint: LocalEndpoint,
    prefix: str,
    sqs_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sqsbus import cli

    owner("ephemeral-gone", "ephemeral-x", expires=1)
    assert "ephemeral-gone" in queue_urls(sqs_client, prefix)
    time.sleep(2.5)  # its expiry (1 s) passes
    capsys.readouterr()
    code = cli.main(
        [
            "sweep",
            "--broker",
            endpoint.broker_url(),
            "-o",
            f"queue_name_prefix={prefix}",
            "-o",
            'orphan_queue_patterns=["ephemeral-*"]',
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "1 expired and deleted" in out and "deleted ephemeral-gone" in out
    assert "ephemeral-gone" not in queue_urls(sqs_client, prefix)
