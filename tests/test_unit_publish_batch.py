"""Unit tests of batched publishing: one confirmation point for many publishes of a thread."""

from __future__ import annotations

import threading
import time

import pytest
from fake_sqs import FakeSQS, ref

from sqsbus.engine.group_commit import GROUP_COMMIT, GroupCommit
from sqsbus.engine.publish_batch import PublishBatch, batched_publishing, current_batch
from sqsbus.errors import DeliveryError, PublishBatchError


def test_settle_sends_owned_messages_now_and_hands_their_errors_to_the_tickets() -> None:
    client = FakeSQS(delay=0)
    client.refuse["bad"] = ("InvalidMessageContents", True)
    commit = GroupCommit()
    queue = ref(client)
    tickets = [
        commit.send_later(queue, {"MessageBody": body}, 1, linger=60, owned=True)
        for body in ("ok", "bad")
    ]
    assert commit.settle(tickets, time.monotonic() + 5)  # not after the 60 s linger
    assert client.batches == [["ok", "bad"]]
    assert tickets[0].done and tickets[0].error is None
    assert isinstance(tickets[1].error, DeliveryError)
    assert commit.lost == 0  # owned: the error went to its ticket, not to the log


def test_confirm_names_the_refused_messages_and_keeps_their_errors() -> None:
    client = FakeSQS(delay=0)
    client.refuse["bad"] = ("InvalidMessageContents", True)
    queue = ref(client, "refusing")
    batch = PublishBatch()
    for body in ("one", "bad", "two"):
        batch.add(GROUP_COMMIT.send_later(queue, {"MessageBody": body}, 1, 60, owned=True))
    with pytest.raises(PublishBatchError) as raised:
        batch.confirm(5)
    text = str(raised.value)
    assert "of 3 messages published in batched_publishing(), 1 not accepted" in text
    assert "InvalidMessageContents" in text
    assert len(raised.value.errors) == 1 and raised.value.unanswered == 0
    assert sorted(body for sent in client.batches for body in sent) == ["bad", "one", "two"]


def test_confirm_gives_up_waiting_at_the_timeout_and_says_so() -> None:
    client = FakeSQS(delay=1.0)
    batch = PublishBatch()
    ticket = GROUP_COMMIT.send_later(ref(client, "slow"), {"MessageBody": "m"}, 1, 0, owned=True)
    batch.add(ticket)
    deadline = time.monotonic() + 5
    while ticket.lane.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # a sender thread took it
    with pytest.raises(PublishBatchError, match=r"1 not answered within 0\.2 s") as raised:
        batch.confirm(0.2)
    assert raised.value.unanswered == 1
    assert GROUP_COMMIT.settle([ticket], time.monotonic() + 5)  # it does arrive later


def test_the_batch_belongs_to_its_thread_and_nested_blocks_join_the_outer_one() -> None:
    seen: list[PublishBatch | None] = []
    with batched_publishing() as outer:
        with batched_publishing() as inner:
            assert inner is outer is current_batch()
        assert current_batch() is outer  # the inner block did not end the batch
        thread = threading.Thread(target=lambda: seen.append(current_batch()))
        thread.start()
        thread.join()
    assert seen == [None]
    assert current_batch() is None


def test_a_block_that_raises_still_sends_its_messages_and_raises_its_own_error() -> None:
    client = FakeSQS(delay=0)
    queue = ref(client, "raising")
    with pytest.raises(RuntimeError, match="boom"), batched_publishing() as batch:
        batch.add(GROUP_COMMIT.send_later(queue, {"MessageBody": "kept"}, 1, 60, owned=True))
        raise RuntimeError("boom")
    assert client.batches == [["kept"]]
    assert current_batch() is None
