"""Plain Kombu: trace context through message headers with :mod:`sqsbus.tracing`.

A producer publishes inside a span with ``inject_context`` headers; a consumer in another
connection starts its span in ``extract_context(message)``: same trace, the producer's span as
parent. A message routed through a topic exchange with botocore instrumented carries the SNS
``Publish`` span's context as a message attribute, which ``extract_context`` reads too.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from kombu import Exchange, Queue
from kombu_helpers import connect, direct_queue, get_within, publish
from opentelemetry import trace
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sqsbus.local import DEFAULT_ACCESS_KEY, DEFAULT_REGION, DEFAULT_SECRET_KEY, LocalEndpoint
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


def test_with_botocore_instrumented_full_attributes_and_large_payloads_still_go_through(
    endpoint: LocalEndpoint,
    prefix: str,
    tracer: tuple[trace.Tracer, InMemorySpanExporter, TracerProvider],
) -> None:
    """The instrumentation adds attributes only where they fit: a message routed through SNS
    with the most attributes sqsbus allows, and a large payload sent through S3, arrive whole."""
    spans, _, provider = tracer
    boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        region_name=DEFAULT_REGION,
        aws_access_key_id=DEFAULT_ACCESS_KEY,
        aws_secret_access_key=DEFAULT_SECRET_KEY,
    ).create_bucket(Bucket=f"{prefix}payloads")
    events = Exchange("full", type="topic")
    routed = Queue("routed", events, routing_key="order.#")
    large = direct_queue("large")
    full = {f"a{n}": {"DataType": "String", "StringValue": str(n)} for n in range(9)}
    instrumentor = BotocoreInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        options = {"large_payload_bucket": f"{prefix}payloads"}
        with (
            connect(endpoint, prefix, **options) as producer,
            connect(endpoint, prefix, **options) as consumer,
        ):
            for queue in (routed, large):
                queue(consumer.default_channel).declare()
            with spans.start_as_current_span("send"), producer.Producer() as sender:
                sender.publish(
                    "full", exchange=events, routing_key="order.full", message_attributes=full
                )
                sender.publish(
                    "x" * 300_000,
                    exchange="",  # straight to the queue: large payloads go through S3
                    routing_key="large",
                    headers=inject_context({}),
                )
            got = get_within(routed(consumer.default_channel), 5)
            assert got is not None and got.payload == "full"
            attributes = got.delivery_info["sqs_message"]["MessageAttributes"]
            assert {name: attributes[name]["StringValue"] for name in full} == {
                name: value["StringValue"] for name, value in full.items()
            }
            got.ack()
            big = get_within(large(consumer.default_channel), 5)
            assert big is not None and big.payload == "x" * 300_000
            assert "traceparent" in big.headers
            big.ack()
    finally:
        instrumentor.uninstrument()
