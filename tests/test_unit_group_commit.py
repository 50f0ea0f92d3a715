"""Group commit of sends, against a hand-written fake SQS client (no network)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fake_sqs import FakeSQS, ref

from sqsbus.backoff import SQS_BATCH_RETRY
from sqsbus.engine.group_commit import MAX_IN_FLIGHT, GroupCommit
from sqsbus.errors import DeliveryError, SQSBusError
from sqsbus.queues import QueueRef

MAX_ATTEMPTS = SQS_BATCH_RETRY.attempts


def publish_concurrently(commit: GroupCommit, queue: QueueRef, bodies: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    start = threading.Barrier(len(bodies))  # all publish at once, however slow threads start

    def one(body: str) -> None:
        start.wait(30)
        try:
            results[body] = commit.send(queue, {"MessageBody": body}, len(body))
        except Exception as exc:
            results[body] = exc

    threads = [threading.Thread(target=one, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_lone_publisher_sends_at_once() -> None:
    client = FakeSQS(delay=0)
    commit = GroupCommit()
    started = time.monotonic()
    assert commit.send(ref(client), {"MessageBody": "a"}, 1) == "id-a"
    assert time.monotonic() - started < 0.5
    assert client.batches == [["a"]]


def test_concurrent_publishers_share_batches_and_each_gets_its_id() -> None:
    client = FakeSQS()
    commit = GroupCommit()
    bodies = [f"m{i}" for i in range(40)]
    results = publish_concurrently(commit, ref(client), bodies)
    assert results == {body: f"id-{body}" for body in bodies}
    assert sorted(b for batch in client.batches for b in batch) == sorted(bodies)
    assert all(len(batch) <= 10 for batch in client.batches)
    assert len(client.batches) < 20


def test_publishers_that_keep_publishing_keep_sharing_batches() -> None:
    """Eight threads publishing in a loop keep sharing round trips (about 4-6 entries
    each; one each without group commit), throttling included, and every publisher gets
    each of its ids back.  The round trip is slow enough (30 ms) that a busy machine
    still wakes the returning publishers before the next batch leaves."""
    client = FakeSQS(delay=0.03)
    commit = GroupCommit()
    queue = ref(client)
    ids: dict[str, str] = {}

    def producer(n: int) -> None:
        for i in range(25):
            if n == 0 and i % 10 == 5:
                client.throttle_next = 1
            body = f"{n}-{i}"
            ids[body] = commit.send(queue, {"MessageBody": body}, len(body))

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert ids == {f"{n}-{i}": f"id-{n}-{i}" for n in range(8) for i in range(25)}
    assert len(client.batches) <= 200 / 3


def test_batches_respect_the_byte_limit() -> None:
    client = FakeSQS(delay=0.05)
    commit = GroupCommit()
    queue = ref(client)
    big = 400_000
    results: list[str] = []

    def one(i: int) -> None:
        results.append(commit.send(queue, {"MessageBody": f"b{i}"}, big))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert all(len(batch) * big <= 1_048_576 for batch in client.batches)


def test_refused_entry_raises_to_its_publisher_only() -> None:
    client = FakeSQS()
    client.refuse["bad"] = ("InvalidMessageContents", True)
    commit = GroupCommit()
    results = publish_concurrently(commit, ref(client), ["ok1", "bad", "ok2"])
    assert results["ok1"] == "id-ok1" and results["ok2"] == "id-ok2"
    assert isinstance(results["bad"], DeliveryError)
    assert "InvalidMessageContents" in str(results["bad"])


def test_transient_failures_are_retried_transparently() -> None:
    client = FakeSQS(delay=0)
    client.throttle_next = 2
    client.refuse["flaky"] = ("InternalError", False)
    commit = GroupCommit()
    assert commit.send(ref(client), {"MessageBody": "flaky"}, 5) == "id-flaky"
    assert [b for batch in client.batches for b in batch].count("flaky") == 2


def test_fifo_lanes_keep_publish_order() -> None:
    client = FakeSQS(delay=0.01)
    commit = GroupCommit()
    queue = ref(client, "orders.fifo")
    order: list[str] = []
    lock = threading.Lock()

    def producer(n: int) -> None:
        for i in range(10):
            body = f"{n}-{i}"
            commit.send(queue, {"MessageBody": body, "MessageGroupId": str(n)}, len(body))
            with lock:
                order.append(body)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = [b for batch in client.batches for b in batch]
    for n in range(4):
        mine = [b for b in sent if b.startswith(f"{n}-")]
        assert mine == [f"{n}-{i}" for i in range(10)]


@pytest.mark.parametrize("code", ["AccessDenied", "AWS.SimpleQueueService.NonExistentQueue"])
def test_a_failed_call_raises_to_every_publisher_in_it(code: str) -> None:
    class Refusing(FakeSQS):
        def send_message_batch(
            self, QueueUrl: str, Entries: list[dict[str, Any]]
        ) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": code, "Message": "no"}}, "SendMessageBatch")

    commit = GroupCommit()
    results = publish_concurrently(commit, ref(Refusing()), ["a", "b"])
    assert all(isinstance(result, Exception) for result in results.values())


def test_an_unforeseen_error_reaches_every_publisher_of_the_batch() -> None:
    class Broken(FakeSQS):
        def send_message_batch(
            self, QueueUrl: str, Entries: list[dict[str, Any]]
        ) -> dict[str, Any]:
            time.sleep(0.02)
            raise RuntimeError("bug")

    commit = GroupCommit()
    results = publish_concurrently(commit, ref(Broken()), [f"m{i}" for i in range(8)])
    assert all(isinstance(result, RuntimeError) for result in results.values())


def test_lingering_publishes_return_at_once_and_go_in_full_batches() -> None:
    client = FakeSQS(delay=0)
    commit = GroupCommit()
    queue = ref(client)
    started = time.monotonic()
    for i in range(25):
        commit.send_later(queue, {"MessageBody": f"m{i}"}, 2, linger=5.0)
    assert time.monotonic() - started < 2.0  # far from the linger: no publisher waited
    assert commit.flush(5)
    assert sorted(len(batch) for batch in client.batches) == [5, 10, 10]
    # A standard queue: batches may go out in parallel, so only the set is certain.
    assert sorted(b for batch in client.batches for b in batch) == sorted(
        f"m{i}" for i in range(25)
    )


class CountingSQS(FakeSQS):
    """Also records the most batch calls in flight at once."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.in_flight = 0
        self.most_in_flight = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return super().send_message_batch(QueueUrl, Entries)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.mark.parametrize(("name", "most"), [("q", MAX_IN_FLIGHT), ("orders.fifo", 1)])
def test_full_lingering_batches_go_several_at_once_except_on_fifo_queues(
    name: str, most: int
) -> None:
    client = CountingSQS(delay=0.05)
    commit = GroupCommit()
    queue = ref(client, name)
    for i in range(200):
        params = {"MessageBody": f"m{i}", "MessageGroupId": "g"} if name.endswith(".fifo") else {}
        commit.send_later(queue, params or {"MessageBody": f"m{i}"}, 2, linger=0.01)
    assert commit.flush(30)
    sent = [b for batch in client.batches for b in batch]
    assert sorted(sent) == sorted(f"m{i}" for i in range(200))
    assert client.most_in_flight == most
    if name.endswith(".fifo"):
        assert sent == [f"m{i}" for i in range(200)]


def test_lingering_publishers_wait_for_room_when_sqs_falls_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sqsbus.engine.group_commit.MAX_PENDING", 30)
    client = FakeSQS(delay=0.02)
    commit = GroupCommit()
    queue = ref(client)
    most_pending = 0
    for i in range(300):
        commit.send_later(queue, {"MessageBody": f"m{i}"}, 2, linger=1.0)
        most_pending = max(most_pending, len(commit._lane(queue).pending))
    assert commit.flush(30)
    assert most_pending <= 30
    assert sorted(b for batch in client.batches for b in batch) == sorted(
        f"m{i}" for i in range(300)
    )


def test_a_lone_lingering_message_goes_after_the_linger() -> None:
    client = FakeSQS(delay=0)
    commit = GroupCommit()
    commit.send_later(ref(client), {"MessageBody": "late"}, 4, linger=0.5)
    time.sleep(0.05)
    assert client.batches == []
    deadline = time.monotonic() + 5
    while not client.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.batches == [["late"]]


def test_a_lingering_message_that_cannot_be_sent_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeSQS(delay=0)
    client.refuse["bad"] = ("InvalidMessageContents", True)
    commit = GroupCommit()
    with caplog.at_level("ERROR", logger="sqsbus"):
        commit.send_later(ref(client), {"MessageBody": "bad"}, 3, linger=0.01)
        assert commit.flush(5)
    assert commit.lost == 1
    assert "publish_linger_ms" in caplog.text and "InvalidMessageContents" in caplog.text
    assert "was refused and is lost" in caplog.text


def test_a_lingering_message_never_confirmed_is_reported_as_possibly_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeSQS(delay=0)
    client.throttle_next = MAX_ATTEMPTS
    commit = GroupCommit()
    with caplog.at_level("ERROR", logger="sqsbus"):
        commit.send_later(ref(client), {"MessageBody": "m"}, 1, linger=0.01)
        assert commit.flush(15)
    assert commit.lost == 1
    assert f"was not confirmed after {MAX_ATTEMPTS} attempts and may be lost" in caplog.text


def test_a_lingering_message_refused_for_good_runs_its_cleanup_and_a_retried_one_does_not() -> None:
    client = FakeSQS(delay=0)
    client.refuse["bad"] = ("InvalidMessageContents", True)
    commit = GroupCommit()
    cleaned: list[str] = []
    tickets = [
        commit.send_later(
            ref(client), {"MessageBody": body}, 1, 0.01, on_refused=lambda b=body: cleaned.append(b)
        )
        for body in ("bad", "good")
    ]
    assert commit.settle(tickets, time.monotonic() + 5)
    assert cleaned == ["bad"]

    client.throttle_next = MAX_ATTEMPTS  # never answered but "retry": SQS may have it
    ticket = commit.send_later(
        ref(client), {"MessageBody": "m"}, 1, 0.01, on_refused=lambda: cleaned.append("m")
    )
    assert commit.settle([ticket], time.monotonic() + 15)
    assert ticket.error is not None and cleaned == ["bad"]


class InterruptedSQS(FakeSQS):
    """Ctrl-C arrives while the first SendMessageBatch is under way."""

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.batches:
            self.batches.append([e["MessageBody"] for e in Entries])
            raise KeyboardInterrupt
        return super().send_message_batch(QueueUrl, Entries)


def test_an_interrupted_send_settles_its_batch_and_frees_the_lane() -> None:
    client = InterruptedSQS(delay=0)
    commit = GroupCommit()
    with pytest.raises(KeyboardInterrupt):
        commit.send(ref(client), {"MessageBody": "cut"}, 1)
    assert commit.flush(1)  # nothing stays in flight
    assert commit.send(ref(client), {"MessageBody": "next"}, 1) == "id-next"


def test_withdrawn_messages_are_never_sent() -> None:
    client = FakeSQS(delay=0)
    commit = GroupCommit()
    queue = ref(client)
    tickets = [commit.send_later(queue, {"MessageBody": b}, 1, 60, owned=True) for b in "ab"]
    commit.withdraw(tickets)
    assert all(t.done and isinstance(t.error, SQSBusError) for t in tickets)
    assert commit.flush(1)
    assert client.batches == []
