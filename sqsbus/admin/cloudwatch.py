"""The SQS metrics CloudWatch keeps per queue, for ``sqsbus top --cloudwatch``.

SQS's queue attributes give counts only; CloudWatch's ``AWS/SQS`` namespace has, per queue
and per minute, the messages sent (``NumberOfMessagesSent``, Sum), deleted
(``NumberOfMessagesDeleted``, Sum) and the age of the oldest message
(``ApproximateAgeOfOldestMessage``, Maximum). SQS publishes them once a minute, for queues
active in the last six hours, a few minutes late. :func:`read_sqs_metrics` reads the newest
complete minute of each with ``GetMetricData`` (:data:`~sqsbus.admin.budget.MAX_QUERIES_PER_REQUEST`
queries per request) and never raises for a missing permission: the reading says why it has
no values.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqsbus.admin.budget import MAX_QUERIES_PER_REQUEST
from sqsbus.aws import call
from sqsbus.errors import AccessDeniedError, SQSBusError

__all__ = ["MetricsReading", "QueueMetrics", "read_sqs_metrics"]

#: (metric name, statistic, field of :class:`QueueMetrics`).
METRICS: Final = (
    ("NumberOfMessagesSent", "Sum", "sent"),
    ("NumberOfMessagesDeleted", "Sum", "deleted"),
    ("ApproximateAgeOfOldestMessage", "Maximum", "oldest"),
)
PERIOD_SECONDS: Final = 60
#: How far back to look for the newest data point (SQS's metrics arrive minutes late).
LOOKBACK: Final = datetime.timedelta(minutes=15)

OK: Final = "ok"
NO_DATA: Final = "no data"
DENIED: Final = "denied"
ERROR: Final = "error"


@dataclass(frozen=True)
class QueueMetrics:
    """One queue's newest CloudWatch minute (None: no data point in :data:`LOOKBACK`)."""

    sent_per_second: float | None = None
    deleted_per_second: float | None = None
    oldest_age_seconds: float | None = None
    #: Start of the newest minute found, UTC.
    minute: datetime.datetime | None = None


@dataclass(frozen=True)
class MetricsReading:
    """What one CloudWatch read found; ``state`` is ok, no data, denied or error."""

    state: str
    read_at: datetime.datetime
    #: Per SQS queue name.
    queues: dict[str, QueueMetrics] = field(default_factory=dict)
    #: One line for the operator when ``state`` is not ok.
    notice: str | None = None


def read_sqs_metrics(
    client: Any,
    queue_names: Sequence[str],
    *,
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
) -> MetricsReading:
    """The newest complete minute of each queue's metrics, from ``client`` (CloudWatch)."""
    read_at = now()
    end = read_at.replace(second=0, microsecond=0)  # complete minutes only
    queries, keys = _queries(queue_names)
    values: dict[str, tuple[datetime.datetime, float]] = {}
    try:
        for start in range(0, len(queries), MAX_QUERIES_PER_REQUEST):
            chunk = queries[start : start + MAX_QUERIES_PER_REQUEST]
            values.update(_read(client, chunk, end - LOOKBACK, end))
    except AccessDeniedError:
        return MetricsReading(
            DENIED,
            read_at,
            notice=(
                "CloudWatch: access denied to cloudwatch:GetMetricData, so SENT/s, DELETED/s "
                "and OLDEST stay empty; grant it (docs/top.md) or drop --cloudwatch"
            ),
        )
    except SQSBusError as exc:
        return MetricsReading(ERROR, read_at, notice=f"CloudWatch: {exc}")
    points: dict[str, dict[str, tuple[datetime.datetime, float]]] = {}
    for query_id, point in values.items():
        name, key = keys[query_id]
        points.setdefault(name, {})[key] = point
    found = {name: _metrics(points.get(name, {})) for name in queue_names}
    if not values:
        return MetricsReading(
            NO_DATA,
            read_at,
            found,
            notice=(
                "CloudWatch: no SQS data points in the last 15 minutes (SQS publishes them "
                "only for active queues, and local endpoints publish none)"
            ),
        )
    return MetricsReading(OK, read_at, found)


def _queries(
    queue_names: Sequence[str],
) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """The metric queries, and each query id's (queue name, field)."""
    queries: list[dict[str, Any]] = []
    keys: dict[str, tuple[str, str]] = {}
    for number, name in enumerate(queue_names):
        for metric, statistic, key in METRICS:
            query_id = f"q{number}_{key}"
            keys[query_id] = (name, key)
            queries.append(
                {
                    "Id": query_id,
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/SQS",
                            "MetricName": metric,
                            "Dimensions": [{"Name": "QueueName", "Value": name}],
                        },
                        "Period": PERIOD_SECONDS,
                        "Stat": statistic,
                    },
                    "ReturnData": True,
                }
            )
    return queries, keys


def _read(
    client: Any, queries: list[dict[str, Any]], start: datetime.datetime, end: datetime.datetime
) -> dict[str, tuple[datetime.datetime, float]]:
    """Query id -> its newest (timestamp, value), over every page."""
    newest: dict[str, tuple[datetime.datetime, float]] = {}
    params: dict[str, Any] = {
        "MetricDataQueries": queries,
        "StartTime": start,
        "EndTime": end,
        "ScanBy": "TimestampDescending",
    }
    while True:
        answer = call(client, "get_metric_data", "read SQS metrics from CloudWatch", **params)
        for result in answer.get("MetricDataResults", []):
            points = zip(result.get("Timestamps") or [], result.get("Values") or [], strict=False)
            for stamp, value in points:
                query_id = str(result.get("Id"))
                if query_id not in newest or stamp > newest[query_id][0]:
                    newest[query_id] = (stamp, float(value))
        token = answer.get("NextToken")
        if not token:
            return newest
        params["NextToken"] = token


def _metrics(mine: dict[str, tuple[datetime.datetime, float]]) -> QueueMetrics:
    if not mine:
        return QueueMetrics()
    sent, deleted, oldest = (mine.get(key) for key in ("sent", "deleted", "oldest"))
    return QueueMetrics(
        sent_per_second=sent[1] / PERIOD_SECONDS if sent else None,
        deleted_per_second=deleted[1] / PERIOD_SECONDS if deleted else None,
        oldest_age_seconds=oldest[1] if oldest else None,
        minute=max(point[0] for point in mine.values()).astimezone(datetime.UTC),
    )
