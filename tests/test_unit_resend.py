"""Unit tests of the one resend path, :meth:`Publisher.resend_all` (moves between queues).

Copies go through the process's group commit to a fake SQS client (no network): shared
batches, one answer per copy in order, the FIFO and trace-header rules, and the checks
every send gets before it leaves.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from fake_sqs import FakeSQS, ref

from sqsbus.engine.group_commit import GROUP_COMMIT
from sqsbus.engine.messages import Received
from sqsbus.engine.publisher import Copy, Publisher
from sqsbus.errors import ConfigurationError, DeliveryError, MessageTooLarge, TransientError
from sqsbus.queues import QueueAttributes, QueueRef

SOURCE: QueueRef = QueueRef("source", "https://sqs.example/1/source", None)


def received(number: int, body: str | None = None, **attributes: str) -> Received:
    return Received(
        queue=SOURCE,
        name="source",
        message_id=f"m{number}",
        receipt_handle=f"h{number}",
        body=f"body {number}" if body is None else body,
        attributes=attributes,
    )


def copy_of(message: Received, **attributes: Any) -> Copy:
    return Copy(message, message.body, attributes)


def publisher() -> Publisher:
    return Publisher(QueueAttributes(), fifo_message_group_id="fallback")


def test_copies_share_batches_and_each_gets_its_own_answer_in_order() -> None:
    client = FakeSQS(delay=0)
    client.refuse["body 3"] = ("InvalidMessageContents", True)
    messages = [received(n) for n in range(12)]
    outcomes = publisher().resend_all(ref(client, "resend-batches"), [copy_of(m) for m in messages])
    assert [len(batch) for batch in client.batches] == [10, 2]
    assert [body for batch in client.batches for body in batch] == [m.body for m in messages]
    assert isinstance(outcomes[3], DeliveryError)
    assert "InvalidMessageContents" in str(outcomes[3])
    assert [o for i, o in enumerate(outcomes) if i != 3] == [
        f"id-body {n}" for n in range(12) if n != 3
    ]


def test_fifo_copies_keep_their_group_and_trace_header_and_dedupe_by_message_id() -> None:
    client = FakeSQS(delay=0)
    grouped = received(1, MessageGroupId="order-7", AWSTraceHeader="Root=1-5759e988-bd86")
    plain = received(2)
    tenant = {"DataType": "String", "StringValue": "acme"}
    copies = [copy_of(grouped, tenant=tenant), Copy(plain, "other body", {}, "token")]
    assert publisher().resend_all(ref(client, "resend.fifo"), copies) == [
        "id-body 1",
        "id-other body",
    ]
    assert client.entries == [
        {
            "MessageBody": "body 1",
            "MessageAttributes": {"tenant": tenant},
            "MessageGroupId": "order-7",
            "MessageDeduplicationId": "m1",
            "MessageSystemAttributes": {
                "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-5759e988-bd86"}
            },
        },
        {
            "MessageBody": "other body",
            "MessageGroupId": "fallback",
            "MessageDeduplicationId": "token",
        },
    ]


def test_copies_sqs_would_refuse_are_refused_before_sending() -> None:
    client = FakeSQS(delay=0)
    client.attributes = {"MaximumMessageSize": "1024"}  # the destination's own limit
    big = received(1, body="x" * 2000)
    misnamed = received(2)
    fine = received(3)
    outcomes = publisher().resend_all(
        ref(client, "resend-checked"),
        [
            copy_of(big),
            copy_of(misnamed, **{"AWS.trace": {"DataType": "String", "StringValue": "t"}}),
            copy_of(fine),
        ],
    )
    assert isinstance(outcomes[0], MessageTooLarge)
    assert isinstance(outcomes[1], ConfigurationError)
    assert outcomes[2] == "id-body 3"
    assert client.batches == [["body 3"]]


def test_a_copy_not_answered_in_time_is_reported_as_possibly_sent() -> None:
    client = FakeSQS(delay=1.0)
    queue = ref(client, "resend-slow.fifo")  # FIFO: one batch in flight at a time
    first = GROUP_COMMIT.send_later(
        queue, {"MessageBody": "first", "MessageGroupId": "g"}, 5, 0, owned=True
    )
    deadline = time.monotonic() + 5
    while first.lane.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # a sender thread is sending it
    (outcome,) = publisher().resend_all(queue, [copy_of(received(1))], timeout=0.2)
    assert isinstance(outcome, TransientError)
    assert "did not answer within 0.2 s" in str(outcome)
    assert "may still be sent" in str(outcome)
    # It is still queued and goes once the first batch is answered.
    assert GROUP_COMMIT.flush(10)
    assert client.batches == [["first"], ["body 1"]]


class InterruptedSQS(FakeSQS):
    """Ctrl-C arrives while the first SendMessageBatch is under way."""

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.batches.append([e["MessageBody"][:8] for e in Entries])
        raise KeyboardInterrupt


def test_copies_not_sent_when_interrupted_are_never_sent() -> None:
    client = InterruptedSQS(delay=0)
    # Two copies of 600 kB: two batches (1 MiB each at most); Ctrl-C during the first.
    large = [received(n, body=f"copy {n} " + "x" * 600_000) for n in (1, 2)]
    with pytest.raises(KeyboardInterrupt):
        publisher().resend_all(ref(client, "resend-interrupted"), [copy_of(m) for m in large])
    assert GROUP_COMMIT.flush(1)  # nothing left to send, nothing stuck in flight
    assert client.batches == [["copy 1 x"]]
