"""The figures table: which value of which run is a row, and what the other tables compare.

Each :class:`Figure` is one row of the printed table (one value per transport, from one
scenario variant); :data:`CEILINGS` pairs the endpoint's own ceiling with the runs compared
to it; :data:`CROSS_CHECKS` and :data:`LOADED` name the runs whose request counts are
cross-checked and whose endpoint load is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bench.profiles import Params

__all__ = ["CEILINGS", "CEILING_LOAD", "CROSS_CHECKS", "FIGURES", "LOADED", "Figure"]


@dataclass(frozen=True)
class Figure:
    """A row of the table: one value per transport from one scenario variant."""

    id: str
    key: str  # scenario/variant
    name: str  # the value's name in the scenario's figures
    label: Callable[[Params], str]
    unit: str
    better: str  # "higher" or "lower"
    digits: int = 1


def _wait(params: Params) -> str:
    wait = params.get("wait_time_seconds")
    return "each transport's default wait" if wait is None else f"wait {wait} s"


FIGURES: Final[tuple[Figure, ...]] = (
    Figure(
        "e2e_requests_per_message",
        "e2e",
        "requests_per_message",
        lambda p: f"requests/msg end to end ({p['messages']} msgs, 8 producers + 1 consumer)",
        "req/msg",
        "lower",
        3,
    ),
    Figure(
        "e2e_msgs_per_s",
        "e2e",
        "msgs_per_s",
        lambda p: "  end-to-end msgs/s of that run",
        "msg/s",
        "higher",
        0,
    ),
    Figure(
        "e2e_linger_requests_per_message",
        "e2e/linger",
        "requests_per_message",
        lambda p: (
            f"requests/msg end to end, sqsbus producers with publish_linger_ms={p['linger_ms']}"
        ),
        "req/msg",
        "lower",
        3,
    ),
    Figure(
        "e2e_linger_msgs_per_s",
        "e2e/linger",
        "msgs_per_s",
        lambda p: "  end-to-end msgs/s of that run",
        "msg/s",
        "higher",
        0,
    ),
    Figure(
        "publish_1_msgs_per_s",
        "publish/1",
        "msgs_per_s",
        lambda p: f"publish msgs/s, 1 thread ({p['messages']} msgs)",
        "msg/s",
        "higher",
        0,
    ),
    Figure(
        "publish_8_msgs_per_s",
        "publish/8",
        "msgs_per_s",
        lambda p: f"publish msgs/s, 8 threads ({p['messages']} msgs)",
        "msg/s",
        "higher",
        0,
    ),
    Figure(
        "publish_8_requests_per_message",
        "publish/8",
        "requests_per_message",
        lambda p: "  publish requests/msg, 8 threads",
        "req/msg",
        "lower",
        3,
    ),
    Figure(
        "publish_8_linger_msgs_per_s",
        "publish/8-linger",
        "msgs_per_s",
        lambda p: f"publish msgs/s, 8 threads, sqsbus with publish_linger_ms={p['linger_ms']}",
        "msg/s",
        "higher",
        0,
    ),
    Figure(
        "publish_8_linger_requests_per_message",
        "publish/8-linger",
        "requests_per_message",
        lambda p: "  publish requests/msg, 8 threads, linger",
        "req/msg",
        "lower",
        3,
    ),
    Figure(
        "publish_1_batched_msgs_per_s",
        "publish/1-batched",
        "msgs_per_s",
        lambda p: "publish msgs/s, 1 thread, sqsbus in batched_publishing() (confirmed at its end)",
        "msg/s",
        "higher",
        0,
    ),
    Figure(
        "publish_8_batched_msgs_per_s",
        "publish/8-batched",
        "msgs_per_s",
        lambda p: "publish msgs/s, 8 threads, each sqsbus thread in batched_publishing()",
        "msg/s",
        "higher",
        0,
    ),
    Figure(
        "publish_8_batched_requests_per_message",
        "publish/8-batched",
        "requests_per_message",
        lambda p: "  publish requests/msg, 8 threads, batched",
        "req/msg",
        "lower",
        3,
    ),
    Figure(
        "consume_1_msgs_per_s",
        "consume/1",
        "msgs_per_s",
        lambda p: f"consume+ack msgs/s, 1 queue ({p['per_queue']} msgs, prefetch {p['prefetch']})",
        "msg/s",
        "higher",
        0,
    ),
    Figure(
        "consume_10_msgs_per_s",
        "consume/10",
        "msgs_per_s",
        lambda p: f"consume+ack msgs/s, 10 queues ({p['per_queue']} msgs each)",
        "msg/s",
        "higher",
        0,
    ),
    Figure(
        "consume_10_requests_per_message",
        "consume/10",
        "requests_per_message",
        lambda p: "  consume+ack requests/msg, 10 queues",
        "req/msg",
        "lower",
        3,
    ),
    Figure(
        "celery_tasks_per_s",
        "celery",
        "tasks_per_s",
        lambda p: f"Celery tasks/s ({p['tasks']} tasks by a group, -c {p['concurrency']})",
        "task/s",
        "higher",
        0,
    ),
    Figure(
        "celery_requests_per_task",
        "celery",
        "requests_per_task",
        lambda p: "  Celery requests/task",
        "req/task",
        "lower",
        3,
    ),
    Figure(
        "celery_worker_cpu_s_per_10k",
        "celery",
        "worker_cpu_s_per_10k",
        lambda p: "  Celery worker CPU s per 10k tasks (all processes)",
        "s",
        "lower",
        2,
    ),
    Figure(
        "celery_backlog_tasks_per_s",
        "celery/backlog",
        "tasks_per_s",
        lambda p: f"Celery worker tasks/s, draining {p['tasks']} tasks a group queued beforehand",
        "task/s",
        "higher",
        0,
    ),
    Figure(
        "celery_backlog_requests_per_task",
        "celery/backlog",
        "requests_per_task",
        lambda p: "  Celery worker requests/task, that run",
        "req/task",
        "lower",
        3,
    ),
    Figure(
        "celery_backlog_worker_cpu_s_per_10k",
        "celery/backlog",
        "worker_cpu_s_per_10k",
        lambda p: "  Celery worker CPU s per 10k tasks, that run",
        "s",
        "lower",
        2,
    ),
    Figure(
        "celery_linger_tasks_per_s",
        "celery/linger",
        "tasks_per_s",
        lambda p: f"Celery tasks/s, group published with publish_linger_ms={p['linger_ms']}",
        "task/s",
        "higher",
        0,
    ),
    Figure(
        "celery_linger_requests_per_task",
        "celery/linger",
        "requests_per_task",
        lambda p: "  Celery requests/task, linger",
        "req/task",
        "lower",
        3,
    ),
    Figure(
        "celery_batched_tasks_per_s",
        "celery/batched",
        "tasks_per_s",
        lambda p: "Celery tasks/s, group published in sqsbus.batched_publishing()",
        "task/s",
        "higher",
        0,
    ),
    Figure(
        "celery_batched_requests_per_task",
        "celery/batched",
        "requests_per_task",
        lambda p: "  Celery requests/task, batched",
        "req/task",
        "lower",
        3,
    ),
    Figure(
        "latency_hub_p50_ms",
        "latency/hub",
        "p50_ms",
        lambda p: f"idle latency p50 ms, event loop, {p['queues']} queues, {_wait(p)}",
        "ms",
        "lower",
        1,
    ),
    Figure(
        "latency_hub_p99_ms",
        "latency/hub",
        "p99_ms",
        lambda p: f"idle latency p99 ms, event loop ({p['trials']} trials)",
        "ms",
        "lower",
        1,
    ),
    Figure(
        "latency_drain_p50_ms",
        "latency/drain",
        "p50_ms",
        lambda p: f"idle latency p50 ms, drain_events, {p['queues']} queues, {_wait(p)}",
        "ms",
        "lower",
        1,
    ),
    Figure(
        "latency_drain_p99_ms",
        "latency/drain",
        "p99_ms",
        lambda p: f"idle latency p99 ms, drain_events ({p['trials']} trials)",
        "ms",
        "lower",
        1,
    ),
    Figure(
        "idle_hub_max_requests_per_queue_hour",
        "idle/hub-max",
        "requests_per_queue_hour",
        lambda p: f"idle requests/queue/hour, event loop, {p['queues']} queues, {_wait(p)}",
        "req",
        "lower",
        0,
    ),
    Figure(
        "idle_hub_default_requests_per_queue_hour",
        "idle/hub-default",
        "requests_per_queue_hour",
        lambda p: f"idle requests/queue/hour, event loop, {p['queues']} queues, {_wait(p)}",
        "req",
        "lower",
        0,
    ),
    Figure(
        "idle_drain_max_requests_per_queue_hour",
        "idle/drain-max",
        "requests_per_queue_hour",
        lambda p: f"idle requests/queue/hour, drain_events, {p['queues']} queues, {_wait(p)}",
        "req",
        "lower",
        0,
    ),
    Figure(
        "footprint_10_cpu_s_per_10k",
        "footprint/10",
        "cpu_s_per_10k",
        lambda p: "client CPU s per 10k msgs consumed, prefetch 10",
        "s",
        "lower",
        2,
    ),
    Figure(
        "footprint_100_cpu_s_per_10k",
        "footprint/100",
        "cpu_s_per_10k",
        lambda p: "client CPU s per 10k msgs consumed, prefetch 100",
        "s",
        "lower",
        2,
    ),
    Figure(
        "footprint_10_peak_rss_mb",
        "footprint/10",
        "peak_rss_mb",
        lambda p: f"peak RSS MiB, prefetch 10 ({p['pad']} B payloads)",
        "MiB",
        "lower",
        1,
    ),
    Figure(
        "footprint_100_peak_rss_mb",
        "footprint/100",
        "peak_rss_mb",
        lambda p: "peak RSS MiB, prefetch 100",
        "MiB",
        "lower",
        1,
    ),
)

CEILINGS: Final = (
    ("send_batch_msgs_per_s", "SendMessageBatch(10), 1 queue", ("publish/8", "publish/1")),
    (
        "send_batch_concurrent_msgs_per_s",
        "SendMessageBatch(10), 1 queue, 8 threads",
        ("publish/8", "publish/1"),
    ),
    ("receive_delete_msgs_per_s_1q", "Receive(10)+DeleteMessageBatch, 1 queue", ("consume/1",)),
    ("receive_delete_msgs_per_s_nq", "Receive(10)+DeleteMessageBatch, 10 queues", ("consume/10",)),
    (
        "receive_delete_msgs_per_s_nq_concurrent",
        "Receive(10)+DeleteMessageBatch, 10 queues, 10 threads",
        ("consume/10",),
    ),
)
#: The ceiling run's endpoint CPU share (server CPU s / wall s) of each ceiling figure.
CEILING_LOAD: Final = {
    "send_batch_msgs_per_s": "send_batch_endpoint_cpu_share",
    "send_batch_concurrent_msgs_per_s": "send_batch_concurrent_endpoint_cpu_share",
    "receive_delete_msgs_per_s_1q": "receive_delete_endpoint_cpu_share_1q",
    "receive_delete_msgs_per_s_nq": "receive_delete_endpoint_cpu_share_nq",
    "receive_delete_msgs_per_s_nq_concurrent": "receive_delete_endpoint_cpu_share_nq_concurrent",
}

#: Runs whose request counts are cross-checked against sqsbus's own.
CROSS_CHECKS: Final = (
    "e2e",
    "publish/1",
    "publish/8",
    "consume/1",
    "consume/10",
    "celery",
    "footprint/10",
    "footprint/100",
)

#: Runs whose endpoint load is shown: the endpoint server's CPU time over the phase's wall time.
LOADED: Final = ("e2e", "publish/1", "publish/8", "consume/1", "consume/10", "celery")
