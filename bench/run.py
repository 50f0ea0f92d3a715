"""Run every scenario for sqsbus and for Kombu's SQS transport; print a table, save JSON.

    python -m bench            # the full run (about 8 minutes on 2 cores)
    python -m bench --quick    # a small version (about 2 minutes)
    python -m bench --smoke    # a tiny one, for the test suite (well under a minute)
    python -m bench --endpoint localstack   # on LocalStack instead of moto (bench/localstack.py)

Each scenario runs once per transport (and variant) in its own process, against its own fresh
endpoint, moto's server by default (:mod:`bench.scenarios`). The idle scenarios (latency, idle
cost) wait more than they work; the idle-cost runs go on in the background while the latency
runs are measured.
Results go to ``bench/results/<timestamp>.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # ``python bench/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ENDPOINT_KINDS, LABELS, TRANSPORTS, EndpointKind, bench_environment

__all__ = ["FIGURES", "PROFILES", "build_parser", "main"]

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "bench" / "results"

Params = dict[str, Any]


# -- what runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One scenario variant for one transport (``endpoint`` for the ceiling)."""

    scenario: str
    variant: str
    transport: str
    params: Params

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.variant}" if self.variant else self.scenario


#: ``publish_linger_ms`` of sqsbus's producers in the ``linger`` variants.
LINGER_MS: Final = 5


def _profile(
    *,
    messages: int,
    e2e: int,
    per_queue: int,
    tasks: int,
    hub_trials: int,
    hub_spacing: float,
    drain_trials: int,
    drain_spacing: float,
    idle_window: float,
    idle_wait: int,
    idle_default: int | None,
    footprint_per_queue: int,
    latency_wait: int = 20,
    latency_tail: float = 40.0,
    idle_queues: int = 10,
) -> dict[str, dict[str, Params]]:
    """Parameters of every scenario variant: ``{scenario: {variant: params}}``."""
    small = 100  # padding of ordinary messages, bytes
    return {
        "ceiling": {
            "": {
                "publish_messages": messages,
                "per_queue": per_queue,
                "queues": 10,
                "threads": 8,
                "pad": small,
                "purge_interval": 0.1,
            }
        },
        "e2e": {
            "": {"messages": e2e, "producers": 8, "prefetch": 10, "pad": small},
            "linger": {
                "messages": e2e,
                "producers": 8,
                "prefetch": 10,
                "pad": small,
                "linger_ms": LINGER_MS,
            },
        },
        "publish": {
            str(threads): {
                "messages": messages,
                "threads": threads,
                "pad": small,
                "purge_interval": 0.1,
            }
            for threads in (1, 8)
        }
        | {
            "8-linger": {
                "messages": messages,
                "threads": 8,
                "pad": small,
                "purge_interval": 0.1,
                "linger_ms": LINGER_MS,
            }
        }
        | {
            f"{threads}-batched": {
                "messages": messages,
                "threads": threads,
                "pad": small,
                "purge_interval": 0.1,
                "batched": True,
            }
            for threads in (1, 8)
        },
        "consume": {
            str(queues): {"queues": queues, "per_queue": per_queue, "prefetch": 10, "pad": small}
            for queues in (1, 10)
        },
        "celery": {
            "": {"tasks": tasks, "concurrency": 8},
            "linger": {"tasks": tasks, "concurrency": 8, "linger_ms": LINGER_MS},
            "batched": {"tasks": tasks, "concurrency": 8, "batched": True},
            "backlog": {"tasks": tasks, "concurrency": 8, "backlog": True},
        },
        "latency": {
            "hub": {
                "mode": "hub",
                "queues": idle_queues,
                "trials": hub_trials,
                "spacing": hub_spacing,
                "wait_time_seconds": latency_wait,
                "polling_interval": 0,
                "settle": 1.0,
                "tail_timeout": latency_tail,
            },
            "drain": {
                "mode": "drain",
                "queues": idle_queues,
                "trials": drain_trials,
                "spacing": drain_spacing,
                "wait_time_seconds": 1,
                "polling_interval": 0,
                "settle": 1.0,
                "tail_timeout": latency_tail,
            },
        },
        "idle": {
            "hub-max": {
                "mode": "hub",
                "queues": idle_queues,
                "window": idle_window,
                "wait_time_seconds": idle_wait,
            },
            "hub-default": {
                "mode": "hub",
                "queues": idle_queues,
                "window": idle_window,
                "wait_time_seconds": idle_default,
            },
            "drain-max": {
                "mode": "drain",
                "queues": idle_queues,
                "window": idle_window,
                "wait_time_seconds": idle_wait,
            },
        },
        "footprint": {
            str(prefetch): {
                "queues": 10,
                "per_queue": footprint_per_queue,
                "prefetch": prefetch,
                "pad": 4096,
            }
            for prefetch in (10, 100)
        },
    }


_FULL: Final[dict[str, Any]] = {
    "messages": 2000,
    "e2e": 500,
    "per_queue": 200,
    "tasks": 5000,
    "hub_trials": 60,
    "hub_spacing": 0.25,
    "drain_trials": 40,
    "drain_spacing": 1.0,
    "idle_window": 66.0,
    "idle_wait": 20,
    "idle_default": None,
    "footprint_per_queue": 100,
}
#: LocalStack answers many times faster than moto: its full run moves more messages, so that
#: each throughput run lasts seconds at steady load rather than a fraction of a second.
_LOCALSTACK_FULL: Final[dict[str, Any]] = {
    **_FULL,
    "messages": 10_000,
    "e2e": 5_000,
    "per_queue": 1_000,
    "footprint_per_queue": 500,
}

PROFILES: Final[dict[str, dict[str, dict[str, Params]]]] = {
    "full": _profile(**_FULL),
    "quick": _profile(
        messages=500,
        e2e=100,
        per_queue=50,
        tasks=300,
        hub_trials=30,
        hub_spacing=0.2,
        drain_trials=30,
        drain_spacing=0.35,
        idle_window=46.0,
        idle_wait=20,
        idle_default=None,
        footprint_per_queue=30,
    ),
    # Every figure, nothing meaningful: short long polls so that the idle runs see several.
    "smoke": _profile(
        messages=20,
        e2e=20,
        per_queue=3,
        tasks=20,
        hub_trials=2,
        hub_spacing=0.1,
        drain_trials=2,
        drain_spacing=0.1,
        idle_window=7.5,
        idle_wait=2,
        idle_default=1,
        footprint_per_queue=2,
        latency_wait=1,
        latency_tail=15.0,
        idle_queues=3,
    ),
}


def profile_for(name: str, kind: EndpointKind) -> dict[str, dict[str, Params]]:
    """The parameters of profile ``name`` (full, quick, smoke) on an endpoint of ``kind``."""
    if name == "full" and kind == "localstack":
        return _profile(**_LOCALSTACK_FULL)
    return PROFILES[name]


def with_latency(
    profile: dict[str, dict[str, Params]], latency_ms: float
) -> dict[str, dict[str, Params]]:
    """``profile`` with every run's endpoint behind a proxy adding ``latency_ms`` per request."""
    return {
        scenario: {name: {**params, "latency_ms": latency_ms} for name, params in runs.items()}
        for scenario, runs in profile.items()
    }


#: Scenarios whose runs go on in the background while the next ones are measured.
BACKGROUND: Final = frozenset({"idle"})
ORDER: Final = ("ceiling", "e2e", "publish", "consume", "celery", "idle", "latency", "footprint")


def jobs_for(profile: dict[str, dict[str, Params]], only: Sequence[str]) -> list[Job]:
    jobs = []
    for scenario in ORDER:
        if only and scenario not in only:
            continue
        for variant, params in profile[scenario].items():
            transports: Sequence[str] = ("endpoint",) if scenario == "ceiling" else TRANSPORTS
            for transport in transports:
                jobs.append(Job(scenario, variant, transport, params))
    return jobs


# -- the figures -------------------------------------------------------------------------------


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


# -- running -----------------------------------------------------------------------------------


@dataclass
class Running:
    job: Job
    process: subprocess.Popen[bytes]
    out: Path
    log: Path
    started: float
    timeout: float


@dataclass
class Runner:
    workdir: Path
    env: dict[str, str]
    timeout: float
    endpoint: EndpointKind = "moto"
    verbose: bool = True
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start(self, job: Job) -> Running:
        name = f"{job.key.replace('/', '-')}-{job.transport}"
        jobdir = self.workdir / name
        jobdir.mkdir(parents=True, exist_ok=True)
        out = jobdir / "result.json"
        log = jobdir / "output.log"
        command = [
            sys.executable,
            "-m",
            "bench.scenarios",
            "--scenario",
            job.scenario,
            "--transport",
            job.transport,
            "--params",
            json.dumps(job.params),
            "--endpoint",
            self.endpoint,
            "--workdir",
            str(jobdir),
            "--out",
            str(out),
        ]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=str(ROOT),
                start_new_session=True,
            )
        return Running(job, process, out, log, time.monotonic(), self.timeout)

    def finish(self, running: Running) -> dict[str, Any]:
        job = running.job
        try:
            running.process.wait(max(1.0, running.started + running.timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(running.process.pid, 9)
            running.process.wait()
        seconds = time.monotonic() - running.started
        background = job.scenario in BACKGROUND
        try:
            result: dict[str, Any] = json.loads(running.out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = {
                "ok": False,
                "figures": {},
                "error": f"no result (exit {running.process.returncode}, "
                f"after {seconds:.0f} s; see {running.log})",
            }
        if not result.get("ok"):
            result.setdefault("error", "failed")
            result["log"] = str(running.log)
        if background and "wall_seconds" in result:
            seconds = float(result["wall_seconds"])  # it ran while others were measured
        result["run_seconds"] = round(seconds, 2)
        self.results.setdefault(job.key, {})[job.transport] = result
        if self.verbose:
            state = "ok" if result.get("ok") else f"FAILED: {result.get('error')}"
            where = " (background)" if background else ""
            print(
                f"  {job.key:<18} {job.transport:<8} {seconds:6.1f} s  {state}{where}", flush=True
            )
        return result

    def run(self, job: Job) -> dict[str, Any]:
        return self.finish(self.start(job))


def run_all(jobs: Sequence[Job], runner: Runner, parallel: int = 1) -> None:
    """Foreground jobs ``parallel`` at a time; background ones started together, finished last.

    Measurements are only trustworthy one at a time (``parallel`` 1): the machine is small.
    """
    background = [job for job in jobs if job.scenario in BACKGROUND]
    foreground = [job for job in jobs if job.scenario not in BACKGROUND]
    started: list[Running] = []
    first_background = next(
        (i for i, job in enumerate(foreground) if ORDER.index(job.scenario) > ORDER.index("idle")),
        len(foreground),
    )
    batch: list[Running] = []
    for index, job in enumerate(foreground):
        if index == first_background and background:
            for running in batch:
                runner.finish(running)
            batch = []
            started = _start_background(background, runner)
        batch.append(runner.start(job))
        if len(batch) >= parallel:
            for running in batch:
                runner.finish(running)
            batch = []
    for running in batch:
        runner.finish(running)
    if background and not started:
        started = _start_background(background, runner)
    for running in started:
        runner.finish(running)


def _start_background(jobs: Sequence[Job], runner: Runner) -> list[Running]:
    started = []
    for job in jobs:
        started.append(runner.start(job))
        time.sleep(0.5)  # stagger the start-ups (imports, moto) on a small machine
    time.sleep(2.0)
    return started


# -- reporting ---------------------------------------------------------------------------------


def _value(results: dict[str, dict[str, Any]], key: str, transport: str, name: str) -> Any:
    return results.get(key, {}).get(transport, {}).get("figures", {}).get(name)


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    number = float(value)
    if digits == 1 and abs(number) >= 1000:
        digits = 0
    return f"{number:,.{digits}f}"


def build_figures(
    results: dict[str, dict[str, Any]], profile: dict[str, dict[str, Params]]
) -> list[dict[str, Any]]:
    rows = []
    for figure in FIGURES:
        scenario, _, variant = figure.key.partition("/")
        params = profile.get(scenario, {}).get(variant)
        if params is None or figure.key not in results:
            continue
        sqsbus = _value(results, figure.key, "sqsbus", figure.name)
        kombu = _value(results, figure.key, "kombu", figure.name)
        ratio = sqsbus / kombu if sqsbus is not None and kombu not in (None, 0) else None
        notes = {
            t: results[figure.key].get(t, {}).get("error")
            or results[figure.key].get(t, {}).get("details", {}).get("unavailable")
            for t in TRANSPORTS
        }
        rows.append(
            {
                "id": figure.id,
                "label": figure.label(params).strip(),
                "indent": figure.label(params).startswith(" "),
                "unit": figure.unit,
                "better": figure.better,
                "sqsbus": sqsbus,
                "kombu": kombu,
                "ratio": ratio,
                "digits": figure.digits,
                "notes": {t: n for t, n in notes.items() if n},
            }
        )
    return rows


def _verdict(row: dict[str, Any]) -> str:
    ratio = row["ratio"]
    if ratio is None:
        return "n/a"
    if ratio == 0:
        return "sqsbus"
    advantage = ratio if row["better"] == "higher" else 1 / ratio
    if 0.95 <= advantage <= 1.05:
        return "even"
    return f"sqsbus {advantage:.1f}x" if advantage > 1 else f"Kombu {1 / advantage:.1f}x"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("figure", LABELS["sqsbus"], LABELS["kombu"], "ratio", "better")
    body = []
    for row in rows:
        label = ("  " if row["indent"] else "") + row["label"]
        body.append(
            (
                label,
                _fmt(row["sqsbus"], row["digits"]),
                _fmt(row["kombu"], row["digits"]),
                "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}",
                _verdict(row),
            )
        )
    return _grid(header, body, right=(1, 2, 3))


def _grid(header: Sequence[str], body: Sequence[Sequence[str]], right: Sequence[int]) -> str:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def build_ceiling(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    run = results.get("ceiling", {}).get("endpoint", {})
    figures = run.get("figures", {})
    details = run.get("details", {})
    rows = []
    for name, label, keys in CEILINGS:
        ceiling = figures.get(name)
        entry: dict[str, Any] = {
            "id": name,
            "label": label,
            "msgs_per_s": ceiling,
            "endpoint_cpu_share": details.get(CEILING_LOAD[name]),
        }
        for transport in TRANSPORTS:
            best = [
                (key, _value(results, key, transport, "msgs_per_s"))
                for key in keys
                if _value(results, key, transport, "msgs_per_s") is not None
            ]
            if best and ceiling:
                key, value = max(best, key=lambda kv: float(kv[1]))
                entry[transport] = {"run": key, "msgs_per_s": value, "share": value / ceiling}
        rows.append(entry)
    return rows


def format_ceiling(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        "endpoint ceiling (raw boto3; 1 thread unless said)",
        "msgs/s",
        "endpoint CPU",
        LABELS["sqsbus"],
        LABELS["kombu"],
    )
    body = []
    for row in rows:
        share = row.get("endpoint_cpu_share")
        cells = [row["label"], _fmt(row["msgs_per_s"], 0), _fmt(share, 2)]
        for transport in TRANSPORTS:
            got = row.get(transport)
            cells.append("n/a" if not got else f"{got['share'] * 100:.0f}% ({got['run']})")
        body.append(tuple(cells))
    return _grid(header, body, right=(1, 2, 3, 4))


#: Runs whose endpoint load is shown: the endpoint server's CPU time over the phase's wall time.
LOADED: Final = ("e2e", "publish/1", "publish/8", "consume/1", "consume/10", "celery")


def build_endpoint_load(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """How busy the endpoint's server process was in each throughput run (CPU s / wall s)."""
    rows = []
    for key in LOADED:
        row: dict[str, Any] = {"run": key}
        for transport in TRANSPORTS:
            measured = results.get(key, {}).get(transport, {}).get("details", {}).get("measured")
            cpu = (measured or {}).get("endpoint_cpu_seconds")
            seconds = (measured or {}).get("seconds")
            row[transport] = cpu / seconds if cpu is not None and seconds else None
        if any(row[t] is not None for t in TRANSPORTS):
            rows.append(row)
    return rows


def format_endpoint_load(rows: Sequence[dict[str, Any]]) -> str:
    header = ("endpoint server CPU s per wall s", LABELS["sqsbus"], LABELS["kombu"])
    body = []
    for row in rows:
        body.append(
            (row["run"], *("n/a" if row[t] is None else f"{row[t]:.2f}" for t in TRANSPORTS))
        )
    return _grid(header, body, right=(1, 2))


def build_cross_check(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for key in CROSS_CHECKS:
        result = results.get(key, {}).get("sqsbus")
        if not result or not result.get("ok"):
            continue
        details = result.get("details", {})
        measured = details.get("measured", {})
        own = measured.get("sqsbus_requests")
        if key == "celery":
            own = details.get("sqsbus_requests_total")
        if key.startswith("footprint"):
            own = None  # counted in the consuming child, not reported
        by_operation = measured.get("sqsbus_by_operation") or {}
        worker = details.get("sqsbus_worker_by_operation") or {}
        endpoint_ops = measured.get("endpoint_by_operation") or {}
        differences: dict[str, list[int]] | None = None
        if endpoint_ops and own is not None:  # the endpoint named operations (LocalStack)
            mine = dict(by_operation)
            for name, count in worker.items():
                mine[name] = mine.get(name, 0) + count
            differences = {
                name: [endpoint_ops.get(name, 0), mine.get(name, 0)]
                for name in sorted(set(endpoint_ops) | set(mine))
                if endpoint_ops.get(name, 0) != mine.get(name, 0)
            }
        rows.append(
            {
                "run": key,
                "endpoint": measured.get("transport_requests"),
                "sqsbus": own,
                "by_operation": by_operation,
                "worker_by_operation": worker or None,
                "endpoint_by_operation": endpoint_ops or None,
                "differences": differences,
                "agrees": None
                if differences is None
                else _explained(differences, int(result.get("params", {}).get("queues", 1))),
            }
        )
    return rows


def _explained(differences: dict[str, list[int]], queues: int) -> bool:
    """True if the counts differ only by long polls still in flight when the phase ended.

    sqsbus counts a request when it sends it, the endpoint logs it when it answers: at most
    one ``ReceiveMessage`` per queue consumed can be counted by sqsbus and not yet logged.
    """
    for name, (endpoint, own) in differences.items():
        if name != "sqs.ReceiveMessage" or not 0 < own - endpoint <= queues:
            return False
    return True


def format_cross_check(rows: Sequence[dict[str, Any]]) -> str:
    header = ["sqsbus requests", "endpoint", "sqsbus own", "by operation (sqsbus's count)"]
    compared = any(row.get("differences") is not None for row in rows)
    if compared:
        header.append("differing operations (endpoint/sqsbus)")
    body = []
    for row in rows:
        ops = dict(row.get("by_operation") or {})
        for name, count in (row.get("worker_by_operation") or {}).items():
            ops[f"worker {name}"] = count
        text = ", ".join(f"{n.removeprefix('sqs.')} {c}" for n, c in ops.items())
        text = text.replace("worker sqs.", "worker ")
        cells = [
            row["run"],
            str(row["endpoint"]),
            "n/a" if row["sqsbus"] is None else str(row["sqsbus"]),
            text or "-",
        ]
        if compared:
            differences = row.get("differences")
            text = (
                "n/a"
                if differences is None
                else ", ".join(
                    f"{n.removeprefix('sqs.')} {a}/{b}" for n, (a, b) in differences.items()
                )
                or "none"
            )
            if differences and row.get("agrees") is False:
                text += "  MISMATCH"
            cells.append(text)
        body.append(tuple(cells))
    return _grid(header, body, right=(1, 2))


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in ("sqsbus", "kombu", "celery", "boto3", "botocore", "moto", "pycurl", "psutil"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": _versions(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "sqsbus")),
    }


def describe_endpoint(kind: EndpointKind) -> dict[str, Any]:
    """What the runs' endpoint is; for LocalStack, its venv is made first if need be."""
    if kind == "moto":
        return {"kind": kind, "version": _versions().get("moto")}
    from bench import localstack

    python = localstack.ensure_venv(say=lambda text: print(text, flush=True))
    return {
        "kind": kind,
        "version": localstack.LOCALSTACK_VERSION,
        "pins": list(localstack.PINS),
        "python": str(python),
        "gateway": "twisted, bound to 127.0.0.1",
    }


# -- main --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark sqsbus against Kombu's SQS transport on local SQS endpoints.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a small version (about 2 minutes)")
    size.add_argument("--smoke", action="store_true", help="a tiny version for the tests")
    parser.add_argument(
        "--only",
        default="",
        metavar="SCENARIOS",
        help=f"comma-separated subset of: {', '.join(ORDER)}",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="runs measured at once (default 1; 3 with --smoke, whose numbers mean nothing)",
    )
    parser.add_argument(
        "--endpoint",
        choices=ENDPOINT_KINDS,
        default="moto",
        help="the local endpoint: moto's server (default) or LocalStack (needs Python 3.13; "
        "its venv is made once under ~/.cache/sqsbus-bench)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="put sqsbus's fault proxy in front of the endpoint, adding MS milliseconds to "
        "every request (for both transports), to see what AWS's round trips cost each",
    )
    parser.add_argument("--out", type=Path, help="the JSON file (default bench/results/<ts>.json)")
    parser.add_argument("--keep", action="store_true", help="keep every run's logs")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per scenario run (default 300)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    profile = profile_for(name, args.endpoint)
    if args.latency_ms < 0:
        print("--latency-ms must be zero or more", file=sys.stderr)
        return 2
    if args.latency_ms:
        profile = with_latency(profile, args.latency_ms)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(ORDER))
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    jobs = jobs_for(profile, only)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{stamp}.json"
    try:
        endpoint = describe_endpoint(args.endpoint)
    except RuntimeError as exc:
        print(f"cannot use the {args.endpoint} endpoint: {exc}", file=sys.stderr)
        return 2
    where = f"{args.endpoint} endpoint"
    if args.latency_ms:
        endpoint["latency_ms"] = args.latency_ms
        where += f" behind a proxy adding {args.latency_ms:g} ms per request"
    workdir = Path(tempfile.mkdtemp(prefix="sqsbus-bench-"))
    env = bench_environment(workdir)
    runner = Runner(workdir, env, args.timeout, args.endpoint)
    print(
        f"sqsbus bench ({name}): {len(jobs)} runs, each on a fresh {where}",
        flush=True,
    )
    started = time.monotonic()
    run_all(jobs, runner, parallel=max(1, args.jobs or (3 if args.smoke else 1)))
    wall = time.monotonic() - started

    results = runner.results
    figures = build_figures(results, profile)
    ceiling = build_ceiling(results)
    cross = build_cross_check(results)
    load = build_endpoint_load(results)
    failed = [
        f"{key} {transport}: {result.get('error')}"
        for key, by_transport in results.items()
        for transport, result in by_transport.items()
        if not result.get("ok")
    ]
    report = {
        "profile": name,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "machine": machine(),
        "endpoint": endpoint,
        "params": profile,
        "figures": [
            {k: v for k, v in row.items() if k not in ("digits", "indent")} for row in figures
        ],
        "ceiling": ceiling,
        "endpoint_load": load,
        "cross_check": cross,
        "failed": failed,
        "runs": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")

    print()
    print(format_table(figures))
    print("ratio = sqsbus / Kombu SQS; 'better' says which transport wins and by how much.")
    if ceiling:
        print()
        print(format_ceiling(ceiling))
    if load:
        print()
        print(format_endpoint_load(load))
        print("1.00 = the endpoint (one Python process) used a whole core: it was the bottleneck.")
    if cross:
        print()
        print(format_cross_check(cross))
        if any(row.get("differences") for row in cross):
            print(
                "endpoint and sqsbus may differ by the long polls in flight when a phase ends "
                "(ReceiveMessage, at most one per queue): sqsbus counts a request when it sends "
                "it, the endpoint logs it when it answers. MISMATCH marks anything else."
            )
    for row in figures:
        for transport, note in row["notes"].items():
            print(f"note: {row['id']} {LABELS[transport]}: {note}")
    print(f"\n{name} run on {where}: {wall:.0f} s wall; JSON: {out}")
    if failed:
        print("FAILED runs:\n  " + "\n  ".join(failed), file=sys.stderr)
        print(f"logs kept in {workdir}", file=sys.stderr)
    elif args.keep:
        print(f"logs kept in {workdir}")
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
