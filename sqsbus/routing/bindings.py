"""Topic bindings shared by every process, so that no process drops what another bound.

SNS filter policies cannot say AMQP's ``*`` and ``#``: a topic binding's subscription
filter admits the literal prefix before the first wildcard (a superset), and the consumer
matches the exact pattern. But a process knows only its own bindings, while the queue's
subscription holds every process's conditions: during a rolling deploy an old worker would
drop the messages of a binding only the new release makes.

So each topic binding is also recorded on its queue, in a tag (:data:`BINDING_TAG`, its
value the exchange and pattern), readable by every process. A message that matches none of
this process's patterns is delivered if a recorded pattern matches it, or if a condition of
the subscription's filter that no known pattern explains admits it (a binding of a process
that could not record it); it is dropped, with a log line, only when every condition is
explained and no pattern matches. If the tags or the filter cannot be read, it is delivered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from sqsbus.aws import call
from sqsbus.errors import SQSBusError
from sqsbus.limits import MAX_TAG_VALUE_LENGTH
from sqsbus.queues import QueueRef

logger = logging.getLogger(__name__)

#: Tag key prefix: one tag per topic binding of the queue (exchange and pattern).
BINDING_TAG: Final = "sqsbus:bind:"
#: Seconds recorded bindings and subscription filters are reused before being read again.
CACHE_SECONDS: Final = 15.0
#: Before dropping, a read older than this is refreshed (a binding may have just been made).
FRESH_SECONDS: Final = 1.0

#: An SNS filter condition on the routing key: an exact key, ``{"prefix": p}``, or
#: ``{"exists": False}`` (the empty key).
Condition = str | dict[str, Any]


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: words separated by ``.``, ``*`` one word, ``#`` zero or more."""
    words, parts = key.split("."), pattern.split(".")
    # positions[i]: the pattern can have consumed exactly the first i words.
    positions = {0}
    for part in parts:
        if part == "#":
            positions = set(range(min(positions), len(words) + 1))
        else:
            positions = {i + 1 for i in positions if i < len(words) and part in ("*", words[i])}
        if not positions:
            return False
    return len(words) in positions


def condition_admits(condition: Condition, key: str) -> bool:
    """Whether the SNS filter ``condition`` lets a message with routing key ``key`` through."""
    if isinstance(condition, str):
        return condition == key
    if "prefix" in condition:
        return key.startswith(str(condition["prefix"]))
    if condition.get("exists") is False:
        return key == ""
    return True  # a condition sqsbus does not write: assume it admits


def binding_tag(exchange: str, pattern: str) -> tuple[str, str] | None:
    """The tag (key, value) recording a topic binding; None if it does not fit in a tag."""
    value = base64.b64encode(json.dumps([exchange, pattern]).encode()).decode()
    if len(value) > MAX_TAG_VALUE_LENGTH:
        return None
    digest = hashlib.sha256(f"{exchange}\0{pattern}".encode()).hexdigest()[:16]
    return BINDING_TAG + digest, value


def recorded_patterns(tags: Mapping[str, str], exchange: str) -> set[str]:
    """The patterns recorded in a queue's tags for ``exchange`` (unreadable tags skipped)."""
    found: set[str] = set()
    for key, value in tags.items():
        if not key.startswith(BINDING_TAG):
            continue
        try:
            bound, pattern = json.loads(base64.b64decode(value, validate=True))
        except (ValueError, TypeError, binascii.Error):
            continue
        if bound == exchange and isinstance(pattern, str):
            found.add(pattern)
    return found


class SharedBindings:
    """Records topic bindings on their queues, and decides whether a message that no
    binding of this process matches is still meant for the queue (thread-safe)."""

    def __init__(
        self,
        condition_of: Callable[[str], Condition | None],
        read_filter: Callable[[str, QueueRef], list[Condition] | None],
    ) -> None:
        #: The SNS condition a pattern is subscribed with (None: no filter).
        self._condition_of = condition_of
        #: The conditions of the queue's subscription to an exchange (None: no filter).
        self._read_filter = read_filter
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, set[str], list[Condition] | None]] = {}

    def record(self, queue: QueueRef, exchange: str, pattern: str) -> None:
        """Tag ``queue`` with the binding (best effort: a failure is logged)."""
        tag = binding_tag(exchange, pattern)
        if tag is None:
            logger.warning(
                "topic binding %r of queue %s to exchange %s is too long to record on the "
                "queue; consumers in other processes cannot see it and deliver what they "
                "cannot rule out",
                pattern,
                queue.name,
                exchange,
            )
            return
        try:
            call(
                queue.client,
                "tag_queue",
                f"record a binding of queue {queue.name!r}",
                QueueUrl=queue.url,
                Tags=dict([tag]),
            )
        except SQSBusError as exc:
            logger.warning("could not record binding %r on queue %s: %s", pattern, queue.name, exc)
        with self._lock:
            self._cache.pop((exchange, queue.url), None)

    def forget(self, queue: QueueRef, exchange: str) -> None:
        """Remove the recorded bindings of ``queue`` to ``exchange`` (best effort)."""
        try:
            tags = self._tags(queue)
            keys = [
                key
                for key in tags
                if key.startswith(BINDING_TAG) and recorded_patterns({key: tags[key]}, exchange)
            ]
            if keys:
                call(
                    queue.client,
                    "untag_queue",
                    f"forget bindings of queue {queue.name!r}",
                    QueueUrl=queue.url,
                    TagKeys=keys,
                )
        except SQSBusError as exc:
            logger.warning("could not remove bindings recorded on queue %s: %s", queue.name, exc)
        with self._lock:
            self._cache.pop((exchange, queue.url), None)

    def patterns(self, queue: QueueRef, exchange: str) -> set[str]:
        """The patterns recorded on ``queue`` for ``exchange`` (read now)."""
        return recorded_patterns(self._tags(queue), exchange)

    def refusal(self, queue: QueueRef, exchange: str, key: str, known: Iterable[str]) -> str | None:
        """Why no binding of ``queue`` to ``exchange`` admits routing key ``key`` (a message
        that none of this process's patterns ``known`` matches), or None to deliver it."""
        known = set(known)
        for fresh in (False, True):
            try:
                recorded, conditions = self._read(queue, exchange, fresh=fresh)
            except SQSBusError as exc:
                logger.warning(
                    "cannot read the bindings of queue %s (%s); delivering what it received",
                    queue.name,
                    exc,
                )
                return None
            patterns = known | recorded
            if any(topic_matches(pattern, key) for pattern in patterns):
                return None
            explained = {_encoded(self._condition_of(pattern)) for pattern in patterns}
            # No filter admits everything; otherwise the conditions that admit this key.
            admitting: list[Condition | None] = (
                [None]
                if conditions is None
                else [c for c in conditions if condition_admits(c, key)]
            )
            if any(_encoded(c) not in explained for c in admitting):
                return None  # a binding this process cannot see admits it
        return (
            f"no binding of queue {queue.name} to exchange {exchange} matches routing key "
            f"{key!r} (bindings: {', '.join(sorted(patterns)) or 'none'})"
        )

    def _read(
        self, queue: QueueRef, exchange: str, *, fresh: bool
    ) -> tuple[set[str], list[Condition] | None]:
        key = (exchange, queue.url)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        limit = FRESH_SECONDS if fresh else CACHE_SECONDS
        if cached is not None and now - cached[0] < limit:
            return cached[1], cached[2]
        recorded = recorded_patterns(self._tags(queue), exchange)
        conditions = self._read_filter(exchange, queue)
        with self._lock:
            self._cache[key] = (now, recorded, conditions)
        return recorded, conditions

    @staticmethod
    def _tags(queue: QueueRef) -> dict[str, str]:
        answer = call(
            queue.client,
            "list_queue_tags",
            f"read tags of queue {queue.name!r}",
            QueueUrl=queue.url,
        )
        return {str(k): str(v) for k, v in (answer.get("Tags") or {}).items()}


def _encoded(condition: Condition | None) -> str:
    return json.dumps(condition, sort_keys=True)
