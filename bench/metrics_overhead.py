"""What sqsbus's metrics cost a consumer: client CPU per 10,000 messages in three modes.

The ``metrics`` scenario (:func:`bench.scenarios.run_metrics`) consumes the same pre-filled
queues in a child process per mode, the modes in turn, round after round:

``off``  the ``opentelemetry`` packages cannot be imported (a meta-path blocker), as for a
         user without ``sqsbus[otel]``;
``api``  the OpenTelemetry API is installed but no provider is configured;
``sdk``  the SDK records everything, exported every second (:data:`EXPORT_MILLIS`, more
         often than the usual 60 s) to an exporter that keeps only the acked count, so the
         SDK's aggregation and collection are measured, not a network exporter's.

This module holds what runs in the child (:func:`set_up`); :mod:`bench.report` prints the
table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from typing import Any, Final

__all__ = ["EXPORT_MILLIS", "LABELS", "MODES", "set_up"]

MODES: Final = ("off", "api", "sdk")
#: How often the ``sdk`` mode collects and exports (milliseconds).
EXPORT_MILLIS: Final = 1000
#: Each mode as the table names it.
LABELS: Final = {
    "off": "metrics off (no opentelemetry package)",
    "api": "API installed, no provider",
    "sdk": f"SDK recording (export every {EXPORT_MILLIS / 1000:g} s)",
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
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=EXPORT_MILLIS)
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)

    def report() -> dict[str, Any]:
        provider.force_flush()
        return {"mode": mode, "recorded_acked": exporter.acked, "exports": exporter.exports}

    return report
