"""Celery's and botocore's OpenTelemetry instrumentation, end to end through sqsbus.

The test process (the producer) traces into the SDK's in-memory exporter; the worker, a separate
``celery worker`` process, writes its finished spans to a file (``celery_app/spans.py``). Both
have Celery and botocore instrumented, as an application would. The worker's ``run/<task>`` span
must continue the producer's ``apply_async/<task>`` span: same trace id, that span as parent,
for a task sent to a queue directly and for one routed through a topic or a fanout exchange
(an SNS topic).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from celery_app import AppSettings, create_app, fanout_queue, topic_queue
from celery_app.spans import read_spans
from celery_helpers import Harness, WorkerProcess, task, wait_for
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sqsbus.local import LocalEndpoint

pytestmark = [pytest.mark.celery, pytest.mark.timeout(180)]

TASK = "sqsbus_tests.add"


@pytest.fixture(scope="module")
def producer_spans() -> Iterator[InMemorySpanExporter]:
    """Celery and botocore instrumented in this process, into an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    celery_instrumentor, botocore_instrumentor = CeleryInstrumentor(), BotocoreInstrumentor()
    celery_instrumentor.instrument(tracer_provider=provider)
    botocore_instrumentor.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        celery_instrumentor.uninstrument()
        botocore_instrumentor.uninstrument()


@pytest.fixture(scope="module")
def traced(
    endpoint: LocalEndpoint,
    tmp_path_factory: pytest.TempPathFactory,
    producer_spans: InMemorySpanExporter,
) -> Iterator[Harness]:
    """A traced worker consuming the default queue and a queue bound to a topic exchange."""
    base = tmp_path_factory.mktemp("celery-traced")
    (base / "results").mkdir()
    (base / "state").mkdir()
    uid = uuid.uuid4().hex[:8]
    settings = AppSettings(
        broker_url=endpoint.broker_url(),
        queue_name_prefix=f"c{uid}-",
        result_dir=str(base / "results"),
        state_dir=str(base / "state"),
        topic_exchange=f"traced-{uid}",
        fanout_exchange=f"broadcast-{uid}",
        trace_file=str(base / "spans.jsonl"),
    )
    # Celery's instrumentation finds the publishing task in the current app (as in an
    # application, where the app is current): without it the publish span ends before the send.
    previous = current_app._get_current_object()
    app = create_app(settings, set_as_current=True)
    worker = WorkerProcess(settings, base / "worker.log", name="traced", concurrency=2)
    try:
        worker.start()
        worker.wait_ready(app)
        yield Harness(app=app, worker=worker, settings=settings)
    finally:
        worker.stop()
        app.close()
        previous.set_current()


def producer_span(exporter: InMemorySpanExporter, task_id: str) -> ReadableSpan:
    """The ``apply_async/<task>`` span that published ``task_id``."""
    for span in exporter.get_finished_spans():
        if (
            span.name == f"apply_async/{TASK}"
            and (span.attributes or {}).get("messaging.message.id") == task_id
        ):
            return span
    raise AssertionError(f"no apply_async span for task {task_id}")


def worker_run_span(harness: Harness, trace_id: str) -> dict[str, Any]:
    """The worker's ``run/<task>`` span in trace ``trace_id``, once written."""
    path = Path(harness.settings.trace_file)

    def find() -> dict[str, Any] | None:
        for span in read_spans(path):
            if span["name"] == f"run/{TASK}" and span["trace_id"] == trace_id:
                return span
        return None

    return wait_for(
        f"the worker's run/{TASK} span in trace {trace_id}",
        find,
        15.0,
        context=lambda: f"\nspans: {read_spans(path)}{harness.worker.log_hint()}",
    )


def assert_continues(harness: Harness, exporter: InMemorySpanExporter, result: Any) -> str:
    """The worker ran ``result``'s task in the producer's trace, under its publish span."""
    assert harness.get(result) == 5
    published = producer_span(exporter, result.id)
    trace_id = f"{published.context.trace_id:032x}"
    run = worker_run_span(harness, trace_id)
    assert run["parent_trace_id"] == trace_id
    assert run["parent_span_id"] == f"{published.context.span_id:016x}"
    assert run["kind"] == "CONSUMER"
    return trace_id


def test_a_task_sent_to_a_queue_runs_in_the_producers_trace(
    traced: Harness, producer_spans: InMemorySpanExporter
) -> None:
    result = task(traced.app, "add").apply_async((2, 3))
    assert_continues(traced, producer_spans, result)


def went_through_sns(exporter: InMemorySpanExporter, trace_id: str) -> bool:
    """botocore traced an SNS ``Publish`` in trace ``trace_id`` (the exchange's topic)."""
    return any(
        (span.attributes or {}).get("rpc.method") == "Publish"
        and span.context is not None
        and f"{span.context.trace_id:032x}" == trace_id
        for span in exporter.get_finished_spans()
    )


def test_a_task_routed_through_a_topic_exchange_runs_in_the_producers_trace(
    traced: Harness, producer_spans: InMemorySpanExporter
) -> None:
    queue = topic_queue(traced.settings.topic_exchange)
    result = task(traced.app, "add").apply_async((1, 4), queue=queue.name, routing_key="traced.add")
    trace_id = assert_continues(traced, producer_spans, result)
    assert went_through_sns(producer_spans, trace_id)


def test_a_task_routed_through_a_fanout_exchange_runs_in_the_producers_trace(
    traced: Harness, producer_spans: InMemorySpanExporter
) -> None:
    queue = fanout_queue(traced.settings.fanout_exchange)
    result = task(traced.app, "add").apply_async((3, 2), queue=queue.name)
    trace_id = assert_continues(traced, producer_spans, result)
    assert went_through_sns(producer_spans, trace_id)
