"""A hand-written fake of botocore's SQS client for unit tests of sending (no network)."""

from __future__ import annotations

import threading
import time
from typing import Any

from botocore.exceptions import ClientError

from sqsbus.queues import QueueRef


class FakeSQS:
    """Records SendMessageBatch calls; slow enough for publishers to pile up."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.batches: list[list[str]] = []
        #: Every entry sent, as given (without its batch Id).
        self.entries: list[dict[str, Any]] = []
        #: What GetQueueAttributes answers.
        self.attributes: dict[str, str] = {}
        self.refuse: dict[str, tuple[str, bool]] = {}  # body -> (code, sender_fault)
        self.throttle_next = 0
        self.lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        time.sleep(self.delay)
        with self.lock:
            if self.throttle_next:
                self.throttle_next -= 1
                raise ClientError({"Error": {"Code": "ThrottlingException"}}, "SendMessageBatch")
            self.batches.append([e["MessageBody"] for e in Entries])
            self.entries += [{k: v for k, v in e.items() if k != "Id"} for e in Entries]
            ok, failed = [], []
            for entry in Entries:
                refusal = self.refuse.pop(entry["MessageBody"], None)
                if refusal is None:
                    ok.append({"Id": entry["Id"], "MessageId": f"id-{entry['MessageBody']}"})
                else:
                    code, sender_fault = refusal
                    failed.append({"Id": entry["Id"], "Code": code, "SenderFault": sender_fault})
            return {"Successful": ok, "Failed": failed}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        return {"Attributes": dict(self.attributes)}


def ref(client: FakeSQS, name: str = "q") -> QueueRef:
    return QueueRef(name, f"https://sqs.example/1/{name}", client, scope=("test",))
