"""What is in the queues: message counts, FIFO flag and dead-letter settings per queue.

One ``GetQueueAttributes`` per queue (a few in parallel), after ``ListQueues`` (every page).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

from sqsbus.admin.session import AdminSession
from sqsbus.errors import QueueDoesNotExist
from sqsbus.queues import QueueRef, name_from_url

__all__ = [
    "DeadLetterPolicy",
    "QueueInfo",
    "dead_letter_policy",
    "list_queues",
    "map_in_daemon_threads",
    "queue_info",
]

#: GetQueueAttributes calls in flight at once when listing (``queues``, ``top``).
PARALLEL_READS: Final = 8

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class DeadLetterPolicy:
    """A queue's ``RedrivePolicy``: messages received more than ``max_receive_count`` times
    move to the queue ``target_arn``."""

    target_arn: str
    max_receive_count: int

    @property
    def target_name(self) -> str:
        return self.target_arn.rsplit(":", 1)[-1]


def dead_letter_policy(attributes: dict[str, str]) -> DeadLetterPolicy | None:
    """The ``RedrivePolicy`` attribute parsed, or None (also when it is unreadable)."""
    raw = attributes.get("RedrivePolicy")
    if not raw:
        return None
    try:
        policy = json.loads(raw)
        return DeadLetterPolicy(str(policy["deadLetterTargetArn"]), int(policy["maxReceiveCount"]))
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class QueueInfo:
    """One queue's state as SQS reports it (counts are approximate, as SQS says)."""

    name: str
    sqs_name: str
    url: str
    arn: str | None
    visible: int
    in_flight: int
    delayed: int
    fifo: bool
    dead_letter: DeadLetterPolicy | None
    #: Queues (SQS names) whose dead-letter queue this is, among those listed.
    dead_letter_for: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        dead_letter = None
        if self.dead_letter is not None:
            dead_letter = {
                "queue": self.dead_letter.target_name,
                "arn": self.dead_letter.target_arn,
                "max_receive_count": self.dead_letter.max_receive_count,
            }
        return {
            "name": self.name,
            "sqs_name": self.sqs_name,
            "url": self.url,
            "arn": self.arn,
            "visible": self.visible,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "fifo": self.fifo,
            "dead_letter": dead_letter,
            "dead_letter_for": list(self.dead_letter_for),
        }


def _count(attributes: dict[str, str], key: str) -> int:
    try:
        return int(attributes.get(key, 0))
    except ValueError:
        return 0


def queue_info(session: AdminSession, ref: QueueRef) -> QueueInfo:
    """Fresh counts and settings of one queue (one ``GetQueueAttributes``)."""
    return info_from_attributes(session, ref, session.directory.attributes(ref, fresh=True))


def info_from_attributes(
    session: AdminSession, ref: QueueRef, attributes: dict[str, str]
) -> QueueInfo:
    """The :class:`QueueInfo` of ``ref`` that its queue ``attributes`` describe."""
    sqs_name = name_from_url(ref.url)
    return QueueInfo(
        name=ref.name if ref.predefined else session.short_name(ref.name),
        sqs_name=sqs_name,
        url=ref.url,
        arn=attributes.get("QueueArn"),
        visible=_count(attributes, "ApproximateNumberOfMessages"),
        in_flight=_count(attributes, "ApproximateNumberOfMessagesNotVisible"),
        delayed=_count(attributes, "ApproximateNumberOfMessagesDelayed"),
        fifo=attributes.get("FifoQueue", "false").lower() == "true",
        dead_letter=dead_letter_policy(attributes),
    )


def _maybe_info(session: AdminSession, ref: QueueRef) -> QueueInfo | None:
    try:
        return queue_info(session, ref)
    except QueueDoesNotExist:
        return None  # deleted since it was listed


def list_queues(session: AdminSession) -> list[QueueInfo]:
    """Every queue under the prefix (or every predefined queue), sorted by name."""
    refs = session.all_queues()
    if not refs:
        return []
    infos = map_in_daemon_threads(lambda ref: _maybe_info(session, ref), refs)
    return link_dead_letters([info for info in infos if info])


def map_in_daemon_threads(
    function: Callable[[_Item], _Result], items: Sequence[_Item]
) -> list[_Result]:
    """``function`` of each item, in order, run on up to :data:`PARALLEL_READS` daemon
    threads: a request the network holds never keeps Ctrl-C from ending the process (a
    thread pool's workers are joined at exit, so it would wait for the request's timeout).
    The first exception raised is raised here once every thread is done."""
    results: dict[int, _Result] = {}
    errors: list[BaseException] = []
    next_index = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            try:
                results[index] = function(items[index])
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [
        threading.Thread(target=work, name="sqsbus-read", daemon=True)
        for _ in range(min(PARALLEL_READS, len(items)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [results[index] for index in range(len(items))]


def link_dead_letters(infos: list[QueueInfo]) -> list[QueueInfo]:
    """``infos`` with each one's ``dead_letter_for``: the listed queues whose dead letters go
    there."""
    sources: dict[str, list[str]] = {}
    for info in infos:
        if info.dead_letter is not None:
            sources.setdefault(info.dead_letter.target_arn, []).append(info.sqs_name)
    return [replace(info, dead_letter_for=tuple(sources.get(info.arn or "", ()))) for info in infos]
