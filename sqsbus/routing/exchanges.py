"""Exchanges as SNS topics with SQS queue subscriptions.

The binding state lives in AWS (the topic's subscriptions), so a message
published from any process reaches every bound queue, including queues bound
later by other processes or hosts.

* fanout: the queue subscribes without a filter and gets every message;
* direct: the subscription's filter policy lists the binding's routing keys,
  and messages carry their routing key as the ``kombu.routing_key`` message
  attribute.

Subscriptions use raw message delivery, so a queue receives exactly the body
that was published, in the same wire format as a direct send.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any, Final

from sqsbus.aws import AWS, CredentialSource, call
from sqsbus.backoff import POLICY_WRITE_RETRY
from sqsbus.config import Options, Secret
from sqsbus.engine.publisher import check_message_attributes, message_size
from sqsbus.errors import ConfigurationError, MessageTooLarge, SQSBusError, TransientError
from sqsbus.forks import reset_in_child
from sqsbus.limits import (
    MAX_MESSAGE_ATTRIBUTES,
    MAX_STATEMENT_ID_LENGTH,
    SNS_MAX_PUBLISH_BYTES,
    SNS_MAX_TOPIC_NAME_LENGTH,
)
from sqsbus.log_fields import message_fields
from sqsbus.queues import FIFO_SUFFIX, QueueDirectory, QueueRef, entity_name
from sqsbus.routing.bindings import SharedBindings, condition_admits
from sqsbus.routing.rechecks import Rechecks
from sqsbus.telemetry import SNS
from sqsbus.telemetry import queue as queue_metrics

logger = logging.getLogger(__name__)

#: Seconds a topic's subscription count is reused before it is read again.
SUBSCRIBER_CACHE_SECONDS: Final = 15.0
#: Message attribute carrying the routing key, matched by subscription filter policies.
ROUTING_KEY_ATTRIBUTE: Final = "kombu.routing_key"

#: Start of the Sid of every queue policy statement sqsbus writes.
STATEMENT_ID_PREFIX: Final = "sqsbus-"
_UNSAFE_IN_SID: Final = re.compile(r"[^A-Za-z0-9_-]")

#: An SNS filter-policy condition on the routing key: an exact value or ``{"prefix": p}``.
FilterCondition = str | dict[str, Any]
#: The condition matching an empty routing key: SNS takes no empty attribute value, so a
#: message with an empty routing key is published without the attribute.
EMPTY_KEY_CONDITION: Final = {"exists": False}


def _encode(condition: Any) -> str:
    return json.dumps(condition, sort_keys=True)


def topic_condition(pattern: str) -> FilterCondition | None:
    """The SNS condition that lets through (at least) what an AMQP topic pattern matches.

    Exact for patterns without wildcards; the literal prefix before the first
    wildcard otherwise (a superset: consumers filter exactly); ``None`` (no
    filter) for patterns starting with a wildcard, such as ``#``.
    """
    words = pattern.split(".")
    literal: list[str] = []
    for word in words:
        if word in ("*", "#"):
            break
        literal.append(word)
    if len(literal) == len(words):
        return pattern
    if not literal:
        return None
    return {"prefix": ".".join(literal)}


def topic_filter(pattern: str) -> FilterCondition | None:
    """The SNS condition a topic binding with ``pattern`` subscribes with (None: no filter)."""
    condition = topic_condition(pattern)
    return EMPTY_KEY_CONDITION if condition == "" else condition


def topic_name(exchange: str, prefix: str = "") -> str:
    """The SNS topic name of ``exchange`` (same translation as queue names)."""
    name = entity_name(prefix + exchange)
    if len(name) > SNS_MAX_TOPIC_NAME_LENGTH:
        raise ValueError(
            f"topic name {name!r} is longer than {SNS_MAX_TOPIC_NAME_LENGTH} characters"
        )
    return name


def policy_statement_id(topic_arn: str) -> str:
    """The Sid of the queue policy statement letting ``topic_arn`` send: unique per ARN.

    ``sqsbus-``, the topic name (characters other than letters, digits, ``-`` and ``_``
    as ``-``; shortened to fit) and 16 hex digits of the ARN's SHA-256, so topics of the
    same name in other regions or accounts, or with a long common prefix, differ.
    At most :data:`MAX_STATEMENT_ID_LENGTH` characters.
    """
    digest = hashlib.sha256(topic_arn.encode()).hexdigest()[:16]
    name = _UNSAFE_IN_SID.sub("-", topic_arn.rsplit(":", 1)[-1])
    room = MAX_STATEMENT_ID_LENGTH - len(STATEMENT_ID_PREFIX) - len(digest) - 1
    return f"{STATEMENT_ID_PREFIX}{name[:room]}-{digest}"


def _grants(statement: Any, sid: str, topic_arn: str) -> bool:
    """Whether ``statement`` is sqsbus's grant to ``topic_arn``: Sid ``sid``, or the
    ``sqsbus-<topic name>`` Sid of older versions with the topic as aws:SourceArn."""
    if not isinstance(statement, dict):
        return False
    if statement.get("Sid") == sid:
        return True
    older_sid = f"{STATEMENT_ID_PREFIX}{topic_arn.rsplit(':', 1)[-1]}"[:100]
    condition = statement.get("Condition")
    arns = condition.get("ArnEquals") if isinstance(condition, dict) else None
    return (
        statement.get("Sid") == older_sid
        and statement.get("Effect") == "Allow"
        and isinstance(arns, dict)
        and arns.get("aws:SourceArn") == topic_arn
    )


#: Queue URL -> lock held while this process changes that queue's policy.
_policy_locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
_policy_locks_guard = threading.Lock()


def _policy_lock(url: str) -> threading.Lock:
    with _policy_locks_guard:
        lock = _policy_locks.get(url)
        if lock is None:
            lock = _policy_locks[url] = threading.Lock()
        return lock


def _after_fork_in_child() -> None:
    """A thread of the parent may have held a policy lock at fork: the child starts afresh."""
    global _policy_locks_guard
    _policy_locks_guard = threading.Lock()
    _policy_locks.clear()


reset_in_child(_after_fork_in_child)


_shared_topics_warned = False
_shared_topics_lock = threading.Lock()


def _warn_shared_topics(exchange: str, topic_arn: str) -> None:
    """Say once per process that exchange topics without a prefix are shared account-wide."""
    global _shared_topics_warned
    with _shared_topics_lock:
        if _shared_topics_warned:
            return
        _shared_topics_warned = True
    parts = topic_arn.split(":")
    where = f"account {parts[4]}, region {parts[3]}" if len(parts) > 5 else "this account"
    logger.warning(
        "exchange %s uses the SNS topic %s, which every application in %s that leaves "
        "queue_name_prefix empty shares, as it shares every other exchange topic: their "
        "`celery control`/`inspect` commands reach this process's workers, and their event "
        "monitors (Flower, `celery events`) receive its events, task arguments included. "
        "Give each application its own topics with queue_name_prefix (e.g. 'myapp-') or "
        "topic_name_prefix; set topic_name_prefix='' to share them on purpose and silence "
        "this warning (docs/security.md)",
        exchange,
        topic_arn.rsplit(":", 1)[-1],
        where,
    )


def _read_conditions(client: Any, subscription: str, action: str) -> list[Any] | None:
    """The routing-key conditions of a subscription's filter policy as SNS holds it now
    (None: no filter, everything passes)."""
    attributes = call(
        client, "get_subscription_attributes", action, SubscriptionArn=subscription
    ).get("Attributes", {})
    conditions = json.loads(attributes.get("FilterPolicy") or "{}").get(ROUTING_KEY_ATTRIBUTE)
    return list(conditions) if isinstance(conditions, list) else None


def _region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None


class ExchangeRouter:
    """Creates topics, subscribes queues and publishes through SNS (thread-safe)."""

    def __init__(self, aws: AWS, options: Options, queues: QueueDirectory) -> None:
        self.aws = aws
        self.options = options
        self.queues = queues
        self._topics: dict[str, str] = {}
        self._subscriptions: dict[tuple[str, str], str] = {}
        #: exchange -> (monotonic time read, number of subscriptions of its topic)
        self._subscriber_counts: dict[str, tuple[float, int]] = {}
        #: (exchange, queue url) -> routing keys in the filter (None: no filter, fanout).
        self._routing_keys: dict[tuple[str, str], set[str] | None] = {}
        self._lock = threading.Lock()
        #: Called with (queue, subscription ARN) after each new subscription; the transport
        #: uses it to record a temporary queue's subscriptions for orphan sweeps.
        self.on_subscribed: Callable[[QueueRef, str], None] | None = None
        #: exchange -> (monotonic time read, (queue ARN, filter conditions) per subscription).
        self._routes: dict[str, tuple[float, list[tuple[str, list[Any] | None]]]] = {}
        #: Topic bindings recorded on their queues, seen by every process.
        self.bindings = SharedBindings(topic_filter, self._filter_conditions)
        #: (exchange, queue url, pattern) recorded by this process.
        self._recorded: set[tuple[str, str, str]] = set()
        #: Checks again, a little later, each policy and filter change this process made.
        self.rechecks = Rechecks()

    def close(self) -> None:
        """Drop the checks still to come of this router's policy and filter changes (its
        connection closes)."""
        self.rechecks.clear()

    def _client(self, exchange: str) -> Any:
        spec = self.options.predefined_exchanges.get(exchange)
        if spec is None:
            return self.aws.client("sns")
        source = None
        secret = spec.get("secret_access_key")
        if spec.get("access_key_id") and isinstance(secret, Secret):
            source = CredentialSource(str(spec["access_key_id"]), secret)
        return self.aws.client("sns", region=_region_of(str(spec["arn"])), source=source)

    def topic_arn(self, exchange: str) -> str:
        """The topic of ``exchange``, created on first use (idempotent, cached)."""
        with self._lock:
            arn = self._topics.get(exchange)
        if arn is not None:
            return arn
        spec = self.options.predefined_exchanges.get(exchange)
        if spec is not None:
            arn = str(spec["arn"])
        else:
            name = topic_name(exchange, self.options.topic_prefix)
            attributes = {"FifoTopic": "true"} if name.endswith(FIFO_SUFFIX) else {}
            answer = call(
                self._client(exchange),
                "create_topic",
                f"create SNS topic {name!r} for exchange {exchange!r}",
                Name=name,
                Attributes=attributes,
            )
            arn = str(answer["TopicArn"])
            if self.options.topic_name_prefix is None and not self.options.topic_prefix:
                _warn_shared_topics(exchange, arn)
        with self._lock:
            self._topics[exchange] = arn
        return arn

    def subscribe(
        self,
        exchange: str,
        queue: QueueRef,
        condition: FilterCondition | None = None,
        *,
        pattern: str | None = None,
    ) -> None:
        """Deliver the exchange's messages to ``queue`` (idempotent, cached).

        ``condition=None`` subscribes to everything (fanout, topic ``#``);
        otherwise the condition (an exact routing key, or ``{"prefix": ...}``) is
        added to the subscription's filter policy. A topic binding's ``pattern`` is
        recorded on the queue for the consumers of every process
        (:mod:`sqsbus.routing.bindings`).
        """
        key = (exchange, queue.url)
        if condition == "":
            condition = EMPTY_KEY_CONDITION
        wanted = None if condition is None else _encode(condition)
        if pattern is not None and (exchange, queue.url, pattern) not in self._recorded:
            self.bindings.record(queue, exchange, pattern)
            self._recorded.add((exchange, queue.url, pattern))
        with self._lock:
            known = key in self._subscriptions
            conditions = self._routing_keys.get(key)
            if known and (conditions is None or wanted in conditions):
                return
        if not known:
            self._subscribe(exchange, queue)
        self._add_condition(exchange, queue, wanted)

    def _filter_conditions(self, exchange: str, queue: QueueRef) -> list[Any] | None:
        """The routing-key conditions of ``queue``'s subscription to ``exchange`` as they are
        in SNS now (None: no filter, everything passes)."""
        with self._lock:
            subscription = self._subscriptions.get((exchange, queue.url))
        if subscription is None:
            return []
        return _read_conditions(
            self._client(exchange),
            subscription,
            f"read subscription of queue {queue.name!r} to exchange {exchange!r}",
        )

    def _subscribe(self, exchange: str, queue: QueueRef) -> None:
        arn = self.topic_arn(exchange)
        queue_arn = self.queues.attributes(queue).get("QueueArn") or self.queues.attributes(
            queue, fresh=True
        ).get("QueueArn")
        if not queue_arn:
            raise ValueError(f"queue {queue.name!r} has no QueueArn attribute")
        self._allow_topic(queue, queue_arn, arn)
        answer = call(
            self._client(exchange),
            "subscribe",
            f"subscribe queue {queue.name!r} to exchange {exchange!r}",
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )
        subscription = str(answer["SubscriptionArn"])
        conditions = _read_conditions(
            self._client(exchange),
            subscription,
            f"read subscription of queue {queue.name!r} to exchange {exchange!r}",
        )
        with self._lock:
            self._subscriptions[(exchange, queue.url)] = subscription
            self._routing_keys[(exchange, queue.url)] = (
                None if conditions is None else {_encode(c) for c in conditions}
            )
        if self.on_subscribed is not None:
            self.on_subscribed(queue, subscription)

    def _add_condition(
        self, exchange: str, queue: QueueRef, wanted: str | None, *, again: bool = False
    ) -> None:
        """Add ``wanted`` (None: everything) to the subscription's filter, as it is in SNS
        now: other processes add theirs to the same subscription. The filter is read, merged,
        written and read back, and written again if another writer overwrote it; once
        written, it is checked ``again`` later (:mod:`sqsbus.routing.rechecks`)."""
        key = (exchange, queue.url)
        with self._lock:
            subscription = self._subscriptions.get(key)
        if subscription is None:
            return  # unsubscribed meanwhile
        for attempt in range(POLICY_WRITE_RETRY.attempts + 1):
            current = self._filter_conditions(exchange, queue)
            present = None if current is None else {_encode(c) for c in current}
            if present is None and wanted is not None:
                # No filter: a fresh subscription, unless a recorded binding wants everything.
                recorded = self.bindings.patterns(queue, exchange)
                if any(topic_filter(pattern) is None for pattern in recorded):
                    new: set[str] | None = None
                else:
                    new = {wanted}
            elif present is None or wanted is None:
                new = None
            else:
                new = present | {wanted}
            with self._lock:
                self._routing_keys[key] = new
            if new == present:
                if attempt:
                    self.rechecks.schedule(
                        ("filter", *key, wanted),
                        lambda: self._add_condition(exchange, queue, wanted, again=True),
                    )
                return
            if attempt == POLICY_WRITE_RETRY.attempts:
                break
            if attempt:
                logger.info("filter of queue %s was overwritten; adding it again", queue.name)
            elif again:
                logger.warning(
                    "the subscription filter of queue %s to exchange %s lost a routing key "
                    "(another process wrote it at the same time); adding it again",
                    queue.name,
                    exchange,
                )
            policy = (
                {} if new is None else {ROUTING_KEY_ATTRIBUTE: [json.loads(c) for c in sorted(new)]}
            )
            call(
                self._client(exchange),
                "set_subscription_attributes",
                f"route exchange {exchange!r} to queue {queue.name!r}",
                SubscriptionArn=subscription,
                AttributeName="FilterPolicy",
                AttributeValue=json.dumps(policy),
            )
            time.sleep(POLICY_WRITE_RETRY.delay(attempt + 1))
        raise TransientError(
            f"the subscription filter of queue {queue.name!r} to exchange {exchange!r} was "
            f"overwritten {POLICY_WRITE_RETRY.attempts} times by other writers"
        )

    def unsubscribe(self, exchange: str, queue: QueueRef) -> None:
        with self._lock:
            subscription = self._subscriptions.pop((exchange, queue.url), None)
            self._routing_keys.pop((exchange, queue.url), None)
            recorded = {r for r in self._recorded if r[:2] == (exchange, queue.url)}
            self._recorded -= recorded
        self.rechecks.cancel(("policy", queue.url, self._topics.get(exchange)))
        if recorded:
            self.bindings.forget(queue, exchange)
        if subscription is not None:
            call(
                self._client(exchange),
                "unsubscribe",
                f"unsubscribe queue {queue.name!r} from exchange {exchange!r}",
                SubscriptionArn=subscription,
            )

    def has_subscribers(self, exchange: str) -> bool:
        """Whether any queue subscribes to the exchange's topic.

        Read with ``ListSubscriptionsByTopic`` (one page) and reused for
        :data:`SUBSCRIBER_CACHE_SECONDS` (a queue bound by another process is seen
        within that time; one bound here, at once).  This keeps idle traffic such
        as Celery's worker heartbeats, which nobody may be listening to, to one
        request per exchange and period instead of one per message.
        """
        now = time.monotonic()
        with self._lock:
            cached = self._subscriber_counts.get(exchange)
            mine = any(key[0] == exchange for key in self._subscriptions)
        if mine:
            return True
        if cached is not None and now - cached[0] < SUBSCRIBER_CACHE_SECONDS:
            return cached[1] > 0
        answer = call(
            self._client(exchange),
            "list_subscriptions_by_topic",
            f"list subscriptions of exchange {exchange!r}",
            TopicArn=self.topic_arn(exchange),
        )
        # One page is enough to know "any": a further page means more than 100.
        count = len(answer.get("Subscriptions") or []) + (1 if answer.get("NextToken") else 0)
        with self._lock:
            self._subscriber_counts[exchange] = (now, count)
        return count > 0

    def routes_only_to(self, exchange: str, routing_key: str, queue_arns: set[str]) -> bool:
        """Whether every queue bound to ``exchange`` whose filter admits ``routing_key`` is one
        of ``queue_arns`` (the queues this process would send to directly).

        Read from SNS (every subscription of the topic and its filter) and reused for
        :data:`SUBSCRIBER_CACHE_SECONDS`: a queue another process binds with the key is seen
        within that time. If SNS cannot be read, True: this process's own bindings are all
        it can go by (as when it may not use SNS at all).
        """
        now = time.monotonic()
        with self._lock:
            cached = self._routes.get(exchange)
        if cached is None or now - cached[0] >= SUBSCRIBER_CACHE_SECONDS:
            try:
                cached = (now, self._read_routes(exchange))
            except SQSBusError as exc:
                logger.warning("cannot read the bindings of exchange %s: %s", exchange, exc)
                return True
            with self._lock:
                self._routes[exchange] = cached
        admitting = {
            endpoint
            for endpoint, conditions in cached[1]
            if conditions is None or any(condition_admits(c, routing_key) for c in conditions)
        }
        return admitting <= queue_arns

    def _read_routes(self, exchange: str) -> list[tuple[str, list[Any] | None]]:
        """(queue ARN, filter conditions or None) of every SQS subscription of the topic."""
        client = self._client(exchange)
        params: dict[str, Any] = {"TopicArn": self.topic_arn(exchange)}
        routes: list[tuple[str, list[Any] | None]] = []
        while True:
            answer = call(
                client, "list_subscriptions_by_topic", f"list bindings of {exchange!r}", **params
            )
            for subscription in answer.get("Subscriptions") or []:
                arn = str(subscription.get("SubscriptionArn", ""))
                if subscription.get("Protocol") != "sqs" or arn.count(":") < 6:
                    continue  # pending confirmation, or not a queue
                conditions = _read_conditions(client, arn, f"read a binding of {exchange!r}")
                routes.append((str(subscription.get("Endpoint", "")), conditions))
            token = answer.get("NextToken")
            if not token:
                return routes
            params["NextToken"] = token

    def subscribed_exchanges(self, queue: QueueRef) -> list[str]:
        with self._lock:
            return [exchange for exchange, url in self._subscriptions if url == queue.url]

    def _allow_topic(
        self, queue: QueueRef, queue_arn: str, topic_arn: str, *, again: bool = False
    ) -> None:
        """Make sure the queue's policy lets the topic send to it (idempotent).

        SQS has no conditional write, and another process adding its statement for
        another topic at the same moment may overwrite ours: after each write the
        policy is read again, and written again (with whatever is there now) until
        our statement is seen, and checked ``again`` later
        (:mod:`sqsbus.routing.rechecks`). Other statements are always kept. Threads of
        this process take turns per queue.
        """
        sid = policy_statement_id(topic_arn)
        with _policy_lock(queue.url):
            for attempt in range(POLICY_WRITE_RETRY.attempts + 1):
                policy = self._queue_policy(queue)
                statements: list[Any] = policy["Statement"]
                if any(_grants(statement, sid, topic_arn) for statement in statements):
                    if attempt:
                        self.rechecks.schedule(
                            ("policy", queue.url, topic_arn),
                            lambda: self._allow_topic(queue, queue_arn, topic_arn, again=True),
                        )
                    return
                if attempt == POLICY_WRITE_RETRY.attempts:
                    break
                if attempt:
                    logger.info("queue %s policy was overwritten; adding %s again", queue.name, sid)
                elif again:
                    logger.warning(
                        "the policy of queue %s lost the statement letting topic %s send to "
                        "it (another process wrote the policy at the same time); adding it "
                        "again",
                        queue.name,
                        topic_arn,
                    )
                statements.append(
                    {
                        "Sid": sid,
                        "Effect": "Allow",
                        "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": queue_arn,
                        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                    }
                )
                call(
                    queue.client,
                    "set_queue_attributes",
                    f"allow exchange topic to send to queue {queue.name!r}",
                    QueueUrl=queue.url,
                    Attributes={"Policy": json.dumps(policy)},
                )
                # Jittered, growing pause before verifying: writers that keep overwriting
                # each other drift apart.
                time.sleep(POLICY_WRITE_RETRY.delay(attempt + 1))
        raise TransientError(
            f"the policy of queue {queue.name!r} was overwritten "
            f"{POLICY_WRITE_RETRY.attempts} times by other writers; it still does not let topic "
            f"{topic_arn} send to the queue"
        )

    def _queue_policy(self, queue: QueueRef) -> dict[str, Any]:
        """The queue's policy as read now, with ``Version`` and a ``Statement`` list."""
        raw = self.queues.attributes(queue, fresh=True).get("Policy")
        policy: dict[str, Any] = json.loads(raw) if raw else {}
        policy.setdefault("Version", "2012-10-17")
        statements = policy.get("Statement")
        if isinstance(statements, dict):  # a single statement may stand alone
            policy["Statement"] = [statements]
        elif not isinstance(statements, list):
            policy["Statement"] = []
        return policy

    def publish(
        self,
        exchange: str,
        body: str,
        *,
        routing_key: str | None = None,
        message_attributes: dict[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Publish ``body`` to every queue bound to ``exchange`` (matching ``routing_key``).

        Returns "" without a request when the topic has no subscription (see
        :meth:`has_subscribers`): as in AMQP, a message no queue is bound for is
        dropped — but here without paying for it.
        """
        started = time.monotonic()
        attributes = self._checked_attributes(exchange, body, message_attributes, routing_key)
        arn = self.topic_arn(exchange)
        if not self.has_subscribers(exchange):
            logger.debug(
                "no queue is bound to exchange %s; message dropped",
                exchange,
                extra=message_fields("publish"),
            )
            return ""
        params: dict[str, Any] = {"TopicArn": arn, "Message": body}
        if attributes:
            params["MessageAttributes"] = attributes
        if arn.endswith(FIFO_SUFFIX):
            params["MessageGroupId"] = group_id or self.options.fifo_message_group_id
            params["MessageDeduplicationId"] = deduplication_id or uuid.uuid4().hex
        answer = call(
            self._client(exchange), "publish", f"publish to exchange {exchange!r}", **params
        )
        topic = arn.rsplit(":", 1)[-1]
        queue_metrics(topic, SNS).publish_confirmed(time.monotonic() - started)
        return str(answer.get("MessageId", ""))

    @staticmethod
    def _checked_attributes(
        exchange: str,
        body: str,
        message_attributes: dict[str, Any] | None,
        routing_key: str | None,
    ) -> dict[str, Any]:
        """The attributes to publish, or an error for what SNS or the subscribed queues
        would refuse (a queue refusing a delivery loses the message without an answer)."""
        attributes = dict(message_attributes or {})
        target = f"exchange {exchange!r}"
        if routing_key:  # SNS refuses empty values: an empty key is no attribute
            if len(attributes) >= MAX_MESSAGE_ATTRIBUTES:
                raise ConfigurationError(
                    f"message for {target} has {len(attributes)} message attributes; one routed "
                    f"by key may have at most {MAX_MESSAGE_ATTRIBUTES - 1} (SQS allows "
                    f"{MAX_MESSAGE_ATTRIBUTES} and the routing key takes one). Move the rest "
                    "into the body."
                )
            attributes[ROUTING_KEY_ATTRIBUTE] = {"DataType": "String", "StringValue": routing_key}
        check_message_attributes(target, attributes)
        size = message_size(body, attributes)
        if size > SNS_MAX_PUBLISH_BYTES:
            raise MessageTooLarge(
                f"message of {size} bytes is over the {SNS_MAX_PUBLISH_BYTES}-byte limit of SNS "
                f"for {target}; nothing was sent. Messages routed through an exchange's topic "
                "do not go through S3 (every bound queue would share one object, deleted by "
                "the first ack): publish large payloads to a queue directly "
                "(large_payload_bucket), or make the payload smaller."
            )
        return attributes
