"""Plain Kombu: trace context through message headers with :mod:`sqsbus.tracing`.

A producer publishes inside a span with ``inject_context`` headers; a consumer in another
connection starts its span in ``extract_context(message)``: same trace, the producer's span as
parent. A message routed through a topic exchange with botocore instrumented carries the SNS
``Publish`` span's context as a message attribute, which ``extract_context`` reads too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kombu import Exchange, Queue
from kombu_helpers import connect, direct_queue, get_within, publish
from opentelemetry import trace
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sqsbus.local import LocalEndpoint
from sqsbus.tracing import extract_context, inject_context


@pytest.fixture
def tracer() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter, provider
    provider.shutdown()


def test_a_consumer_continues_the_producers_trace_through_headers(
    endpoint: LocalEndpoint,
    prefix: str,
    tracer: tuple[trace.Tracer, InMemorySpanExporter, TracerProvider],
) -> None:
    spans, _, _ = tracer
    queue = direct_queue("traced")
    with connect(endpoint, prefix) as producer, connect(endpoint, prefix) as consumer:
        with spans.start_as_current_span("send order") as sent:
            publish(producer, queue, [{"order": 7}], headers=inject_context({"kind": "order"}))
        message = get_within(queue(consumer.default_channel), 5)
        assert message is not None
        assert message.headers["kind"] == "order"
        with spans.start_as_current_span("handle order", context=extract_context(message)) as got:
            message.ack()
    assert got.get_span_context().trace_id == sent.get_span_context().trace_id
    parent = got.parent  # type: ignore[attr-defined]
    assert parent is not None and parent.span_id == sent.get_span_context().span_id


def test_a_message_routed_through_sns_carries_botocores_publish_context(
    endpoint: LocalEndpoint,
    prefix: str,
    tracer: tuple[trace.Tracer, InMemorySpanExporter, TracerProvider],
) -> None:
    spans, exporter, provider = tracer
    events = Exchange("events", type="topic")
    queue = Queue("audit", events, routing_key="order.#")
    instrumentor = BotocoreInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with connect(endpoint, prefix) as producer, connect(endpoint, prefix) as consumer:
            queue(consumer.default_channel).declare()
            with spans.start_as_current_span("send order") as sent, producer.Producer() as sender:
                sender.publish("created", exchange=events, routing_key="order.created")
            message = get_within(queue(consumer.default_channel), 5)
            assert message is not None
            assert "traceparent" not in message.headers  # nothing injected into the headers
            context = extract_context(message)
            message.ack()
    finally:
        instrumentor.uninstrument()
    [sns_publish] = [
        s
        for s in exporter.get_finished_spans()
        if (s.attributes or {}).get("rpc.method") == "Publish"
    ]
    assert sns_publish.context is not None
    assert sns_publish.context.trace_id == sent.get_span_context().trace_id
    carried = trace.get_current_span(context).get_span_context()
    assert carried.trace_id == sent.get_span_context().trace_id
    assert carried.span_id == sns_publish.context.span_id


def test_extract_ignores_what_is_not_a_trace_context(
    tracer: tuple[trace.Tracer, InMemorySpanExporter, TracerProvider],
) -> None:
    for headers in (
        {},
        {"traceparent": "not a trace"},
        {"traceparent": 42},
        {"traceparent": "00-" + "f" * 10_000},
    ):
        context = extract_context(headers)
        assert not trace.get_current_span(context).get_span_context().is_valid
