"""The demo's summary: AWS requests and messages of every process, as JSON and as text.

The producer's counts come from this process; each worker process's from the stats file it
wrote (:mod:`sqsbus.demo.stats`). :func:`count_endpoint_requests` reads the endpoint's own
request log, to cross-check their total.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqsbus.demo.metrics import SUMMARY_SAMPLES
from sqsbus.demo.plan import Plan
from sqsbus.demo.producer import Collector
from sqsbus.demo.settings import FLAKY_FAILURES, FLAKY_TASK

__all__ = [
    "Accounts",
    "collect_accounts",
    "count_endpoint_requests",
    "difference",
    "format_summary",
    "summarize",
]

_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-9;]*m")
_REQUEST_LINE: Final = re.compile(r'"(?:GET|POST|PUT|DELETE|HEAD|PATCH) (\S+) HTTP/[0-9.]+"')


@dataclass
class Accounts:
    """Requests and messages of the producer and of every worker process."""

    producer_requests: dict[str, int]
    worker_requests: dict[str, int]
    producer_published: dict[str, int]
    worker_published: dict[str, int]
    retried: dict[str, int]
    worker_failed: dict[str, int]
    worker_processes: int
    endpoint_requests: int | None

    @property
    def total_requests(self) -> int:
        return sum(self.producer_requests.values()) + sum(self.worker_requests.values())

    @property
    def messages(self) -> int:
        return sum(self.producer_published.values()) + sum(self.worker_published.values())

    @property
    def per_message(self) -> float:
        return self.total_requests / self.messages if self.messages else 0.0

    def operations(self) -> list[tuple[str, int, int, int]]:
        names = set(self.producer_requests) | set(self.worker_requests)
        rows = [
            (
                name,
                self.producer_requests.get(name, 0),
                self.worker_requests.get(name, 0),
                self.producer_requests.get(name, 0) + self.worker_requests.get(name, 0),
            )
            for name in names
        ]
        return sorted(rows, key=lambda row: (-row[3], row[0]))


def _add_counts(into: dict[str, int], counts: Mapping[str, Any]) -> None:
    for name, count in counts.items():
        into[str(name)] = into.get(str(name), 0) + int(count)


def difference(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """The counts that grew from ``before`` to ``after``, by how much."""
    diff = {name: count - before.get(name, 0) for name, count in after.items()}
    return {name: count for name, count in diff.items() if count}


def _read_worker_stats(stats_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    stats: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in sorted(stats_dir.glob("stats-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"cannot read {path.name}: {exc}")
            continue
        if isinstance(data, dict):
            stats.append(data)
        else:
            problems.append(f"{path.name} does not hold a JSON object")
    return stats, problems


def count_endpoint_requests(log_file: Path) -> int | None:
    """Requests in moto's log, without the endpoint's own health checks."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    count = 0
    for line in _ANSI_ESCAPE.sub("", text).splitlines():
        match = _REQUEST_LINE.search(line)
        if match and not match.group(1).startswith("/moto-api"):
            count += 1
    return count


def collect_accounts(
    stats_dir: Path,
    concurrency: int,
    producer_requests: dict[str, int],
    producer_published: dict[str, int],
) -> tuple[Accounts, list[str]]:
    """The producer's counts with those the worker's processes wrote to ``stats_dir``, and
    what is wrong with the files (one main worker and ``concurrency`` pool processes)."""
    stats, problems = _read_worker_stats(stats_dir)
    worker_requests: dict[str, int] = {}
    worker_published: dict[str, int] = {}
    retried: dict[str, int] = {}
    failed: dict[str, int] = {}
    roles = [str(item.get("role")) for item in stats]
    for item in stats:
        _add_counts(worker_requests, item.get("http_requests", {}))
        _add_counts(worker_published, item.get("published", {}))
        _add_counts(retried, item.get("retried", {}))
        _add_counts(failed, item.get("failed", {}))
    if roles.count("worker") != 1:
        problems.append(f"expected stats of 1 main worker process, found {roles.count('worker')}")
    if roles.count("pool") != concurrency:
        problems.append(
            f"expected stats of {concurrency} pool processes, found {roles.count('pool')}"
        )
    accounts = Accounts(
        producer_requests=producer_requests,
        worker_requests=worker_requests,
        producer_published=producer_published,
        worker_published=worker_published,
        retried=retried,
        worker_failed=failed,
        worker_processes=len(stats),
        endpoint_requests=None,
    )
    return accounts, problems


def summarize(
    *,
    plan: Plan,
    collector: Collector,
    accounts: Accounts,
    problems: list[str],
    wall_seconds: float,
    stop_seconds: float,
    setup: dict[str, Any],
) -> dict[str, Any]:
    """The run's summary, as ``--json`` writes it."""
    elapsed = collector.elapsed()
    return {
        "ok": not problems,
        "problems": problems,
        "tasks": {
            "requested": plan.total,
            "completed": collector.completed,
            "failed": len(collector.failures),
            "unfinished": len(collector.pending),
            "failures": collector.failures[:20],
            "mix": {
                "single": plan.singles,
                "group": plan.group,
                "chord_header": plan.chord_header,
                "chord_callback": 1,
                "flaky": plan.flaky,
            },
        },
        "retries": {
            "observed": accounts.retried.get(FLAKY_TASK, 0),
            "expected": plan.flaky * FLAKY_FAILURES,
            "flaky_attempts": sorted(collector.flaky_attempts),
            "chord_unlock": accounts.retried.get("celery.chord_unlock", 0),
            "by_task": accounts.retried,
        },
        "elapsed_seconds": round(elapsed, 3),
        "tasks_per_second": round(collector.completed / elapsed, 2) if elapsed else 0.0,
        "wall_seconds": round(wall_seconds, 3),
        "worker_stop_seconds": round(stop_seconds, 3),
        "messages": {
            "published": accounts.messages,
            "by_producer": sum(accounts.producer_published.values()),
            "by_worker": sum(accounts.worker_published.values()),
            "by_task": _merged(accounts.producer_published, accounts.worker_published),
        },
        "aws_requests": {
            "total": accounts.total_requests,
            "producer": sum(accounts.producer_requests.values()),
            "worker": sum(accounts.worker_requests.values()),
            "per_message": round(accounts.per_message, 3),
            "by_operation": {
                name: {"producer": producer, "worker": worker, "total": total}
                for name, producer, worker, total in accounts.operations()
            },
            "worker_processes": accounts.worker_processes,
            "endpoint_log": accounts.endpoint_requests,
        },
        "setup": setup,
    }


def format_summary(
    summary: Mapping[str, Any], plan: Plan, collector: Collector, accounts: Accounts
) -> str:
    """The results and the AWS requests table the demo prints at its end."""
    retries = summary["retries"]
    messages = summary["messages"]
    elapsed = summary["elapsed_seconds"]
    lines = [
        "",
        "Results",
        f"  tasks completed     {collector.completed} / {plan.total}",
        f"  failures            {len(collector.failures)}",
        f"  retries observed    {retries['observed']} (expected {retries['expected']}: "
        f"{plan.flaky} flaky x {FLAKY_FAILURES}); "
        f"chord_unlock polls: {retries['chord_unlock']}",
        f"  elapsed             {elapsed:.1f} s (first publish to last result); "
        f"whole run {summary['wall_seconds']:.1f} s",
        f"  throughput          {summary['tasks_per_second']:.1f} tasks/s",
    ]
    for failure in collector.failures[:10]:
        lines.append(f"    failed: {failure}")
    lines += [
        "",
        f"AWS requests, counted by sqsbus (GLOBAL_STATS) in the producer and "
        f"{accounts.worker_processes} worker processes",
    ]
    rows = accounts.operations()
    width = max([len("operation"), *(len(row[0]) for row in rows)])
    lines.append(f"  {'operation':<{width}}  {'producer':>8}  {'worker':>8}  {'total':>8}")
    for name, producer, worker, total in rows:
        lines.append(f"  {name:<{width}}  {producer:>8}  {worker:>8}  {total:>8}")
    producer_total = sum(accounts.producer_requests.values())
    worker_total = sum(accounts.worker_requests.values())
    lines.append(
        f"  {'total':<{width}}  {producer_total:>8}  {worker_total:>8}  "
        f"{accounts.total_requests:>8}"
    )
    if accounts.endpoint_requests is not None:
        verdict = (
            "matches"
            if accounts.endpoint_requests == accounts.total_requests
            else f"differs by {accounts.endpoint_requests - accounts.total_requests:+d}"
        )
        lines.append(
            f"  the endpoint's own log shows {accounts.endpoint_requests} requests ({verdict})"
        )
    lines += [
        "",
        f"  task messages published   {messages['published']} "
        f"({messages['by_producer']} by the producer, {messages['by_worker']} by the worker: "
        "retries, chord callback, chord_unlock polls)",
        f"  AWS requests per message  {accounts.per_message:.2f}",
    ]
    if "metrics" in summary:
        lines += _format_metrics(summary["metrics"])
    return "\n".join(lines)


def _format_metrics(scraped: Mapping[str, Any]) -> list[str]:
    """The figures read back from the processes' Prometheus endpoints."""
    producer, worker = scraped["producer"], scraped["worker"]
    ports = ", ".join(str(port) for port in scraped["ports_answered"])
    lines = [
        "",
        f"Metrics, read from the processes' Prometheus endpoints (ports {ports}) "
        "once the tasks were done",
        f"  {'sample':<38}  {'producer':>8}  {'worker':>8}",
    ]
    for name, meaning in SUMMARY_SAMPLES.items():
        lines.append(f"  {name:<38}  {producer[name]:>8.0f}  {worker[name]:>8.0f}  {meaning}")
    requests = producer["sqsbus_aws_requests_total"] + worker["sqsbus_aws_requests_total"]
    published = (
        producer["sqsbus_messages_published_total"] + worker["sqsbus_messages_published_total"]
    )
    counted = scraped["producer_requests_counted"]
    verdict = "equal to" if producer["sqsbus_aws_requests_total"] == counted else "DIFFERENT FROM"
    lines.append(
        f"  the producer's requests are {verdict} what sqsbus counted in it ({counted}); "
        "the worker still long-polls"
    )
    if published:
        lines.append(f"  AWS requests per message  {requests / published:.2f} (from the metrics)")
    return lines


def _merged(first: Mapping[str, int], second: Mapping[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    _add_counts(merged, first)
    _add_counts(merged, second)
    return dict(sorted(merged.items()))
