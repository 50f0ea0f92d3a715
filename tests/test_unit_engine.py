"""Unit tests of the engine's pure parts: message size, receive/batch capping, Waker, Inbox.

SQS calls go to tiny hand-written fake clients that record their keyword
arguments; no endpoint, no network.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sqsbus import limits
from sqsbus.engine import operations
from sqsbus.engine.messages import Received
from sqsbus.engine.publisher import message_size
from sqsbus.engine.receiver import UNLIMITED_BUFFER, Inbox, Waker
from sqsbus.errors import QueueDoesNotExist, SQSBusError
from sqsbus.queues import QueueRef

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


class RecordingClient:
    """Stands in for a botocore SQS client: records each call's kwargs, answers canned data."""

    def __init__(self, messages: list[dict[str, Any]] | None = None) -> None:
        self.messages = messages or []
        self.receive_calls: list[dict[str, Any]] = []
        self.batch_calls: list[dict[str, Any]] = []
        self.fail_ids: set[str] = set()

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.receive_calls.append(kwargs)
        return {"Messages": self.messages} if self.messages else {}

    def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.batch_calls.append(kwargs)
        failed = [
            {"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True}
            for entry in kwargs["Entries"]
            if entry["ReceiptHandle"] in self.fail_ids
        ]
        return {"Successful": [], "Failed": failed}


def queue_ref(client: Any = None, name: str = "orders") -> QueueRef:
    return QueueRef(name, QUEUE_URL, client)


def received(message_id: str, name: str = "orders") -> Received:
    return Received(
        queue=queue_ref(),
        name=name,
        message_id=message_id,
        receipt_handle=f"rh-{message_id}",
        body=f"body-{message_id}",
    )


# -- message_size -----------------------------------------------------------------


def test_message_size_of_body_counts_utf8_bytes() -> None:
    assert message_size("hello", {}) == 5
    assert message_size("héllo", {}) == 6
    assert message_size("日本", {}) == 6
    assert message_size("✓" * 10, {}) == 30
    assert message_size("", {}) == 0


def test_message_size_counts_attribute_names_types_and_values() -> None:
    attributes = {
        "trace": {"DataType": "String", "StringValue": "abc"},  # 5 + 6 + 3
        "n": {"DataType": "Number", "StringValue": 12345},  # 1 + 6 + 5
    }
    assert message_size("body", attributes) == 4 + 14 + 12


def test_message_size_counts_non_ascii_attributes_in_bytes() -> None:
    attributes = {"clé": {"DataType": "String", "StringValue": "été"}}  # 4 + 6 + 5
    assert message_size("", attributes) == 15


def test_message_size_counts_binary_values() -> None:
    attributes = {"blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02\x03"}}
    assert message_size("x", attributes) == 1 + 4 + 6 + 4


def test_message_size_grows_with_every_attribute() -> None:
    base = message_size("x" * 100, {})
    one = message_size("x" * 100, {"a": {"DataType": "String", "StringValue": "v"}})
    assert one > base


# -- operations.receive -------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "sent"), [(1, 1), (5, 5), (10, 10), (11, 10), (500, 10), (0, 1), (-3, 1)]
)
def test_receive_caps_max_number_of_messages_to_1_through_10(asked: int, sent: int) -> None:
    client = RecordingClient()
    operations.receive(queue_ref(client), "orders", max_messages=asked, wait_time_seconds=20)
    assert len(client.receive_calls) == 1
    assert client.receive_calls[0]["MaxNumberOfMessages"] == sent
    assert limits.MAX_RECEIVE_MESSAGES == limits.MAX_BATCH_ENTRIES == 10


def test_receive_sends_queue_url_wait_time_and_attribute_names() -> None:
    client = RecordingClient()
    operations.receive(queue_ref(client), "orders", max_messages=4, wait_time_seconds=7)
    params = client.receive_calls[0]
    assert params["QueueUrl"] == QUEUE_URL
    assert params["WaitTimeSeconds"] == 7
    assert params["MessageAttributeNames"] == ["All"]
    assert params["MessageSystemAttributeNames"] == ["All"]  # incl. ApproximateReceiveCount
    assert "VisibilityTimeout" not in params


def test_receive_passes_visibility_timeout_when_given() -> None:
    client = RecordingClient()
    operations.receive(
        queue_ref(client), "orders", max_messages=1, wait_time_seconds=0, visibility_timeout=45
    )
    assert client.receive_calls[0]["VisibilityTimeout"] == 45


def test_receive_returns_messages_with_their_consumer_name() -> None:
    client = RecordingClient(
        [
            {
                "MessageId": "m1",
                "ReceiptHandle": "rh1",
                "Body": "hello",
                "Attributes": {"ApproximateReceiveCount": "3"},
                "MessageAttributes": {"trace": {"DataType": "String", "StringValue": "t-1"}},
            },
            {"MessageId": "m2", "ReceiptHandle": "rh2", "Body": "world"},
        ]
    )
    got = operations.receive(queue_ref(client), "celery", max_messages=10, wait_time_seconds=1)
    assert [m.message_id for m in got] == ["m1", "m2"]
    assert [m.body for m in got] == ["hello", "world"]
    assert all(m.name == "celery" for m in got)
    assert got[0].receive_count == 3
    assert got[1].receive_count == 1
    assert got[0].string_attributes() == {"trace": "t-1"}
    assert got[0].queue.url == QUEUE_URL


def test_receive_of_nothing_is_an_empty_list() -> None:
    client = RecordingClient()
    assert operations.receive(queue_ref(client), "q", max_messages=10, wait_time_seconds=0) == []


def test_receive_errors_are_translated() -> None:
    from botocore.exceptions import ClientError

    class MissingQueueClient:
        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            raise ClientError(
                {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "gone"}},
                "ReceiveMessage",
            )

    with pytest.raises(QueueDoesNotExist, match="'orders'"):
        operations.receive(
            queue_ref(MissingQueueClient()), "orders", max_messages=1, wait_time_seconds=0
        )


# -- batch capping ------------------------------------------------------------------


def test_delete_splits_into_batches_of_at_most_10() -> None:
    client = RecordingClient()
    handles = [f"rh{i}" for i in range(25)]
    assert operations.delete(queue_ref(client), handles) == []
    sizes = [len(call["Entries"]) for call in client.batch_calls]
    assert sizes == [10, 10, 5]
    sent = [entry["ReceiptHandle"] for call in client.batch_calls for entry in call["Entries"]]
    assert sent == handles
    for call in client.batch_calls:
        assert call["QueueUrl"] == QUEUE_URL
        ids = [entry["Id"] for entry in call["Entries"]]
        assert len(set(ids)) == len(ids)  # SQS requires unique Ids within a batch


def test_batch_failures_point_at_the_original_position() -> None:
    client = RecordingClient()
    handles = [f"rh{i}" for i in range(23)]
    client.fail_ids = {"rh3", "rh14", "rh22"}
    failures = operations.delete(queue_ref(client), handles)
    assert sorted(f.index for f in failures) == [3, 14, 22]
    assert all(handles[f.index] in client.fail_ids for f in failures)
    assert all(f.stale_receipt and f.sender_fault for f in failures)


def test_delete_of_nothing_makes_no_call() -> None:
    client = RecordingClient()
    assert operations.delete(queue_ref(client), []) == []
    assert client.batch_calls == []


# -- Waker ----------------------------------------------------------------------------


def readable(waker: Waker) -> bool:
    ready, _, _ = select.select([waker.fileno()], [], [], 0)
    return bool(ready)


@pytest.fixture
def waker() -> Iterator[Waker]:
    made = Waker()
    yield made
    made.close()


def test_new_waker_is_not_readable(waker: Waker) -> None:
    assert not readable(waker)


def test_wake_makes_fileno_readable(waker: Waker) -> None:
    waker.wake()
    assert readable(waker)


def test_clear_makes_it_unreadable_again(waker: Waker) -> None:
    waker.wake()
    waker.wake()
    waker.clear()
    assert not readable(waker)
    waker.wake()  # and it can be woken again after a clear
    assert readable(waker)


def test_wait_times_out_with_false(waker: Waker) -> None:
    started = time.monotonic()
    assert waker.wait(0.02) is False
    assert time.monotonic() - started >= 0.015


def test_wait_returns_true_when_woken(waker: Waker) -> None:
    waker.wake()
    assert waker.wait(0) is True


def test_wake_from_another_thread_ends_wait(waker: Waker) -> None:
    timer = threading.Timer(0.01, waker.wake)
    timer.start()
    try:
        assert waker.wait(2.0) is True
    finally:
        timer.cancel()


def test_many_wakes_never_block(waker: Waker) -> None:
    for _ in range(100_000):
        waker.wake()
    assert readable(waker)


def test_close_is_idempotent_and_later_calls_are_harmless() -> None:
    waker = Waker()
    waker.close()
    waker.close()
    waker.wake()
    waker.clear()
    assert waker.wait(0) is False


# -- Inbox ----------------------------------------------------------------------------


class Demand:
    """A consumer's prefetch allowance the test can change."""

    def __init__(self, value: int | None) -> None:
        self.value = value

    def __call__(self) -> int | None:
        return self.value


def test_room_with_no_prefetch_limit_is_the_unlimited_buffer(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(None))
    assert inbox.room() == UNLIMITED_BUFFER
    inbox.put([received("1"), received("2")])
    assert inbox.room() == UNLIMITED_BUFFER - 2


def test_room_follows_demand(waker: Waker) -> None:
    demand = Demand(4)
    inbox = Inbox(waker, demand)
    assert inbox.room() == 4
    inbox.put([received("1")])
    assert inbox.room() == 3
    demand.value = 0
    assert inbox.room() == 0
    demand.value = 20
    assert inbox.room() == 19


def test_room_is_never_negative(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(1))
    inbox.put([received(str(i)) for i in range(5)])
    assert inbox.room() == 0


def test_take_returns_messages_in_arrival_order(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(None))
    inbox.put([received("1"), received("2")])
    inbox.put([received("3")])
    assert [m.message_id for m in inbox.take(2)] == ["1", "2"]
    assert len(inbox) == 1
    assert [m.message_id for m in inbox.take(None)] == ["3"]
    assert inbox.take(None) == []
    assert inbox.take(5) == []


def test_take_zero_takes_nothing(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(None))
    inbox.put([received("1")])
    assert inbox.take(0) == []
    assert len(inbox) == 1


def test_take_frees_room(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(2))
    inbox.put([received("1"), received("2")])
    assert inbox.room() == 0
    inbox.take(1)
    assert inbox.room() == 1


def test_remove_by_consumer_name_keeps_the_rest_in_order(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(None))
    inbox.put([received("1", "a"), received("2", "b"), received("3", "a"), received("4", "c")])
    removed = inbox.remove("a")
    assert [m.message_id for m in removed] == ["1", "3"]
    assert [m.message_id for m in inbox.take(None)] == ["2", "4"]
    assert inbox.remove("missing") == []


def test_put_wakes_the_waker(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(None))
    inbox.put([])
    assert not readable(waker)
    inbox.put([received("1")])
    assert readable(waker)


def test_reported_errors_are_raised_oldest_first(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(None))
    inbox.raise_error()  # nothing reported: no error
    first, second = SQSBusError("first"), SQSBusError("second")
    inbox.report(first)
    assert readable(waker)  # the consuming thread is woken to see it
    inbox.report(second)
    with pytest.raises(SQSBusError) as caught:
        inbox.raise_error()
    assert caught.value is first
    with pytest.raises(SQSBusError) as caught:
        inbox.raise_error()
    assert caught.value is second
    inbox.raise_error()


def test_wait_for_room_returns_at_once_when_there_is_room(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(3))
    assert inbox.wait_for_room(threading.Event(), timeout=5.0) == 3


def test_wait_for_room_times_out_with_zero_when_full(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(1))
    inbox.put([received("1")])
    started = time.monotonic()
    assert inbox.wait_for_room(threading.Event(), timeout=0.02) == 0
    assert time.monotonic() - started < 1.0


def test_wait_for_room_wakes_when_a_message_is_taken(waker: Waker) -> None:
    inbox = Inbox(waker, Demand(1))
    inbox.put([received("1")])
    timer = threading.Timer(0.01, inbox.take, args=(1,))
    timer.start()
    try:
        assert inbox.wait_for_room(threading.Event(), timeout=2.0) == 1
    finally:
        timer.cancel()
