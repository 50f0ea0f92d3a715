"""What sqsbus's metrics cost a consumer: client CPU per 10,000 messages in three modes.

The ``metrics`` scenario (:func:`bench.scenarios.run_metrics`) consumes the same pre-filled
queues in a child process per mode, the modes in turn, round after round:

``off``  the ``opentelemetry`` packages cannot be imported (a meta-path blocker), as for a
         user without ``sqsbus[otel]``;
``api``  the OpenTelemetry API is installed but no provider is configured;
``sdk``  the SDK records everything, collected and exported every 60 s (the SDK's default
         interval, :data:`EXPORT_MILLIS`) to an exporter that keeps only the acked count, so
         the SDK's recording is measured, not a network exporter's;
``sdk_1s`` the same, collected every second: a stress case, where a slow endpoint makes
         each message pay for many collections (their cost is per second and per series,
         not per message: see ``collect_ms``).

This module holds what runs in the child (:func:`set_up`); :mod:`bench.report` prints the
table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from typing import Any, Final

__all__ = ["EXPORT_MILLIS", "LABELS", "MODES", "set_up"]

MODES: Final = ("off", "api", "sdk", "sdk_1s")
#: How often each SDK mode collects and exports (milliseconds).
EXPORT_MILLIS: Final = {"sdk": 60_000, "sdk_1s": 1_000}
#: Each mode as the table names it.
LABELS: Final = {
    "off": "metrics off (no opentelemetry package)",
    "api": "API installed, no provider",
    "sdk": "SDK recording (export every 60 s)",
    "sdk_1s": "SDK recording (export every 1 s)",
}


class _BlockOpenTelemetry(MetaPathFinder):
    """Makes every ``opentelemetry`` import fail, as if the packages were not installed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: Any = None
    ) -> ModuleSpec | None:
        if fullname.split(".")[0] == "opentelemetry":
            raise ImportError(f"{fullname} is blocked (metrics mode 'off')")
        return None


def set_up(mode: str) -> Callable[[], dict[str, Any]]:
    """Prepare this (child) process for ``mode`` before sqsbus is imported; return a function
    that reports, at the end, what the metrics saw (acked messages in mode ``sdk``)."""
    if mode not in MODES:
        raise ValueError(f"unknown metrics mode {mode!r}; one of {', '.join(MODES)}")
    if mode == "off":
        if any(name.split(".")[0] == "opentelemetry" for name in sys.modules):
            raise RuntimeError("opentelemetry was imported before the blocker was set up")
        sys.meta_path.insert(0, _BlockOpenTelemetry())
        return lambda: {"mode": mode}
    if mode == "api":
        return lambda: {"mode": mode}
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        MetricsData,
        PeriodicExportingMetricReader,
    )

    class KeepAcked(MetricExporter):
        """Keeps the acked count of the last export (and how many exports there were)."""

        def __init__(self) -> None:
            super().__init__()
            self.acked = 0
            self.exports = 0

        def export(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **_: Any
        ) -> MetricExportResult:
            self.exports += 1
            for resource in metrics_data.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        if metric.name == "sqsbus.messages.acked":
                            points: Any = metric.data.data_points
                            self.acked = int(sum(point.value for point in points))
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **_: Any) -> None:
            pass

    exporter = KeepAcked()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=EXPORT_MILLIS[mode])
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)

    def report() -> dict[str, Any]:
        exports = exporter.exports  # during the measured consume
        started = time.process_time()
        provider.force_flush()  # one more collection and export, timed
        return {
            "mode": mode,
            "recorded_acked": exporter.acked,
            "exports": exports,
            "collect_ms": (time.process_time() - started) * 1000,
        }

    return report
