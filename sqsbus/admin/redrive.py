"""Redrive: move a dead-letter queue's messages back to where they came from.

:func:`redrive` uses SQS's own ``StartMessageMoveTask`` when the endpoint offers it and no
limit is asked for: SQS then moves each message back to its own source queue. Otherwise it
moves client-side (:mod:`sqsbus.admin.transfer`), sending each message to the source queue it
names (``sqsbus.dead-letter-source``, set when sqsbus dead-letters a message, or SQS's
``DeadLetterQueueSourceArn``), else to the dead-letter queue's only source queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from sqsbus.admin.inventory import dead_letter_policy
from sqsbus.admin.session import AdminSession
from sqsbus.admin.transfer import Mover, ProgressCallback, Route, TransferResult, move
from sqsbus.aws import call
from sqsbus.engine.forwarding import DEAD_LETTER_SOURCE_ATTRIBUTE
from sqsbus.engine.messages import Received
from sqsbus.errors import QueueError, SQSBusError
from sqsbus.limits import MAX_LIST_RESULTS, MAX_MOVE_TASK_RESULTS
from sqsbus.queues import QueueRef, name_from_url

__all__ = ["dead_letter_sources", "redrive"]

#: Seconds between two looks at a native move task.
TASK_POLL_SECONDS: Final = 1.0


def dead_letter_sources(session: AdminSession, dlq: QueueRef) -> list[QueueRef]:
    """The queues whose redrive policy sends their dead letters to ``dlq``."""
    dlq_arn = session.directory.attributes(dlq, fresh=True).get("QueueArn", "")
    if session.options.predefined_queues:
        found = []
        for ref in session.all_queues():
            policy = dead_letter_policy(session.directory.attributes(ref, fresh=True))
            if policy is not None and policy.target_arn == dlq_arn:
                found.append(ref)
        return found
    params: dict[str, Any] = {"QueueUrl": dlq.url, "MaxResults": MAX_LIST_RESULTS}
    urls: list[str] = []
    while True:
        answer = call(
            dlq.client,
            "list_dead_letter_source_queues",
            f"list the source queues of {dlq.name!r}",
            **params,
        )
        urls.extend(answer.get("queueUrls") or [])
        if not answer.get("NextToken"):
            break
        params["NextToken"] = answer["NextToken"]
    scope = session.directory.scope(None)
    return [QueueRef(name_from_url(url), url, dlq.client, scope=scope) for url in sorted(urls)]


def redrive(
    session: AdminSession,
    dlq: QueueRef,
    destination: QueueRef | None = None,
    *,
    limit: int | None = None,
    native: bool = True,
    on_progress: ProgressCallback | None = None,
    on_note: Callable[[str], None] | None = None,
) -> TransferResult:
    """Move the messages of ``dlq`` back to ``destination``, by default its source queue."""
    attributes = session.directory.attributes(dlq, fresh=True)
    total = int(attributes.get("ApproximateNumberOfMessages", 0) or 0)
    sources = [] if destination is not None else dead_letter_sources(session, dlq)
    if destination is None and not sources:
        raise QueueError(
            f"no queue has {dlq.name!r} as its dead-letter queue (RedrivePolicy); "
            "name the destination with --to QUEUE"
        )
    if native and limit is None:
        destination_arn = None
        if destination is not None:
            destination_arn = session.directory.attributes(destination, fresh=True)["QueueArn"]
        result = _native_move(dlq, attributes["QueueArn"], destination_arn, on_progress, on_note)
        if result is not None:
            return result
    if destination is not None:
        return move(
            dlq,
            destination,
            limit=limit,
            fifo_group_id=session.options.fifo_message_group_id,
            on_progress=on_progress,
            total=total,
        )
    names = ", ".join(session.short_name(ref.name) for ref in sources)
    mover = Mover(
        dlq,
        _back_to_source(sources),
        fifo_group_id=session.options.fifo_message_group_id,
        unroutable=f"it does not say which of {names} it came from: choose one with --to QUEUE",
    )
    if len(sources) == 1:
        mover.result.destination = sources[0].name
    return mover.run(limit=limit, on_progress=on_progress, total=total)


def _back_to_source(sources: list[QueueRef]) -> Route:
    """Each message to the queue it says it came from, else to the only source queue.

    A message says so in ``sqsbus.dead-letter-source`` (moved by sqsbus) or in SQS's
    ``DeadLetterQueueSourceArn`` (moved by SQS, where the endpoint reports it).
    """
    by_name = {ref.name: ref for ref in sources}
    by_name.update((name_from_url(ref.url), ref) for ref in sources)

    def route(message: Received) -> QueueRef | None:
        named = message.string_attributes().get(DEAD_LETTER_SOURCE_ATTRIBUTE)
        arn = message.attributes.get("DeadLetterQueueSourceArn")
        for name in (named, arn.rsplit(":", 1)[-1] if arn else None):
            if name and name in by_name:
                return by_name[name]
        return sources[0] if len(sources) == 1 else None

    return route


def _native_move(
    dlq: QueueRef,
    dlq_arn: str,
    destination_arn: str | None,
    on_progress: ProgressCallback | None,
    on_note: Callable[[str], None] | None,
) -> TransferResult | None:
    """Run ``StartMessageMoveTask`` to completion; None if the endpoint does not offer it."""
    params = {"SourceArn": dlq_arn}
    if destination_arn:
        params["DestinationArn"] = destination_arn
    try:
        answer = call(dlq.client, "start_message_move_task", "start a message move task", **params)
    except SQSBusError as exc:
        if on_note is not None:
            reason = str(exc).splitlines()[0][:160]
            on_note(f"SQS's message move task is not available here ({reason}); moving client-side")
        return None
    handle = str(answer.get("TaskHandle", ""))
    target = destination_arn.rsplit(":", 1)[-1] if destination_arn else None
    result = TransferResult(native=True, destination=target)
    try:
        while True:
            time.sleep(TASK_POLL_SECONDS)
            task = _task_status(dlq, dlq_arn, handle)
            result.moved = int(task.get("ApproximateNumberOfMessagesMoved", 0) or 0)
            to_move = task.get("ApproximateNumberOfMessagesToMove")
            result.total = int(to_move) if to_move is not None else None
            if on_progress is not None:
                on_progress(result)
            status = str(task.get("Status", ""))
            if status not in ("RUNNING", "CANCELLING"):
                break
    except KeyboardInterrupt:
        try:
            call(dlq.client, "cancel_message_move_task", "cancel the move task", TaskHandle=handle)
        except SQSBusError as exc:
            if on_note is not None:
                on_note(f"could not cancel the move task, it goes on in SQS: {exc}")
        raise
    if status != "COMPLETED":
        result.error = (
            f"the move task ended {status}: {task.get('FailureReason', 'no reason given')}"
        )
        if result.total is not None:
            result.failed = max(0, result.total - result.moved)
    return result


def _task_status(dlq: QueueRef, dlq_arn: str, handle: str) -> dict[str, Any]:
    answer = call(
        dlq.client,
        "list_message_move_tasks",
        "read the move task's progress",
        SourceArn=dlq_arn,
        MaxResults=MAX_MOVE_TASK_RESULTS,
    )
    tasks = answer.get("Results") or []
    for task in tasks:
        if task.get("TaskHandle") == handle:
            return dict(task)
    return dict(tasks[0]) if tasks else {"Status": "UNKNOWN"}
