"""Metrics through the OpenTelemetry API: the one place that owns sqsbus's instruments.

``opentelemetry-api`` is optional (``pip install sqsbus[otel]``). Without it every
recording call here is a no-op on a stand-in instrument, and :mod:`sqsbus.aws` registers
no request hooks at all. With it, the instruments come from the global ``MeterProvider``
through the API's proxy meter: a provider configured after sqsbus started (the usual order
in an application) reads every counter's total since the start and receives every
histogram measurement from then on; without a provider the proxy drops the histograms'
measurements at the cost of one attribute check.

The API is imported on first use (the first client or queue), not by ``import sqsbus``.
Attribute sets are built once per queue (:class:`QueueMetrics`) or per request kind and
reused. Counts are kept here (a :class:`_Tally` per counter: a lock and an addition) and
reported by observable counters when the SDK collects, so a message costs the SDK nothing
on the hot path but its histograms; the exporter sees ordinary cumulative sums. Every
instrument is listed, with its unit and attributes, in ``docs/observability.md``; this
module imports nothing else of sqsbus.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol

#: ``messaging.system`` of SQS queues and SNS topics (OpenTelemetry's semantic conventions).
SQS: Final = "aws_sqs"
SNS: Final = "aws_sns"
#: ``rpc.system`` of AWS API calls.
AWS_API: Final = "aws-api"

SYSTEM: Final = "messaging.system"
DESTINATION: Final = "messaging.destination.name"
OPERATION: Final = "messaging.operation"
RPC_SYSTEM: Final = "rpc.system"
RPC_SERVICE: Final = "rpc.service"
RPC_METHOD: Final = "rpc.method"
BUCKET: Final = "aws.s3.bucket"
#: How a request ended: ``ok``, ``throttled``, ``retried`` or ``failed`` (see :data:`OUTCOMES`).
OUTCOME: Final = "sqsbus.outcome"
#: Why a message went to its dead-letter queue: ``rejected``, ``unreadable``, ``expired``,
#: ``payload_missing``.
REASON: Final = "sqsbus.reason"

#: Outcomes of an HTTP request: answered successfully (the call's last attempt); throttled
#: (and tried again); failed otherwise and tried again; the last attempt of a call that
#: ended in an error.
OUTCOMES: Final = ("ok", "throttled", "retried", "failed")

#: Bucket boundaries for durations in seconds (requests, publishes, delivery lag).
#: Histograms are the only instruments the SDK sees on the hot path (a record costs ~10 us
#: plus ~2 us per attribute): they carry few attributes.
DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

_METER_NAME: Final = "sqsbus"


class _Attributes:
    """One attribute set, built once and reused; counted in a :class:`_Tally` by identity."""

    __slots__ = ("values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values: dict[str, str] = dict(values)


class _Off:
    """Stands in for every instrument when the OpenTelemetry API is not installed."""

    __slots__ = ()

    def add(self, amount: int, attributes: _Attributes) -> None:
        pass

    def record(self, amount: float, attributes: Mapping[str, str]) -> None:
        pass


_OFF: Final = _Off()
#: Guards every tally (each addition holds it for a dictionary update).
_tally_lock = threading.Lock()
_tallies: weakref.WeakSet[_Tally] = weakref.WeakSet()


class _Tally:
    """A counter's cumulative totals per attribute set, read by its observable counter."""

    __slots__ = ("__weakref__", "_totals")

    def __init__(self) -> None:
        self._totals: dict[_Attributes, int] = {}
        _tallies.add(self)

    def add(self, amount: int, attributes: _Attributes) -> None:
        with _tally_lock:
            self._totals[attributes] = self._totals.get(attributes, 0) + amount

    def observe(self, options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        with _tally_lock:
            totals = list(self._totals.items())
        return [Observation(total, attributes.values) for attributes, total in totals]

    def clear(self) -> None:
        self._totals = {}


def _after_fork_in_child() -> None:
    """A forked child counts from zero (its own series), with a lock no thread holds."""
    global _tally_lock
    _tally_lock = threading.Lock()
    for tally in list(_tallies):
        tally.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Instruments:
    """Every instrument of sqsbus, made from ``meter`` (None: stand-ins that keep nothing).

    Counters are :class:`_Tally` objects behind observable counters; histograms are the
    meter's own; the gauges read their sources (:func:`watch_prefetch`,
    :func:`watch_backlog`) when collected.
    """

    def __init__(self, meter: Any | None) -> None:
        def counter(name: str, unit: str, description: str) -> Any:
            if meter is None:
                return _OFF
            tally = _Tally()
            meter.create_observable_counter(name, [tally.observe], unit, description)
            return tally

        def histogram(name: str, unit: str, description: str, buckets: Sequence[float]) -> Any:
            if meter is None:
                return _OFF
            return meter.create_histogram(
                name, unit, description, explicit_bucket_boundaries_advisory=buckets
            )

        self.requests = counter(
            "sqsbus.aws.requests",
            "{request}",
            "HTTP requests to AWS (each attempt, as AWS bills them), by operation and outcome",
        )
        self.request_duration = histogram(
            "sqsbus.aws.request.duration",
            "s",
            "Duration of each HTTP request to AWS, signing and parsing included",
            DURATION_BUCKETS,
        )
        self.batch_entries = counter(
            "sqsbus.aws.batch.entries",
            "{message}",
            "Entries sent in SendMessageBatch, DeleteMessageBatch and "
            "ChangeMessageVisibilityBatch calls, messages got by ReceiveMessage calls",
        )
        self.published = counter(
            "sqsbus.messages.published", "{message}", "Messages published and accepted by SQS"
        )
        self.publish_duration = histogram(
            "sqsbus.publish.duration",
            "s",
            "From a publish call to SQS's confirmation of its message",
            DURATION_BUCKETS,
        )
        self.lingering_lost = counter(
            "sqsbus.messages.lingering_lost",
            "{message}",
            "Messages published with publish_linger_ms that SQS refused or never confirmed",
        )
        self.received = counter(
            "sqsbus.messages.received", "{message}", "Messages received from SQS by consumers"
        )
        self.delivery_lag = histogram(
            "sqsbus.delivery.lag",
            "s",
            "From SQS's SentTimestamp of a message to its hand-over to the application",
            DURATION_BUCKETS,
        )
        self.acked = counter(
            "sqsbus.messages.acked", "{message}", "Messages acknowledged (deleted, batched)"
        )
        self.requeued = counter(
            "sqsbus.messages.requeued", "{message}", "Messages given back to be delivered again"
        )
        self.dead_lettered = counter(
            "sqsbus.messages.dead_lettered",
            "{message}",
            "Messages moved to their queue's dead-letter queue by sqsbus, by reason",
        )
        self.expired = counter(
            "sqsbus.messages.expired", "{message}", "Messages not delivered: past their TTL"
        )
        self.delay_hops = counter(
            "sqsbus.messages.delay_hops",
            "{message}",
            "Delayed messages sent on again because they surfaced before their time",
        )
        self.parked = counter(
            "sqsbus.messages.parked",
            "{message}",
            "Held messages moved to the parking queue at SQS's 12-hour visibility cap",
        )
        self.leases_extended = counter(
            "sqsbus.leases.extended", "{message}", "Visibility extensions of held messages"
        )
        self.leases_lost = counter(
            "sqsbus.leases.lost",
            "{message}",
            "Held messages whose lease SQS no longer knew (may be delivered twice)",
        )
        self.payload_bytes_stored = counter(
            "sqsbus.payloads.stored", "By", "Bytes of large payloads stored in S3"
        )
        self.payload_bytes_fetched = counter(
            "sqsbus.payloads.fetched", "By", "Bytes of large payloads read from S3"
        )
        self.payload_bytes_deleted = counter(
            "sqsbus.payloads.deleted", "By", "Bytes of large payloads deleted from S3"
        )
        if meter is not None:
            meter.create_observable_gauge(
                "sqsbus.prefetch.depth",
                [_observe_prefetch],
                "{message}",
                "Messages received and buffered, waiting to be handed to the application",
            )
            meter.create_observable_gauge(
                "sqsbus.acker.backlog",
                [_observe_backlog],
                "{message}",
                "Settled messages whose delete (or visibility change) waits to be sent",
            )


_lock = threading.Lock()
_instruments: Instruments | None = None


def instruments() -> Instruments:
    """The instruments, made on first use (stand-ins if the API is not installed)."""
    made = _instruments
    if made is None:
        made = _make_instruments()
    return made


def active() -> bool:
    """True if the OpenTelemetry API is installed (measurements reach its meter)."""
    return instruments().requests is not _OFF


def _make_instruments() -> Instruments:
    global _instruments
    with _lock:
        if _instruments is None:
            _instruments = Instruments(_meter())
        return _instruments


def _meter() -> Any | None:
    try:
        from opentelemetry import metrics
    except ImportError:
        return None
    try:
        from importlib.metadata import PackageNotFoundError, version

        own = version("sqsbus")
    except (ImportError, PackageNotFoundError):
        own = ""
    return metrics.get_meter(_METER_NAME, own)


# -- per queue -------------------------------------------------------------------------------


class QueueMetrics:
    """The measurements of one queue (or topic), with its attribute sets built once."""

    __slots__ = (
        "_batches",
        "_histogram",
        "_i",
        "_publish",
        "_reasons",
        "_receive",
        "_settle",
        "base",
        "name",
    )

    def __init__(self, name: str, system: str = SQS) -> None:
        self._i = instruments()
        self.name = name
        self.base = _Attributes({SYSTEM: system, DESTINATION: name})
        self._publish = _Attributes({**self.base.values, OPERATION: "publish"})
        self._receive = _Attributes({**self.base.values, OPERATION: "receive"})
        self._settle = _Attributes({**self.base.values, OPERATION: "settle"})
        self._batches: dict[str, _Attributes] = {}
        #: The histograms' attributes: the destination alone (each attribute costs the SDK
        #: on every record; the system is known from the name's instrument and queue).
        self._histogram = {DESTINATION: name}
        self._reasons: dict[str, _Attributes] = {}

    # publishing
    def published(self, count: int = 1) -> None:
        self._i.published.add(count, self._publish)

    def publish_confirmed(self, seconds: float) -> None:
        """One message confirmed ``seconds`` after its publish call: counted and timed."""
        self._i.published.add(1, self._publish)
        self._i.publish_duration.record(seconds, self._histogram)

    def lingering_lost(self) -> None:
        self._i.lingering_lost.add(1, self._publish)

    def batch(self, method: str, entries: int) -> None:
        """A batch call ``method`` (``rpc.method``) of ``entries`` entries on this queue."""
        attributes = self._batches.get(method)
        if attributes is None:
            attributes = _Attributes({**self.base.values, RPC_METHOD: method})
            self._batches[method] = attributes
        self._i.batch_entries.add(entries, attributes)

    # consuming
    def received(self, count: int) -> None:
        """One ReceiveMessage that returned ``count`` messages."""
        if count:
            self._i.received.add(count, self._receive)
        self.batch("ReceiveMessage", count)

    def delivered(self, lag_seconds: float) -> None:
        self._i.delivery_lag.record(lag_seconds, self._histogram)

    def acked(self) -> None:
        self._i.acked.add(1, self._settle)

    def requeued(self) -> None:
        self._i.requeued.add(1, self._settle)

    def dead_lettered(self, reason: str) -> None:
        attributes = self._reasons.get(reason)
        if attributes is None:
            attributes = self._reasons[reason] = _Attributes(
                {**self._settle.values, REASON: reason}
            )
        self._i.dead_lettered.add(1, attributes)

    def expired(self) -> None:
        self._i.expired.add(1, self._settle)

    def delay_hop(self) -> None:
        self._i.delay_hops.add(1, self._publish)

    def parked(self) -> None:
        self._i.parked.add(1, self.base)

    def leases(self, extended: int, lost: int) -> None:
        if extended:
            self._i.leases_extended.add(extended, self.base)
        if lost:
            self._i.leases_lost.add(lost, self.base)


_queues: dict[tuple[str, str], QueueMetrics] = {}


def queue(name: str, system: str = SQS) -> QueueMetrics:
    """The measurements of queue ``name`` (its SQS name; an SNS topic's with ``SNS``)."""
    found = _queues.get((name, system))
    if found is None:
        found = _queues.setdefault((name, system), QueueMetrics(name, system))
    return found


# -- large payloads in S3 --------------------------------------------------------------------

_buckets: dict[str, _Attributes] = {}


def _bucket(bucket: str) -> _Attributes:
    attributes = _buckets.get(bucket)
    if attributes is None:
        attributes = _buckets.setdefault(bucket, _Attributes({SYSTEM: SQS, BUCKET: bucket}))
    return attributes


def payload_stored(bucket: str, size: int) -> None:
    """``size`` bytes of a large payload stored in ``bucket``."""
    instruments().payload_bytes_stored.add(size, _bucket(bucket))


def payload_fetched(bucket: str, size: int) -> None:
    """``size`` bytes of a large payload read from ``bucket``."""
    instruments().payload_bytes_fetched.add(size, _bucket(bucket))


def payload_deleted(bucket: str, size: int) -> None:
    """``size`` bytes of large payloads deleted from ``bucket``."""
    instruments().payload_bytes_deleted.add(size, _bucket(bucket))


# -- AWS requests ----------------------------------------------------------------------------

_request_attributes: dict[tuple[str, str, str | None, str], _Attributes] = {}
_duration_attributes: dict[tuple[str, str, str | None], dict[str, str]] = {}


def _attributes_of_request(
    service: str, method: str, queue: str | None, outcome: str
) -> _Attributes:
    key = (service, method, queue, outcome)
    attributes = _request_attributes.get(key)
    if attributes is None:
        made = {RPC_SYSTEM: AWS_API, RPC_SERVICE: service, RPC_METHOD: method, OUTCOME: outcome}
        if queue:
            made[SYSTEM] = SQS
            made[DESTINATION] = queue
        attributes = _request_attributes.setdefault(key, _Attributes(made))
    return attributes


def _attributes_of_duration(service: str, method: str, queue: str | None) -> dict[str, str]:
    """Fewer than a request's: each attribute of a histogram costs on every record."""
    key = (service, method, queue)
    attributes = _duration_attributes.get(key)
    if attributes is None:
        made = {RPC_METHOD: method}
        if queue:
            made[DESTINATION] = queue
        attributes = _duration_attributes.setdefault(key, made)
    return attributes


def record_requests(
    service: str, method: str, queue: str | None, attempts: Sequence[tuple[str, float]]
) -> None:
    """The HTTP requests of one finished AWS call (about SQS queue ``queue``, if any):
    ``(outcome, seconds)`` per attempt."""
    made = instruments()
    for outcome, seconds in attempts:
        made.requests.add(1, _attributes_of_request(service, method, queue, outcome))
        made.request_duration.record(seconds, _attributes_of_duration(service, method, queue))


# -- gauges read at collection time ----------------------------------------------------------


class PrefetchSource(Protocol):
    def prefetched(self) -> Mapping[str, int]:
        """Buffered messages per SQS queue name (0 for a consumed queue with none)."""


class BacklogSource(Protocol):
    def backlog(self) -> Mapping[tuple[str, str], int]:
        """Waiting entries per (SQS queue name, batch method)."""


_prefetch_sources: weakref.WeakSet[Any] = weakref.WeakSet()
_backlog_sources: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_prefetch(source: PrefetchSource) -> None:
    """Report ``source``'s buffered messages in ``sqsbus.prefetch.depth`` while it lives."""
    if active():
        _prefetch_sources.add(source)


def watch_backlog(source: BacklogSource) -> None:
    """Report ``source``'s unsent settlements in ``sqsbus.acker.backlog`` while it lives."""
    if active():
        _backlog_sources.add(source)


def _observe_prefetch(options: Any) -> Iterator[Any]:
    totals: Counter[str] = Counter()
    for source in list(_prefetch_sources):
        totals.update(source.prefetched())
    return _observations(((queue(name).base.values, count) for name, count in totals.items()))


def _observe_backlog(options: Any) -> Iterator[Any]:
    totals: Counter[tuple[str, str]] = Counter()
    for source in list(_backlog_sources):
        totals.update(source.backlog())
    return _observations(
        ({**queue(name).base.values, RPC_METHOD: method}, count)
        for (name, method), count in totals.items()
    )


def _observations(values: Iterable[tuple[Mapping[str, str], int]]) -> Iterator[Any]:
    from opentelemetry.metrics import Observation

    for attributes, value in values:
        yield Observation(value, dict(attributes))
