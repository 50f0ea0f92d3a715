"""Queue names, URL cache, creation, predefined queues — through Kombu's API."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from kombu import Connection
from kombu_helpers import connect, consume, direct_queue, publish, queue_attributes

from sqsbus.errors import (
    ConfigurationError,
    InvalidQueueError,
    MessageTooLarge,
    UndefinedQueueError,
)
from sqsbus.local import LocalEndpoint
from sqsbus.queues import QueueDirectory


def sqs_url(sqs_client: Any, name: str) -> str:
    return str(sqs_client.get_queue_url(QueueName=name)["QueueUrl"])


def test_names_are_prefixed_and_translated_like_kombu(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with connect(endpoint, prefix) as conn:
        queue = direct_queue("tasks.high:v1@eu")
        publish(conn, queue, ["hello"])
        [(body, _)] = consume(conn, [queue], 1)
    assert body == "hello"
    url = sqs_url(sqs_client, f"{prefix}tasks-high_v1_eu")
    assert url.endswith(f"/{prefix}tasks-high_v1_eu")


def test_fifo_queue_keeps_suffix_and_is_created_fifo(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with connect(endpoint, prefix) as conn:
        queue = direct_queue("orders.eu.fifo")
        publish(conn, queue, [f"order-{i}" for i in range(5)])
        received = consume(conn, [queue], 5)
    assert [body for body, _ in received] == [f"order-{i}" for i in range(5)]
    url = sqs_url(sqs_client, f"{prefix}orders-eu.fifo")
    attributes = queue_attributes(sqs_client, url)
    assert attributes["FifoQueue"] == "true"


def test_fifo_message_group_and_dedup_defaults(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    sqs_client.create_queue(
        QueueName=f"{prefix}cbd.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )
    with connect(endpoint, prefix, fifo_message_group_id="grp") as conn:
        queue = direct_queue("cbd.fifo")
        publish(conn, queue, ["a", "b"])
        publish(conn, queue, ["c"], MessageGroupId="other")
        received = consume(conn, [queue], 3)
    groups = sorted(
        message.delivery_info["sqs_message"]["Attributes"]["MessageGroupId"]
        for _, message in received
    )
    assert groups == ["grp", "grp", "other"]


def test_too_long_name_is_rejected_clearly(endpoint: LocalEndpoint, prefix: str) -> None:
    with connect(endpoint, prefix) as conn, pytest.raises(ConfigurationError, match="at most 80"):
        publish(conn, direct_queue("x" * 80), ["never sent"])


def test_creation_attributes_visibility_and_tags(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    options = {
        "sqs-creation-attributes": {"KmsMasterKeyId": "alias/aws/sqs"},
        "queue_tags": {"team": "payments"},
    }
    with connect(endpoint, prefix, **options) as conn:
        publish(conn, direct_queue("secure"), ["x"])
    url = sqs_url(sqs_client, f"{prefix}secure")
    attributes = queue_attributes(sqs_client, url)
    assert attributes["KmsMasterKeyId"] == "alias/aws/sqs"
    assert attributes["VisibilityTimeout"] == "1800"
    assert sqs_client.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "payments"}


def test_visibility_timeout_option_applies_to_created_queues(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with connect(endpoint, prefix, visibility_timeout=45) as conn:
        publish(conn, direct_queue("short"), ["x"])
    url = sqs_url(sqs_client, f"{prefix}short")
    assert queue_attributes(sqs_client, url)["VisibilityTimeout"] == "45"


def test_url_cache_follows_list_queues_pages(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"{prefix}q{i}" for i in range(7)]
    for name in names:
        sqs_client.create_queue(QueueName=name)
    monkeypatch.setattr(QueueDirectory, "list_page_size", 3)
    with connect(endpoint, prefix) as conn:
        conn.connect()
        transport = conn.transport
        assert set(names) <= set(transport.directory.cached_names())
        assert transport.stats.calls()["sqs.ListQueues"] == 3
        publish(conn, direct_queue("q6"), ["cached"])
        calls = transport.stats.calls()
    assert "sqs.CreateQueue" not in calls
    assert "sqs.GetQueueUrl" not in calls


def test_queue_created_elsewhere_after_listing_is_found(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    with connect(endpoint, prefix) as conn:
        conn.connect()
        sqs_client.create_queue(QueueName=f"{prefix}late", Attributes={"VisibilityTimeout": "7"})
        publish(conn, direct_queue("late"), ["x"])
        assert "sqs.CreateQueue" not in conn.transport.stats.calls()
        [(body, _)] = consume(conn, [direct_queue("late")], 1)
    assert body == "x"


def test_a_queue_deleted_and_made_again_elsewhere_is_read_afresh(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    """Deleting a queue drops its cached attributes: a queue of that name made again with
    a smaller size limit refuses a large message before anything is sent."""
    queue = direct_queue("remade")
    with connect(endpoint, prefix) as conn:
        publish(conn, queue, ["x" * 2000])  # its attributes (256 KiB limit) now cached
        queue(conn.default_channel).delete()
        sqs_client.create_queue(
            QueueName=f"{prefix}remade", Attributes={"MaximumMessageSize": "1024"}
        )
        sends = conn.transport.stats.calls().get("sqs.SendMessageBatch", 0)
        with pytest.raises(MessageTooLarge, match="1024"):
            publish(conn, queue, ["x" * 2000])
        assert conn.transport.stats.calls().get("sqs.SendMessageBatch", 0) == sends


# -- predefined queues --------------------------------------------------------------------------


def test_predefined_queues_only_are_used(
    endpoint: LocalEndpoint, prefix: str, sqs_client: Any
) -> None:
    url = sqs_client.create_queue(QueueName=f"{prefix}pre")["QueueUrl"]
    predefined = {f"{prefix}pre": {"url": url}}
    with connect(endpoint, prefix, predefined_queues=predefined) as conn:
        queue = direct_queue("pre")
        publish(conn, queue, ["one"])
        [(body, _)] = consume(conn, [queue], 1)
        with pytest.raises(UndefinedQueueError, match="predefined_queues"):
            publish(conn, direct_queue("other"), ["never"])
        calls = conn.transport.stats.calls()
    assert body == "one"
    assert not {"sqs.ListQueues", "sqs.CreateQueue", "sqs.GetQueueUrl"} & set(calls)
    assert sqs_client.list_queues(QueueNamePrefix=f"{prefix}other").get("QueueUrls") is None


@pytest.mark.parametrize(
    ("name", "url_suffix"),
    [("jobs.fifo", "jobs"), ("jobs", "jobs.fifo")],
)
def test_predefined_fifo_name_and_url_must_agree(
    endpoint: LocalEndpoint, name: str, url_suffix: str
) -> None:
    predefined = {name: {"url": f"{endpoint.url}/123456789012/{url_suffix}"}}
    conn = Connection(endpoint.broker_url(), transport_options={"predefined_queues": predefined})
    with pytest.raises(InvalidQueueError, match="FIFO"):
        conn.connect()


def test_predefined_queue_uses_its_own_credentials_and_region(
    endpoint: LocalEndpoint, prefix: str
) -> None:
    eu = boto3.client(
        "sqs",
        endpoint_url=endpoint.url,
        region_name="eu-west-1",
        aws_access_key_id="eu-key",
        aws_secret_access_key="eu-secret",
    )
    url = eu.create_queue(QueueName=f"{prefix}eu")["QueueUrl"]
    predefined = {
        f"{prefix}eu": {
            "url": url,
            "region": "eu-west-1",
            "access_key_id": "eu-key",
            "secret_access_key": "eu-secret",
        }
    }
    with connect(endpoint, prefix, predefined_queues=predefined) as conn:
        queue = direct_queue("eu")
        publish(conn, queue, ["bonjour"])
        [(body, message)] = consume(conn, [queue], 1)
        ref = conn.transport.directory.get("eu")
        default_client = conn.transport.aws.client("sqs")
    assert body == "bonjour"
    assert message.delivery_info["sqs_queue"] == url
    assert ref.client is not default_client
    assert ref.client.meta.region_name == "eu-west-1"
    assert ref.client._request_signer._credentials.access_key == "eu-key"
    # The message really went to the eu-west-1 queue.
    assert (
        eu.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "0"
    )
