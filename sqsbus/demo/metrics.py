"""``sqsbus demo --metrics``: every process of the demo serves its metrics to Prometheus.

sqsbus records its metrics through the OpenTelemetry API (:mod:`sqsbus.telemetry`); here a
demo process installs OpenTelemetry's SDK with its Prometheus exporter and serves
``/metrics`` on 127.0.0.1. Each process serves its own figures on its own port, as
Prometheus expects of a multi-process application: the producer on the chosen port, the
worker's main process (which receives and acks) on the next one, and each pool process
(which publishes retries and chord callbacks) on the ones after, by pool index.
"""

from __future__ import annotations

import importlib
import socket
import urllib.request
from collections import defaultdict
from typing import Final

__all__ = [
    "DEFAULT_PORT",
    "SUMMARY_SAMPLES",
    "MetricsUnavailable",
    "check_available",
    "check_ports_free",
    "pool_port",
    "scrape",
    "serve",
    "serve_forked",
    "worker_port",
]

#: OpenTelemetry's conventional port for a Prometheus exporter.
DEFAULT_PORT: Final = 9464
#: The Prometheus samples the demo's summary shows, with what each counts.
SUMMARY_SAMPLES: Final = {
    "sqsbus_aws_requests_total": "AWS requests",
    "sqsbus_messages_published_total": "messages published",
    "sqsbus_messages_received_total": "messages received",
    "sqsbus_messages_acked_total": "messages acked",
    "sqsbus_messages_dead_lettered_total": "messages dead-lettered",
}
_HOST: Final = "127.0.0.1"
_SCRAPE_TIMEOUT: Final = 5.0
_MISSING: Final = (
    "--metrics needs OpenTelemetry's SDK and its Prometheus exporter, which are not "
    "installed: pip install 'sqsbus[prometheus]'"
)


class MetricsUnavailable(RuntimeError):
    """The metrics cannot be served: a package is missing or a port is taken."""


def worker_port(port: int) -> int:
    """The port of the worker's main process when the producer serves on ``port``."""
    return port + 1


def pool_port(port: int, index: int) -> int:
    """The port of the pool process with index ``index`` (0-based)."""
    return port + 2 + index


def check_available() -> None:
    """Raise :class:`MetricsUnavailable` naming the fix if the packages are missing."""
    for module in ("opentelemetry.sdk.metrics", "opentelemetry.exporter.prometheus"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise MetricsUnavailable(_MISSING) from None


def check_ports_free(ports: range) -> None:
    """Raise :class:`MetricsUnavailable` if a port of ``ports`` is out of range or taken."""
    if ports.start < 1 or ports.stop - 1 > 65535:
        raise MetricsUnavailable(
            f"--metrics needs ports {ports.start}-{ports.stop - 1}, not all valid: "
            "choose a port between 1 and 65535 minus the demo's processes"
        )
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((_HOST, port))
            except OSError as exc:
                raise MetricsUnavailable(
                    f"cannot serve metrics on {_HOST}:{port} ({exc.strerror or exc}); the demo "
                    f"needs ports {ports.start}-{ports.stop - 1}: choose others with "
                    "--metrics PORT"
                ) from None


def serve(port: int, service: str) -> None:
    """Record this process's metrics with the SDK and serve them on ``port``."""
    check_available()
    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource

    metrics.set_meter_provider(
        MeterProvider(
            metric_readers=[PrometheusMetricReader()],
            resource=Resource.create({"service.name": service}),
        )
    )
    _listen(port)


def serve_forked(port: int) -> None:
    """Serve, on ``port``, the metrics of a process forked from one that called :func:`serve`.

    The SDK's provider and reader came along with the fork; the HTTP server's thread did not.
    """
    _listen(port)


def _listen(port: int) -> None:
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=_HOST)
    except OSError as exc:
        raise MetricsUnavailable(
            f"cannot serve metrics on {_HOST}:{port} ({exc.strerror or exc}): "
            "choose other ports with --metrics PORT"
        ) from None


def scrape(port: int) -> dict[str, float]:
    """Every metric ``port`` serves, summed over its labels, by Prometheus sample name.

    Raises :class:`OSError` if nothing answers there.
    """
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{_HOST}:{port}/metrics", timeout=_SCRAPE_TIMEOUT) as r:
        text = r.read().decode("utf-8")
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] += sample.value
    return dict(totals)
