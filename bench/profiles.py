"""What the benchmark runs: every scenario variant's parameters per profile, and the jobs.

A profile (``full``, ``quick``, ``smoke``) gives the parameters of every scenario variant,
``{scenario: {variant: params}}``; :func:`jobs_for` turns it into one :class:`Job` per
variant and transport, in :data:`ORDER`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from bench.common import TRANSPORTS, EndpointKind

__all__ = [
    "BACKGROUND",
    "LINGER_MS",
    "ORDER",
    "PROFILES",
    "SQSBUS_ONLY",
    "Job",
    "Params",
    "jobs_for",
    "profile_for",
    "with_latency",
]

Params = dict[str, Any]


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
    metrics_per_queue: int = 100,
    metrics_rounds: int = 7,
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
        "metrics": {
            "": {
                "queues": 10,
                "per_queue": metrics_per_queue,
                "prefetch": 10,
                "pad": small,
                "rounds": metrics_rounds,
                # 3 consuming children per round, each on freshly filled queues.
                "timeout_seconds": 60 + metrics_rounds * 3 * (30 + metrics_per_queue * 0.5),
            }
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
        metrics_per_queue=50,
        metrics_rounds=3,
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
        metrics_per_queue=2,
        metrics_rounds=1,
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
ORDER: Final = (
    "ceiling",
    "e2e",
    "publish",
    "consume",
    "celery",
    "idle",
    "latency",
    "footprint",
    "metrics",
)
#: Scenarios that measure sqsbus alone (no Kombu run to compare with).
SQSBUS_ONLY: Final = frozenset({"metrics"})


def jobs_for(profile: dict[str, dict[str, Params]], only: Sequence[str]) -> list[Job]:
    """The runs of ``profile`` (of the scenarios in ``only``, if any), in :data:`ORDER`."""
    jobs = []
    for scenario in ORDER:
        if only and scenario not in only:
            continue
        for variant, params in profile[scenario].items():
            transports: Sequence[str] = (
                ("endpoint",)
                if scenario == "ceiling"
                else ("sqsbus",)
                if scenario in SQSBUS_ONLY
                else TRANSPORTS
            )
            for transport in transports:
                jobs.append(Job(scenario, variant, transport, params))
    return jobs
