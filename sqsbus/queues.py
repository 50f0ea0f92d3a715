"""Queue names, URLs and creation.

* :func:`entity_name` turns an AMQP-style name into a legal SQS name exactly as
  Kombu's SQS transport does (so both find the same queues), and rejects names
  SQS would refuse.
* :class:`QueueDirectory` resolves names to :class:`QueueRef` (URL + the client
  to use for it), filling its cache from ``ListQueues`` (all pages), creating
  missing queues with the configured attributes, or, with ``predefined_queues``,
  using only those queues and never listing or creating any.
"""

from __future__ import annotations

import json
import logging
import re
import string
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqsbus.aws import AWS, CredentialSource, call
from sqsbus.config import Options, PredefinedQueue
from sqsbus.errors import (
    ConfigurationError,
    InvalidQueueError,
    QueueDeletedRecently,
    QueueDoesNotExist,
    SQSBusError,
    UndefinedQueueError,
)
from sqsbus.limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_LIST_RESULTS,
    MAX_QUEUE_NAME_LENGTH,
    MAX_RETENTION_SECONDS,
)

logger = logging.getLogger(__name__)

FIFO_SUFFIX: Final = ".fifo"
#: Seconds queue attributes read from SQS are reused before being read again.
ATTRIBUTE_CACHE_SECONDS: Final = 300.0
#: Dead-letter queues keep messages for SQS's maximum retention (14 days).
DEAD_LETTER_RETENTION_SECONDS: Final = MAX_RETENTION_SECONDS

_TRANSLATION: Final = {ord(c): "_" for c in string.punctuation if c not in "-_."}
_TRANSLATION[ord(".")] = "-"
_ILLEGAL: Final = re.compile(r"[^A-Za-z0-9_-]")


def entity_name(name: str) -> str:
    """Translate ``name`` into a legal SQS queue name.

    Same rule as Kombu's SQS transport: ``.`` becomes ``-``, other punctuation
    except ``-`` and ``_`` becomes ``_``, and a trailing ``.fifo`` is kept.
    Characters Kombu passes through but SQS refuses (spaces, non-ASCII) also
    become ``_``.
    """
    fifo = name.endswith(FIFO_SUFFIX)
    stem = name[: -len(FIFO_SUFFIX)] if fifo else name
    stem = _ILLEGAL.sub("_", stem.translate(_TRANSLATION))
    return stem + FIFO_SUFFIX if fifo else stem


def canonical_name(name: str, prefix: str = "") -> str:
    """Prefix and translate ``name``; raise if the result is not a valid SQS name."""
    result = entity_name(prefix + name)
    stem = result[: -len(FIFO_SUFFIX)] if result.endswith(FIFO_SUFFIX) else result
    if not stem:
        raise ConfigurationError(f"queue name {name!r} is empty after translation")
    if len(result) > MAX_QUEUE_NAME_LENGTH:
        raise ConfigurationError(
            f"queue name {result!r} is {len(result)} characters; SQS allows at most "
            f"{MAX_QUEUE_NAME_LENGTH} (prefix and .fifo included). Use a shorter name "
            "or queue_name_prefix."
        )
    return result


def name_from_url(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class QueueRef:
    """A resolved queue: its SQS name and URL, and the client that may use it."""

    name: str
    url: str
    client: Any
    predefined: PredefinedQueue | None = None
    #: Endpoint, region and credential identity: refs with equal ``url`` and ``scope``
    #: may share batch calls across connections.
    scope: tuple[str, ...] = ()

    @property
    def is_fifo(self) -> bool:
        return self.name.endswith(FIFO_SUFFIX)

    def __repr__(self) -> str:
        return f"QueueRef({self.name!r}, {self.url!r})"


class QueueAttributes:
    """Queue attributes read from SQS (``GetQueueAttributes``), cached per queue URL;
    thread-safe.

    What publishing needs to know of a queue (size limit, content-based deduplication).
    A :class:`QueueDirectory` is one; tools that hold only queue refs use one alone.
    """

    def __init__(self) -> None:
        self._attributes: dict[str, tuple[float, dict[str, str]]] = {}
        self._attributes_lock = threading.Lock()

    def attributes(self, ref: QueueRef, *, fresh: bool = False) -> dict[str, str]:
        """The queue's attributes, cached for :data:`ATTRIBUTE_CACHE_SECONDS`."""
        now = time.monotonic()
        with self._attributes_lock:
            cached = self._attributes.get(ref.url)
        if cached is not None and not fresh and now - cached[0] < ATTRIBUTE_CACHE_SECONDS:
            return cached[1]
        answer = call(
            ref.client,
            "get_queue_attributes",
            f"read attributes of queue {ref.name!r}",
            QueueUrl=ref.url,
            AttributeNames=["All"],
        )
        attributes = {str(k): str(v) for k, v in answer.get("Attributes", {}).items()}
        with self._attributes_lock:
            self._attributes[ref.url] = (now, attributes)
        return attributes

    def max_message_size(self, ref: QueueRef) -> int:
        value = self.attributes(ref).get("MaximumMessageSize")
        return int(value) if value else DEFAULT_MAX_MESSAGE_BYTES

    def held_messages(self, ref: QueueRef) -> str | None:
        """What still waits in ``ref`` out of sight (in flight: someone holds it; delayed),
        as read now; None if nothing does. A queue holding such messages is never deleted."""
        attributes = self.attributes(ref, fresh=True)
        in_flight = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
        delayed = int(attributes.get("ApproximateNumberOfMessagesDelayed", 0))
        if not in_flight and not delayed:
            return None
        return f"{in_flight} message(s) in flight and {delayed} delayed"

    def content_based_deduplication(self, ref: QueueRef) -> bool:
        return self.attributes(ref).get("ContentBasedDeduplication", "false").lower() == "true"


class QueueDirectory(QueueAttributes):
    """Resolves, creates and caches queues for one connection (thread-safe)."""

    #: ``MaxResults`` of each ``ListQueues`` page (SQS's maximum).
    list_page_size = MAX_LIST_RESULTS

    def __init__(self, aws: AWS, options: Options) -> None:
        super().__init__()
        self.aws = aws
        self.options = options
        self._urls: dict[str, str] = {}
        self._listed = False
        self._lock = threading.RLock()
        validate_predefined(options)

    # -- naming ---------------------------------------------------------------

    def sqs_name(self, queue: str) -> str:
        return canonical_name(queue, self.options.queue_name_prefix)

    def _predefined(self, queue: str) -> PredefinedQueue:
        name = self.sqs_name(queue)
        predefined = self.options.predefined_queues
        found = predefined.get(name) or predefined.get(queue)
        if found is None:
            raise UndefinedQueueError(
                f"queue {name!r} is not defined in 'predefined_queues'; with predefined_queues "
                "set, sqsbus uses only those queues and never creates or lists any. Add it "
                f"(known: {', '.join(sorted(predefined)) or 'none'})."
            )
        return found

    def client_for(self, predefined: PredefinedQueue | None) -> Any:
        if predefined is None:
            return self.aws.client("sqs")
        source = None
        if predefined.access_key_id and predefined.secret_access_key:
            source = CredentialSource(predefined.access_key_id, predefined.secret_access_key)
        return self.aws.client("sqs", region=predefined.region, source=source)

    def scope(self, predefined: PredefinedQueue | None) -> tuple[str, ...]:
        options = self.options
        region = (predefined.region if predefined else None) or options.region
        key = (predefined.access_key_id if predefined else None) or options.access_key_id
        return (options.endpoint_url or "", region, key or "", options.sts_role_arn or "")

    # -- resolution -----------------------------------------------------------

    def get(self, queue: str) -> QueueRef:
        """The queue's ref; raise :class:`QueueDoesNotExist` if it does not exist."""
        if self.options.predefined_queues:
            predefined = self._predefined(queue)
            return QueueRef(
                predefined.name, predefined.url, self.client_for(predefined), predefined
            )
        name = self.sqs_name(queue)
        url = self._lookup(name)
        if url is None:
            raise QueueDoesNotExist(f"queue {name!r} does not exist in SQS")
        return QueueRef(name, url, self.client_for(None), scope=self.scope(None))

    def ensure(self, queue: str, *, temporary: bool = False) -> QueueRef:
        """The queue's ref, creating the queue if needed.

        A queue created here gets the ``redrive_policy`` option's dead-letter queue
        unless it is ``temporary`` (private to a connection, e.g. a reply queue).
        """
        return self.declare(queue, temporary=temporary)[0]

    def declare(
        self, queue: str, *, temporary: bool = False, tags: Mapping[str, str] | None = None
    ) -> tuple[QueueRef, bool]:
        """Like :meth:`ensure`; also True if the queue was created now (tagged with ``tags``)."""
        try:
            return self.get(queue), False
        except QueueDoesNotExist:
            name = self.sqs_name(queue)
            return self._create(name, self._redrive_attributes(name, temporary), tags)

    def exists(self, queue: str) -> bool:
        try:
            self.get(queue)
        except QueueDoesNotExist:
            return False
        return True

    def _lookup(self, name: str) -> str | None:
        with self._lock:
            if not self._listed:
                self.refresh()
            url = self._urls.get(name)
        if url is not None:
            return url
        client = self.aws.client("sqs")
        try:
            answer = call(client, "get_queue_url", f"look up queue {name!r}", QueueName=name)
        except QueueDoesNotExist:
            return None
        with self._lock:
            self._urls[name] = answer["QueueUrl"]
        return str(answer["QueueUrl"])

    def refresh(self) -> None:
        """Fill the URL cache from ``ListQueues``, following every page."""
        urls = self.list_urls()
        with self._lock:
            self._urls.update(urls)
            self._listed = True

    def list_urls(self) -> dict[str, str]:
        """SQS name -> URL of every queue under the prefix (``ListQueues``, all pages)."""
        client = self.aws.client("sqs")
        prefix = self.options.queue_name_prefix
        params: dict[str, Any] = {"MaxResults": self.list_page_size}
        if prefix:
            params["QueueNamePrefix"] = entity_name(prefix)
        urls: dict[str, str] = {}
        while True:
            answer = call(client, "list_queues", "list queues", **params)
            for url in answer.get("QueueUrls", []):
                urls[name_from_url(url)] = url
            token = answer.get("NextToken")
            if not token:
                break
            params["NextToken"] = token
        return urls

    def cached_names(self) -> list[str]:
        with self._lock:
            return sorted(self._urls)

    def dead_letter_queue_name(self, name: str) -> str | None:
        """SQS name of the dead-letter queue for queue ``name`` (FIFO ones get a FIFO DLQ)."""
        policy = self.options.redrive_policy
        if policy is None:
            return None
        dead = self.sqs_name(policy.dead_letter_queue)
        stem = dead.removesuffix(FIFO_SUFFIX)
        return stem + FIFO_SUFFIX if name.endswith(FIFO_SUFFIX) else stem

    def _redrive_attributes(self, name: str, temporary: bool) -> dict[str, str]:
        dead = self.dead_letter_queue_name(name)
        policy = self.options.redrive_policy
        if temporary or dead is None or policy is None or dead == name:
            return {}
        ref = self.get_or_create_dead_letter_queue(dead)
        arn = self.attributes(ref)["QueueArn"]
        redrive = {"deadLetterTargetArn": arn, "maxReceiveCount": policy.max_receive_count}
        return {"RedrivePolicy": json.dumps(redrive)}

    def get_or_create_dead_letter_queue(self, name: str) -> QueueRef:
        """The dead-letter queue ``name`` (an SQS name), created with 14 days' retention."""
        with self._lock:
            url = self._urls.get(name)
        if url is None:
            url = self._lookup(name)
        if url is not None:
            return QueueRef(name, url, self.client_for(None), scope=self.scope(None))
        retention = {"MessageRetentionPeriod": str(DEAD_LETTER_RETENTION_SECONDS)}
        return self._create(name, retention)[0]

    def _create(
        self,
        name: str,
        extra_attributes: dict[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[QueueRef, bool]:
        """Create queue ``name``; also False if it turned out to exist already."""
        attributes: dict[str, str] = {"VisibilityTimeout": str(self.options.visibility_timeout)}
        if name.endswith(FIFO_SUFFIX):
            attributes["FifoQueue"] = "true"
        attributes.update(extra_attributes or {})
        attributes.update(self.options.creation_attributes)
        params: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
        if self.options.queue_tags or tags:
            params["tags"] = {**self.options.queue_tags, **(tags or {})}
        client = self.client_for(None)
        try:
            answer = call(client, "create_queue", f"create queue {name!r}", **params)
        except SQSBusError as exc:
            text = str(exc)
            if "QueueAlreadyExists" in text:
                logger.warning(
                    "queue %r exists with other attributes than configured; using it as is", name
                )
                url = self._lookup(name)
                if url is None:
                    raise
                return QueueRef(name, url, client, scope=self.scope(None)), False
            if "QueueDeletedRecently" in text:
                raise QueueDeletedRecently(
                    f"queue {name!r} was deleted less than 60 seconds ago and SQS does not allow "
                    "its name to be reused yet; retry in a minute"
                ) from exc
            raise
        url = str(answer["QueueUrl"])
        with self._lock:
            self._urls[name] = url
        logger.info("created SQS queue %s", name)
        return QueueRef(name, url, client, scope=self.scope(None)), True

    def forget(self, name: str) -> None:
        """Drop what is known of queue ``name`` (deleted): its URL and its attributes."""
        with self._lock:
            url = self._urls.pop(name, None)
        if url is not None:
            with self._attributes_lock:
                self._attributes.pop(url, None)

    def ref_for_url(self, url: str) -> QueueRef:
        """A ref for a queue whose URL this connection found itself (e.g. by listing)."""
        return QueueRef(name_from_url(url), url, self.client_for(None), scope=self.scope(None))

    def queue_in_scope(self, url: str) -> QueueRef:
        """A ref for a queue URL a message names (a parked copy's home queue), if that is
        a queue of this connection's own scope: same endpoint, region and account, and
        named under ``queue_name_prefix`` (or one of ``predefined_queues``).

        Raises :class:`InvalidQueueError` otherwise: a message must not make a worker
        send anywhere its configuration did not name.
        """
        wanted = url.rstrip("/")
        if self.options.predefined_queues:
            for predefined in self.options.predefined_queues.values():
                if predefined.url.rstrip("/") == wanted:
                    return QueueRef(
                        predefined.name, predefined.url, self.client_for(predefined), predefined
                    )
            raise InvalidQueueError(
                f"queue URL {url[:200]!r} is not one of predefined_queues; not sending there"
            )
        name = name_from_url(wanted)
        prefix = entity_name(self.options.queue_name_prefix)
        problem, known = None, None
        if not name.startswith(prefix) or len(name) > MAX_QUEUE_NAME_LENGTH:
            problem = f"its name is not under queue_name_prefix {prefix!r}"
        elif _ILLEGAL.search(name.removesuffix(FIFO_SUFFIX)):
            problem = "it is not an SQS queue name"
        else:
            try:
                known = self._lookup(name)
            except SQSBusError as exc:
                raise InvalidQueueError(f"cannot check queue URL {url[:200]!r}: {exc}") from exc
            if known is None or known.rstrip("/") != wanted:
                problem = "it is not the URL of that queue at this connection's endpoint"
        if problem is not None or known is None:
            raise InvalidQueueError(
                f"queue URL {url[:200]!r} is outside this connection's scope ({problem}); "
                "not sending there"
            )
        return QueueRef(name, known, self.client_for(None), scope=self.scope(None))

    def has_redrive_policy(self, ref: QueueRef) -> bool:
        return "RedrivePolicy" in self.attributes(ref)

    def dead_letter_queue_of(self, ref: QueueRef) -> QueueRef | None:
        """The queue ``ref``'s RedrivePolicy sends dead letters to, if any and reachable."""
        raw = self.attributes(ref).get("RedrivePolicy")
        if not raw:
            return None
        try:
            arn = str(json.loads(raw)["deadLetterTargetArn"])
        except (ValueError, KeyError, TypeError):
            logger.warning("queue %s has an unreadable RedrivePolicy: %.200s", ref.name, raw)
            return None
        name = arn.rsplit(":", 1)[-1]
        try:
            url = self._lookup(name)
        except SQSBusError as exc:
            logger.warning("cannot reach dead-letter queue %s of queue %s: %s", name, ref.name, exc)
            return None
        if url is None:
            return None
        return QueueRef(name, url, ref.client, scope=ref.scope)


def validate_predefined(options: Options) -> None:
    """A ``.fifo`` name must have a FIFO URL and the reverse."""
    for name, queue in options.predefined_queues.items():
        fifo_url = queue.url.rstrip("/").endswith(FIFO_SUFFIX)
        if fifo_url and not queue.is_fifo:
            raise InvalidQueueError(
                f"predefined queue {name!r} has the FIFO URL {queue.url!r}: its name must end "
                "with '.fifo'"
            )
        if queue.is_fifo and not fifo_url:
            raise InvalidQueueError(
                f"predefined queue {name!r} is named as a FIFO queue but {queue.url!r} is not "
                "a FIFO queue URL"
            )


# -- priority bands: one SQS queue per band of an ``x-max-priority`` queue -------------


def priority_bands(max_priority: int, steps: Sequence[int]) -> list[int]:
    """The band (lowest priority of each) a queue with ``max_priority`` is split into."""
    return sorted({step for step in steps if step <= max_priority} | {0})


def band_of(priority: Any, max_priority: int, steps: Sequence[int]) -> int:
    """The band a message of ``priority`` goes to (higher numbers are more urgent)."""
    try:
        wanted = min(max(int(priority or 0), 0), max_priority)
    except (TypeError, ValueError):
        wanted = 0
    return max(step for step in priority_bands(max_priority, steps) if step <= wanted)


def band_queue(queue: str, band: int) -> str:
    """The Kombu name of ``queue``'s band queue (``queue`` itself for band 0).

    ``celery`` -> ``celery.p6`` (SQS name ``celery-p6``); ``jobs.fifo`` -> ``jobs.p6.fifo``.
    """
    if not band:
        return queue
    if queue.endswith(FIFO_SUFFIX):
        return f"{queue[: -len(FIFO_SUFFIX)]}.p{band}{FIFO_SUFFIX}"
    return f"{queue}.p{band}"
