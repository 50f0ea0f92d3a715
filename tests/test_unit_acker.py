"""The Acker's batching policy, with a hand-written fake SQS client (no network)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sqsbus.engine.acker import MAX_BACKLOG, Acker
from sqsbus.engine.messages import Received
from sqsbus.queues import QueueRef


class FakeSQS:
    """Answers batch calls; ``fail`` maps receipt handle -> (code, sender_fault)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.fail: dict[str, tuple[str, bool]] = {}
        self.throttle_next = 0
        self.queue_deleted = False
        self.lock = threading.Lock()

    def _answer(self, operation: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            if self.queue_deleted:
                raise ClientError(
                    {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, operation
                )
            if self.throttle_next:
                self.throttle_next -= 1
                raise ClientError(
                    {"Error": {"Code": "RequestThrottled", "Message": "slow down"}}, operation
                )
            self.calls.append((operation, [e["ReceiptHandle"] for e in entries]))
            failed = []
            for entry in entries:
                if entry["ReceiptHandle"] in self.fail:
                    code, sender_fault = self.fail.pop(entry["ReceiptHandle"])
                    failed.append({"Id": entry["Id"], "Code": code, "SenderFault": sender_fault})
            return {"Failed": failed}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        return self._answer("delete", Entries)

    def change_message_visibility_batch(
        self,
        QueueUrl: str,
        Entries: list[dict[str, Any]],
    ) -> dict[str, Any]:
        return self._answer(f"visibility={Entries[0]['VisibilityTimeout']}", Entries)


def messages(client: FakeSQS, count: int, queue: str = "q") -> list[Received]:
    ref = QueueRef(queue, f"https://sqs.example/1/{queue}", client)
    return [
        Received(queue=ref, name=queue, message_id=f"m{i}", receipt_handle=f"{queue}-{i}", body="")
        for i in range(count)
    ]


def test_full_batches_go_at_once_without_waiting_for_the_window() -> None:
    client = FakeSQS()
    acker = Acker(window=60)
    acker.delete(messages(client, 20))
    deadline = time.monotonic() + 5
    while len(client.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [len(handles) for _, handles in client.calls] == [10, 10]
    acker.close()


def test_a_partial_batch_goes_after_the_window() -> None:
    client = FakeSQS()
    acker = Acker(window=0.2)
    started = time.monotonic()
    acker.delete(messages(client, 3))
    while not client.calls and time.monotonic() - started < 5:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert client.calls == [("delete", ["q-0", "q-1", "q-2"])]
    assert 0.15 <= elapsed < 2
    acker.close()


def test_an_ack_is_not_held_back_by_an_earlier_one_waiting_for_its_retry() -> None:
    client = FakeSQS()
    first, second = messages(client, 2)
    client.fail[first.receipt_handle] = ("InternalError", False)  # retried after 0.2 s
    acker = Acker(window=0.01)
    acker.delete([first])
    deadline = time.monotonic() + 5
    while not client.calls and time.monotonic() < deadline:
        time.sleep(0.005)
    acker.delete([second])
    while len(client.calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert client.calls == [
        ("delete", [first.receipt_handle]),
        ("delete", [second.receipt_handle]),  # within its window, not with the retry
        ("delete", [first.receipt_handle]),
    ]
    acker.close()


def test_acks_one_at_a_time_go_in_full_batches() -> None:
    client = FakeSQS()
    acker = Acker(window=60)
    for message in messages(client, 30):
        acker.delete([message])
    deadline = time.monotonic() + 5
    while len(client.calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [len(handles) for _, handles in client.calls] == [10, 10, 10]
    acker.close()


def test_acks_from_many_threads_share_batches() -> None:
    """50 threads ack at once: full batches, and the rest within one window (0.5 s, long
    next to the acks' spread even on a busy machine)."""
    client = FakeSQS()
    acker = Acker(window=0.5)
    batch = messages(client, 50)
    start = threading.Barrier(len(batch))

    def ack(message: Any) -> None:
        start.wait(30)
        acker.delete([message])

    threads = [threading.Thread(target=ack, args=(m,)) for m in batch]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert acker.flush(5)
    assert sorted(h for _, handles in client.calls for h in handles) == sorted(
        m.receipt_handle for m in batch
    )
    assert len(client.calls) <= 6
    acker.close()


def test_deletes_and_visibility_changes_are_separate_batches_per_queue() -> None:
    client = FakeSQS()
    acker = Acker(window=0.05)
    acker.delete(messages(client, 2, "a"))
    acker.set_visibility(messages(client, 2, "b"), 0)
    acker.set_visibility(messages(client, 1, "c"), 30)
    assert acker.flush(5)
    assert sorted(client.calls) == [
        ("delete", ["a-0", "a-1"]),
        ("visibility=0", ["b-0", "b-1"]),
        ("visibility=30", ["c-0"]),
    ]
    acker.close()


def test_stale_receipts_are_quiet_and_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeSQS()
    client.fail["q-1"] = ("ReceiptHandleIsInvalid", True)
    acker = Acker(window=0.01)
    with caplog.at_level(logging.INFO, logger="sqsbus"):
        acker.delete(messages(client, 3))
        assert acker.flush(5)
    assert len(client.calls) == 1
    assert acker.failed == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    acker.close()


def test_settling_messages_of_a_queue_deleted_meanwhile_is_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reply queue its owner deleted took its messages along: nothing to warn about."""
    client = FakeSQS()
    client.queue_deleted = True
    deleted: list[str] = []
    acker = Acker(window=0.01, on_deleted=lambda ms: deleted.extend(m.message_id for m in ms))
    with caplog.at_level(logging.INFO, logger="sqsbus"):
        acker.delete(messages(client, 2))
        acker.set_visibility(messages(client, 1, queue="other"), 0)
        assert acker.flush(5)
    acker.close()
    assert acker.failed == 0
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    assert sorted(deleted) == ["m0", "m1"]  # their large payloads can go too


def test_transient_failures_are_retried_until_they_succeed() -> None:
    client = FakeSQS()
    client.throttle_next = 2  # the whole call is throttled twice
    client.fail["q-0"] = ("InternalError", False)  # then one entry fails on SQS's side
    acker = Acker(window=0.01)
    acker.delete(messages(client, 2))
    assert acker.flush(10)
    deleted = [h for _, handles in client.calls for h in handles]
    assert deleted.count("q-0") == 2  # failed once, then deleted
    assert deleted.count("q-1") == 1
    assert acker.failed == 0
    acker.close()


def test_refused_entries_are_reported_with_their_ids(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeSQS()
    client.fail["q-1"] = ("AccessDenied", True)
    acker = Acker(window=0.01)
    with caplog.at_level(logging.ERROR, logger="sqsbus"):
        acker.delete(messages(client, 2))
        assert acker.flush(5)
    assert acker.failed == 1
    assert "m1" in caplog.text and "AccessDenied" in caplog.text
    acker.close()


def test_close_sends_everything_pending() -> None:
    client = FakeSQS()
    acker = Acker(window=3600)
    acker.delete(messages(client, 4))
    acker.close()
    assert client.calls == [("delete", ["q-0", "q-1", "q-2", "q-3"])]
    # After close, settling still happens (synchronously).
    acker.delete(messages(client, 1, "late"))
    assert client.calls[-1] == ("delete", ["late-0"])


def test_on_deleted_gets_only_the_messages_sqs_confirmed_deleted() -> None:
    """Large payloads are deleted from this hook: never for a message that may come back."""
    client = FakeSQS()
    client.fail = {"q-1": ("ReceiptHandleIsInvalid", True), "q-2": ("InternalError", False)}
    deleted: list[str] = []
    acker = Acker(window=0.01, on_deleted=lambda ms: deleted.extend(m.message_id for m in ms))
    batch = messages(client, 4)
    acker.delete(batch)
    acker.set_visibility(messages(client, 1, queue="other"), 0)
    assert acker.flush(timeout=10)
    acker.close()
    # m1's receipt was stale (SQS may deliver it again); m2 succeeded on its retry.
    assert sorted(deleted) == ["m0", "m2", "m3"]


def test_receivers_wait_while_acks_are_backlogged_and_resume_once_sent() -> None:
    class SlowSQS(FakeSQS):
        def __init__(self) -> None:
            super().__init__()
            self.gate = threading.Event()

        def delete_message_batch(
            self, QueueUrl: str, Entries: list[dict[str, Any]]
        ) -> dict[str, Any]:
            self.gate.wait(10)
            return super().delete_message_batch(QueueUrl, Entries)

    client = SlowSQS()
    acker = Acker(window=0.01)
    backlog = messages(client, MAX_BACKLOG + 11)
    acker.delete(backlog[:10])  # a full batch: sent at once, and SQS does not answer yet
    acker.delete(backlog[10:])
    assert not acker.wait_for_room(0.05), "a consumer ahead of its acks must pause receivers"
    client.gate.set()
    assert acker.wait_for_room(5)
    assert acker.flush(5)
    assert sorted(h for _, handles in client.calls for h in handles) == sorted(
        m.receipt_handle for m in backlog
    )
    acker.close()
