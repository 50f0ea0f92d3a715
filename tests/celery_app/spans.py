"""OpenTelemetry in a test worker process: finished spans appended to a file, one JSON line each.

A worker started with ``AppSettings.trace_file`` calls :func:`install`: an SDK tracer provider
whose exporter writes every finished span to that file, and Celery's and botocore's
instrumentation enabled. The test process reads the file with :func:`read_spans`. Test-only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

__all__ = ["SpanFileExporter", "install", "read_spans"]


class SpanFileExporter(SpanExporter):
    """Appends each finished span as a JSON line (one ``write`` per span, ``O_APPEND``), so
    the pool processes of a prefork worker can share the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(describe(span)) + "\n" for span in spans)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS


def describe(span: ReadableSpan) -> dict[str, Any]:
    """What the tests compare: name, ids (hex) and the parent's ids."""
    context = span.context
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}" if context else "",
        "span_id": f"{context.span_id:016x}" if context else "",
        "parent_trace_id": f"{parent.trace_id:032x}" if parent else "",
        "parent_span_id": f"{parent.span_id:016x}" if parent else "",
        "kind": span.kind.name,
        "pid": os.getpid(),
    }


def install(path: str | os.PathLike[str]) -> None:
    """Trace this process into ``path``: Celery's and botocore's spans, propagated by W3C
    trace context (OpenTelemetry's default propagators)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SpanFileExporter(path)))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    BotocoreInstrumentor().instrument(tracer_provider=provider)


def read_spans(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The spans written to ``path`` so far."""
    file = Path(path)
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
