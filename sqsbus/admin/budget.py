"""The request budget of ``sqsbus top``: how often it refreshes, the pace of its requests and
what they cost on AWS.

A refresh reads one ``GetQueueAttributes`` per queue; ``ListQueues`` runs once a
:data:`LIST_INTERVAL_SECONDS` (one request per 1,000 queues); with CloudWatch,
``GetMetricData`` runs once a :data:`CLOUDWATCH_INTERVAL_SECONDS` (one request per
:data:`MAX_QUERIES_PER_REQUEST` metrics, :data:`METRICS_PER_QUEUE` per queue). Every HTTP
request goes through one :class:`RequestPacer`, so the rate never exceeds the bound; the
refresh interval is stretched (:attr:`RefreshPlan.interval`) when the queues need longer.

Prices are AWS's published list prices for US East (N. Virginia), after the free tier,
which this module assumes (they change rarely; other regions differ by a few percent).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqsbus.limits import CLOUDWATCH_MAX_METRIC_QUERIES, MAX_LIST_RESULTS

__all__ = [
    "CLOUDWATCH_INTERVAL_SECONDS",
    "CLOUDWATCH_PRICE_PER_THOUSAND_METRICS",
    "LIST_INTERVAL_SECONDS",
    "MAX_QUERIES_PER_REQUEST",
    "METRICS_PER_QUEUE",
    "PRICE_NOTE",
    "SQS_FIFO_PRICE_PER_MILLION",
    "SQS_STANDARD_PRICE_PER_MILLION",
    "RefreshPlan",
    "RequestPacer",
]

#: USD per million SQS requests on standard queues (``ListQueues`` included).
SQS_STANDARD_PRICE_PER_MILLION: Final = 0.40
#: USD per million SQS requests on FIFO queues.
SQS_FIFO_PRICE_PER_MILLION: Final = 0.50
#: USD per 1,000 metrics requested by ``GetMetricData``.
CLOUDWATCH_PRICE_PER_THOUSAND_METRICS: Final = 0.01
#: The price assumption, as the help and the screen state it.
PRICE_NOTE: Final = (
    "us-east-1 list prices after the free tier: SQS $0.40 per million requests ($0.50 "
    "FIFO), CloudWatch $0.01 per 1,000 metrics"
)

#: Seconds between two ``ListQueues`` (new queues show up within this).
LIST_INTERVAL_SECONDS: Final = 60.0
#: Seconds between two CloudWatch reads: SQS publishes its metrics once a minute.
CLOUDWATCH_INTERVAL_SECONDS: Final = 60.0
#: Metrics read per queue: messages sent, messages deleted, age of the oldest message.
METRICS_PER_QUEUE: Final = 3
#: Metric queries one ``GetMetricData`` may carry (CloudWatch's limit).
MAX_QUERIES_PER_REQUEST: Final = CLOUDWATCH_MAX_METRIC_QUERIES

_SECONDS_PER_HOUR: Final = 3600.0


@dataclass(frozen=True)
class RefreshPlan:
    """How often ``sqsbus top`` refreshes ``queues`` queues, and the requests that costs."""

    queues: int
    fifo_queues: int
    requested_interval: float
    max_requests_per_second: float
    #: False with ``predefined_queues``: the queues are known, nothing is listed.
    listing: bool
    cloudwatch: bool

    @property
    def interval(self) -> float:
        """Seconds between refreshes: as asked, or longer when ``queues`` reads at the
        maximum rate take longer."""
        return max(self.requested_interval, self.queues / self.max_requests_per_second)

    @property
    def stretched(self) -> bool:
        """Whether the request bound made the interval longer than asked."""
        return self.interval > self.requested_interval

    @property
    def list_requests(self) -> int:
        """``ListQueues`` requests per listing (one per page)."""
        return max(1, math.ceil(self.queues / MAX_LIST_RESULTS)) if self.listing else 0

    @property
    def cloudwatch_requests(self) -> int:
        """``GetMetricData`` requests per CloudWatch read."""
        if not self.cloudwatch or not self.queues:
            return 0
        return math.ceil(self.queues * METRICS_PER_QUEUE / MAX_QUERIES_PER_REQUEST)

    @property
    def sqs_requests_per_hour(self) -> float:
        refreshes = _SECONDS_PER_HOUR / self.interval
        listings = _SECONDS_PER_HOUR / LIST_INTERVAL_SECONDS
        return self.queues * refreshes + self.list_requests * listings

    @property
    def sqs_cost_per_hour(self) -> float:
        """USD per hour of SQS requests at the list prices."""
        refreshes = _SECONDS_PER_HOUR / self.interval
        listings = _SECONDS_PER_HOUR / LIST_INTERVAL_SECONDS
        standard = (self.queues - self.fifo_queues) * refreshes + self.list_requests * listings
        fifo = self.fifo_queues * refreshes
        return (standard * SQS_STANDARD_PRICE_PER_MILLION + fifo * SQS_FIFO_PRICE_PER_MILLION) / 1e6

    @property
    def cloudwatch_metrics_per_hour(self) -> float:
        if not self.cloudwatch:
            return 0.0
        reads = _SECONDS_PER_HOUR / CLOUDWATCH_INTERVAL_SECONDS
        return self.queues * METRICS_PER_QUEUE * reads

    @property
    def cloudwatch_cost_per_hour(self) -> float:
        """USD per hour of CloudWatch metrics at the list price."""
        return self.cloudwatch_metrics_per_hour * CLOUDWATCH_PRICE_PER_THOUSAND_METRICS / 1000

    @property
    def cost_per_hour(self) -> float:
        return self.sqs_cost_per_hour + self.cloudwatch_cost_per_hour

    def describe(self) -> str:
        """One line for the screen: requests per refresh, pace and price per hour."""
        listing = (
            f" + ListQueues {self.list_requests}/min" if self.listing else " (predefined queues)"
        )
        text = (
            f"cost: {self.queues} GetQueueAttributes per refresh every {self.interval:g} s"
            f"{listing} = {self.sqs_requests_per_hour:,.0f} req/h"
            f" (at most {self.max_requests_per_second:g}/s)"
        )
        if self.cloudwatch:
            text += (
                f"; GetMetricData {self.cloudwatch_requests}/min"
                f" = {self.cloudwatch_metrics_per_hour:,.0f} metrics/h"
            )
        text += f"; about ${self.cost_per_hour:.4f}/h"
        if self.stretched:
            text += (
                f" (interval stretched from {self.requested_interval:g} s by "
                f"--max-requests-per-second {self.max_requests_per_second:g})"
            )
        return text

    def to_json(self) -> dict[str, object]:
        return {
            "queues": self.queues,
            "interval_seconds": self.interval,
            "requested_interval_seconds": self.requested_interval,
            "max_requests_per_second": self.max_requests_per_second,
            "get_queue_attributes_per_refresh": self.queues,
            "list_queues_per_minute": self.list_requests,
            "get_metric_data_per_minute": self.cloudwatch_requests,
            "sqs_requests_per_hour": round(self.sqs_requests_per_hour, 1),
            "cloudwatch_metrics_per_hour": round(self.cloudwatch_metrics_per_hour, 1),
            "cost_per_hour_usd": round(self.cost_per_hour, 6),
            "price_assumption": PRICE_NOTE,
        }


class RequestPacer:
    """Spaces requests at least ``1 / rate`` seconds apart, across threads.

    :meth:`acquire` returns at the start of the caller's slot: in any window of ``T``
    seconds at most ``floor(T * rate) + 1`` calls return.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"the request rate must be above 0, not {rate}")
        self.spacing = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for this request's slot; the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.spacing
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait
