"""The Python API of the operator commands that the CLI tests don't call directly: ``purge``
and ``sweep`` of :mod:`sqsbus.admin`, against the endpoint."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kombu_helpers import wait_until

from sqsbus.admin import (
    AdminSession,
    BrokerChoice,
    PurgeInProgress,
    PurgeResult,
    UnknownQueueError,
    purge,
    sweep,
)
from sqsbus.expiry import ALIVE_TAG, EXPIRES_TAG
from sqsbus.local import LocalEndpoint


@pytest.fixture
def session(endpoint: LocalEndpoint, prefix: str) -> AdminSession:
    broker = BrokerChoice(endpoint.broker_url(), "test")
    return AdminSession.connect(broker, {"queue_name_prefix": prefix})


def visible(sqs_client: Any, url: str) -> int:
    attributes = sqs_client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_purge_shows_the_counts_first_and_purges_only_if_confirmed(
    session: AdminSession, sqs_client: Any, prefix: str
) -> None:
    base = sqs_client.create_queue(QueueName=prefix + "urgent")["QueueUrl"]
    band = sqs_client.create_queue(QueueName=prefix + "urgent-p6")["QueueUrl"]
    for url, count in ((base, 2), (band, 3)):
        for n in range(count):
            sqs_client.send_message(QueueUrl=url, MessageBody=f"m{n}")

    declined = purge(session, "urgent", confirm=lambda found: False)
    assert declined.purged is False
    assert [info.name for info in declined.queues] == ["urgent", "urgent-p6"]
    assert [info.name for info in declined.bands] == ["urgent-p6"]
    assert (declined.visible, declined.in_flight, declined.delayed) == (5, 0, 0)
    assert declined.total == 5
    assert (visible(sqs_client, base), visible(sqs_client, band)) == (2, 3)

    shown: list[PurgeResult] = []

    def confirm(found: PurgeResult) -> bool:
        shown.append(found)
        return True

    purged = purge(session, "urgent", confirm=confirm)
    assert purged.purged is True
    assert shown == [declined]  # the confirmation saw the counts of before the purge
    assert purged.total == 5
    assert wait_until(lambda: visible(sqs_client, base) == visible(sqs_client, band) == 0)

    with pytest.raises(PurgeInProgress, match="purged less than 60 seconds ago"):
        purge(session, "urgent")  # no confirm: purges at once, or tries to


def test_purge_of_an_unknown_queue_deletes_nothing(
    session: AdminSession, sqs_client: Any, prefix: str
) -> None:
    url = sqs_client.create_queue(QueueName=prefix + "invoices")["QueueUrl"]
    sqs_client.send_message(QueueUrl=url, MessageBody="keep me")
    with pytest.raises(UnknownQueueError, match="did you mean invoices"):
        purge(session, "invoice")
    assert visible(sqs_client, url) == 1


def test_sweep_deletes_only_expired_temporary_queues(
    session: AdminSession, sqs_client: Any, prefix: str
) -> None:
    now = int(time.time())
    expired = {EXPIRES_TAG: "1", ALIVE_TAG: str(now - 60)}
    alive = {EXPIRES_TAG: "600", ALIVE_TAG: str(now)}
    sqs_client.create_queue(QueueName=prefix + "dead-pidbox", tags=expired)
    sqs_client.create_queue(QueueName=prefix + "live-pidbox", tags=alive)
    sqs_client.create_queue(QueueName=prefix + "untagged-pidbox")  # not declared by sqsbus
    sqs_client.create_queue(QueueName=prefix + "durable", tags=expired)  # not temporary by name

    nothing = sweep(session, limit=0)
    assert (nothing.listed, nothing.candidates, nothing.checked, nothing.deleted) == (4, 3, 0, [])

    report = sweep(session)
    assert (report.listed, report.candidates, report.checked) == (4, 3, 3)
    assert report.deleted == [prefix + "dead-pidbox"]
    left = sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    assert sorted(url.rsplit("/", 1)[-1] for url in left) == [
        prefix + "durable",
        prefix + "live-pidbox",
        prefix + "untagged-pidbox",
    ]
