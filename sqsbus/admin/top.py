"""What ``sqsbus top`` shows: every queue's counts at each refresh, how fast each changes,
which queues are dead-letter queues and, when asked, CloudWatch's per-minute figures.

SQS's queue attributes give approximate counts only (visible, in flight, delayed), no
throughput and no message age. So NET/s is the change per second of a queue's total
(visible + in flight + delayed) between two refreshes: messages in minus messages out
(deleted, expired or dead-lettered), the net of the two. With ``cloudwatch=True`` the
messages sent and deleted per second and the age of the oldest message come from CloudWatch
(:mod:`sqsbus.admin.cloudwatch`), a minute at a time and minutes late.

Requests are bounded (:mod:`sqsbus.admin.budget`): every HTTP request the watcher's clients
send waits for its slot in one :class:`~sqsbus.admin.budget.RequestPacer`, and
``ListQueues`` and CloudWatch are read once a minute::

    with watch_queues(session, interval=5, cloudwatch=True) as watcher:
        snapshot = watcher.refresh()
        for queue in snapshot.queues:
            print(queue.name, queue.visible, queue.net_per_second)
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Final, Self

from sqsbus.admin.budget import (
    CLOUDWATCH_INTERVAL_SECONDS,
    LIST_INTERVAL_SECONDS,
    RefreshPlan,
    RequestPacer,
)
from sqsbus.admin.cloudwatch import MetricsReading, QueueMetrics, read_sqs_metrics
from sqsbus.admin.inventory import info_from_attributes, link_dead_letters, map_in_daemon_threads
from sqsbus.admin.session import AdminSession
from sqsbus.errors import ConfigurationError, QueueDoesNotExist
from sqsbus.queues import FIFO_SUFFIX, QueueRef

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_REQUESTS_PER_SECOND",
    "QueueSample",
    "QueueWatcher",
    "TopSnapshot",
    "net_change_per_second",
    "watch_queues",
]

#: Seconds between refreshes unless asked otherwise.
DEFAULT_INTERVAL: Final = 5.0
#: Requests per second the watcher never exceeds unless asked otherwise.
DEFAULT_MAX_REQUESTS_PER_SECOND: Final = 10.0


@dataclass(frozen=True)
class QueueSample:
    """One queue at one refresh (counts approximate, as SQS says)."""

    name: str
    sqs_name: str
    url: str
    visible: int
    in_flight: int
    delayed: int
    fifo: bool
    #: Whether another queue's RedrivePolicy, or the ``redrive_policy`` option, sends
    #: dead letters here.
    dead_letter_queue: bool
    #: SQS names of the listed queues whose dead letters come here.
    dead_letter_for: tuple[str, ...] = ()
    #: SQS name of the queue this one's dead letters go to.
    dead_letters_to: str | None = None
    #: Change of :attr:`total` per second since the previous refresh (None on the first).
    net_per_second: float | None = None
    #: CloudWatch's newest minute (None without ``cloudwatch``).
    metrics: QueueMetrics | None = None

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed

    def to_json(self) -> dict[str, Any]:
        metrics = None
        if self.metrics is not None:
            minute = self.metrics.minute
            metrics = {
                "sent_per_second": self.metrics.sent_per_second,
                "deleted_per_second": self.metrics.deleted_per_second,
                "oldest_age_seconds": self.metrics.oldest_age_seconds,
                "minute": minute.isoformat() if minute else None,
            }
        return {
            "name": self.name,
            "sqs_name": self.sqs_name,
            "url": self.url,
            "visible": self.visible,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "fifo": self.fifo,
            "dead_letter_queue": self.dead_letter_queue,
            "dead_letter_for": list(self.dead_letter_for),
            "dead_letters_to": self.dead_letters_to,
            "net_per_second": self.net_per_second,
            "cloudwatch": metrics,
        }


@dataclass(frozen=True)
class TopSnapshot:
    """One refresh: the queues, what it cost and what CloudWatch said."""

    taken_at: datetime.datetime
    where: str
    queues: list[QueueSample]
    plan: RefreshPlan
    #: HTTP requests this refresh sent, per operation (``sqs.GetQueueAttributes``...).
    requests: dict[str, int]
    #: HTTP requests since the watcher started.
    total_requests: int
    #: Seconds the refresh took (paced requests included).
    duration: float = 0.0
    #: The CloudWatch read in use (None without ``cloudwatch``).
    metrics: MetricsReading | None = None
    #: Queues listed that had been deleted by the time they were read.
    vanished: int = 0

    @property
    def notices(self) -> list[str]:
        """Lines for the operator: why CloudWatch's figures are missing, if they are."""
        return [self.metrics.notice] if self.metrics and self.metrics.notice else []

    def to_json(self) -> dict[str, Any]:
        cloudwatch: dict[str, Any] = {"enabled": self.metrics is not None}
        if self.metrics is not None:
            cloudwatch |= {
                "state": self.metrics.state,
                "read_at": self.metrics.read_at.isoformat(),
                "notice": self.metrics.notice,
            }
        return {
            "time": self.taken_at.isoformat(),
            "where": self.where,
            "queues": [queue.to_json() for queue in self.queues],
            "budget": self.plan.to_json(),
            "requests": {"this_refresh": self.requests, "total": self.total_requests},
            "duration_seconds": round(self.duration, 3),
            "cloudwatch": cloudwatch,
            "vanished": self.vanished,
            "notices": self.notices,
        }


def net_change_per_second(
    previous: tuple[float, int] | None, read_at: float, total: int
) -> float | None:
    """``(total - previous total) / seconds between the reads``; None without a previous
    read or when no time passed."""
    if previous is None:
        return None
    seconds = read_at - previous[0]
    if seconds <= 0:
        return None
    return (total - previous[1]) / seconds


class _Closed(Exception):
    """Raised in a request's pacing hook once the watcher is closed: the request is dropped."""


@dataclass(frozen=True)
class _Read:
    ref: QueueRef
    attributes: dict[str, str]
    read_at: float


class QueueWatcher:
    """Refreshes the queues of an :class:`AdminSession` within a request budget.

    Use it as a context manager (or call :meth:`close`): it paces the session's clients
    while open.
    """

    def __init__(
        self,
        session: AdminSession,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND,
        cloudwatch: bool = False,
    ) -> None:
        if interval <= 0:
            raise ConfigurationError(f"the refresh interval must be above 0 s, not {interval}")
        if max_requests_per_second <= 0:
            raise ConfigurationError(
                f"the request rate must be above 0 per second, not {max_requests_per_second}"
            )
        self.session = session
        self.interval = interval
        self.max_requests_per_second = max_requests_per_second
        self.cloudwatch = cloudwatch
        self._clock = time.monotonic
        self._closed = threading.Event()
        # Waiting for a slot ends early on close(): Ctrl-C never waits for queued requests.
        self._pacer = RequestPacer(max_requests_per_second, sleep=self._closed.wait)
        self._paced: dict[int, tuple[Any, str]] = {}
        self._refs: list[QueueRef] = []
        self._listed_at: float | None = None
        self._relist = False
        self._previous: dict[str, tuple[float, int]] = {}
        self._metrics: MetricsReading | None = None
        self._metrics_at: float | None = None
        self._baseline = sum(session.aws.stats.http_requests().values())
        self._dead_letter_names = _configured_dead_letter_names(session)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop pacing the session's clients; requests still waiting for their slot are
        dropped, not sent."""
        self._closed.set()
        for client, event in self._paced.values():
            client.meta.events.unregister(event, self._wait_for_slot)
        self._paced.clear()

    def refresh(self) -> TopSnapshot:
        """Read every queue once (and list, and ask CloudWatch, when due)."""
        stats = self.session.aws.stats
        before = stats.http_requests()
        now = self._clock()
        if (
            self._listed_at is None
            or self._relist
            or now - self._listed_at >= LIST_INTERVAL_SECONDS
        ):
            self._pace(self.session.directory.client_for(None))
            self._refs = self.session.all_queues()
            self._listed_at, self._relist = now, False
        for ref in self._refs:
            self._pace(ref.client)
        # Each read still waits for its paced slot.
        read_all = map_in_daemon_threads(self._read, self._refs)
        reads = [read for read in read_all if read is not None]
        vanished = len(self._refs) - len(reads)
        self._relist = self._relist or vanished > 0
        samples = self._samples(reads)
        if self.cloudwatch:
            samples = self._with_metrics(samples)
        after = stats.http_requests()
        plan = RefreshPlan(
            queues=len(samples),
            fifo_queues=sum(sample.fifo for sample in samples),
            requested_interval=self.interval,
            max_requests_per_second=self.max_requests_per_second,
            listing=not self.session.options.predefined_queues,
            cloudwatch=self.cloudwatch,
        )
        return TopSnapshot(
            taken_at=datetime.datetime.now(datetime.UTC),
            where=self.session.where(),
            queues=samples,
            plan=plan,
            requests={
                name: count - before.get(name, 0)
                for name, count in sorted(after.items())
                if count > before.get(name, 0)
            },
            total_requests=sum(after.values()) - self._baseline,
            metrics=self._metrics,
            vanished=vanished,
            duration=self._clock() - now,
        )

    # -- reading ---------------------------------------------------------------------------

    def _wait_for_slot(self, **_: Any) -> None:
        self._pacer.acquire()
        if self._closed.is_set():
            raise _Closed("sqsbus top stopped; request not sent")

    def _pace(self, client: Any) -> None:
        """Make every HTTP request of ``client`` wait for its slot (once per client)."""
        if id(client) in self._paced:
            return
        event = f"before-send.{client.meta.service_model.service_id.hyphenize()}"
        client.meta.events.register(event, self._wait_for_slot)
        self._paced[id(client)] = (client, event)

    def _read(self, ref: QueueRef) -> _Read | None:
        try:
            attributes = self.session.directory.attributes(ref, fresh=True)
        except QueueDoesNotExist:
            return None  # deleted since it was listed
        return _Read(ref, attributes, self._clock())

    def _samples(self, reads: list[_Read]) -> list[QueueSample]:
        infos = link_dead_letters(
            [info_from_attributes(self.session, read.ref, read.attributes) for read in reads]
        )
        samples = []
        previous, self._previous = self._previous, {}
        for read, info in zip(reads, infos, strict=True):
            total = info.visible + info.in_flight + info.delayed
            samples.append(
                QueueSample(
                    name=info.name,
                    sqs_name=info.sqs_name,
                    url=info.url,
                    visible=info.visible,
                    in_flight=info.in_flight,
                    delayed=info.delayed,
                    fifo=info.fifo,
                    dead_letter_queue=bool(info.dead_letter_for)
                    or info.sqs_name in self._dead_letter_names,
                    dead_letter_for=info.dead_letter_for,
                    dead_letters_to=info.dead_letter.target_name if info.dead_letter else None,
                    net_per_second=net_change_per_second(
                        previous.get(info.url), read.read_at, total
                    ),
                )
            )
            self._previous[info.url] = (read.read_at, total)
        return sorted(samples, key=lambda sample: sample.name)

    def _with_metrics(self, samples: list[QueueSample]) -> list[QueueSample]:
        now = self._clock()
        due = self._metrics_at is None or now - self._metrics_at >= CLOUDWATCH_INTERVAL_SECONDS
        if due and samples:
            client = self.session.aws.client("cloudwatch")
            self._pace(client)
            self._metrics = read_sqs_metrics(client, [sample.sqs_name for sample in samples])
            self._metrics_at = now
        found = self._metrics.queues if self._metrics else {}
        return [
            replace(sample, metrics=found.get(sample.sqs_name, QueueMetrics()))
            for sample in samples
        ]


def watch_queues(
    session: AdminSession,
    *,
    interval: float = DEFAULT_INTERVAL,
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND,
    cloudwatch: bool = False,
) -> QueueWatcher:
    """A :class:`QueueWatcher` on the session's queues (every queue under the prefix, or
    the predefined ones); call its ``refresh()`` every ``snapshot.plan.interval`` seconds."""
    return QueueWatcher(
        session,
        interval=interval,
        max_requests_per_second=max_requests_per_second,
        cloudwatch=cloudwatch,
    )


def _configured_dead_letter_names(session: AdminSession) -> set[str]:
    """SQS names of the dead-letter queues the ``redrive_policy`` option creates."""
    names: Iterable[str | None] = (
        session.directory.dead_letter_queue_name(name) for name in ("queue", "queue" + FIFO_SUFFIX)
    )
    return {name for name in names if name}
