"""Unit tests of the large-payload wire format, threshold rule and options.

Pure: no endpoint, no network.  The expected strings are those the Amazon SQS
Extended Client libraries write and read (see docs/large-payloads.md).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sqsbus.aws import AWS
from sqsbus.config import MAX_LARGE_PAYLOAD_PREFIX, parse_options
from sqsbus.engine.payloads import PayloadStore
from sqsbus.engine.pointer import (
    PayloadPointer,
    extended_receipt_handle,
    parse_pointer,
    reserved_attribute,
    size_attribute,
    split_receipt_handle,
)
from sqsbus.errors import ConfigurationError

# -- pointer body -----------------------------------------------------------------------


def test_pointer_body_is_the_java_clients_compact_json() -> None:
    body = PayloadPointer("my-bucket", "prefix/0b6f9c1e-2c5e-4a43-9d1a-6c8f3f0e2b11").to_body()
    assert body == (
        '["software.amazon.payloadoffloading.PayloadS3Pointer",'
        '{"s3BucketName":"my-bucket","s3Key":"prefix/0b6f9c1e-2c5e-4a43-9d1a-6c8f3f0e2b11"}]'
    )


def test_pointer_written_by_the_python_client_is_read() -> None:
    # json.dumps with its default separators, as amazon-sqs-extended-client writes it.
    body = json.dumps(
        [
            "software.amazon.payloadoffloading.PayloadS3Pointer",
            {"s3BucketName": "b-1", "s3Key": "k"},
        ]
    )
    assert parse_pointer(body) == PayloadPointer("b-1", "k")


def test_legacy_java_pointer_class_is_read() -> None:
    body = '["com.amazon.sqs.javamessaging.MessageS3Pointer",{"s3BucketName":"b","s3Key":"k"}]'
    assert parse_pointer(body) == PayloadPointer("b", "k")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("hello", "not JSON"),
        ('{"s3BucketName":"b","s3Key":"k"}', "is not ["),
        ('["x.Other",{"s3BucketName":"b","s3Key":"k"}]', "unknown pointer class"),
        ('["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3Key":"k"}]', "lacks"),
        ('["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"b"}]', "lacks"),
    ],
)
def test_invalid_pointer_names_the_problem(body: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("[", r"\[")):
        parse_pointer(body)


def test_size_attribute_and_reserved_names() -> None:
    assert size_attribute(3_000_000) == {"DataType": "Number", "StringValue": "3000000"}
    number = size_attribute(1)
    assert reserved_attribute({"ExtendedPayloadSize": number}) == "ExtendedPayloadSize"
    assert reserved_attribute({"SQSLargePayloadSize": number}) == "SQSLargePayloadSize"
    assert reserved_attribute({"other": number}) is None


# -- receipt handles --------------------------------------------------------------------


def test_extended_receipt_handle_embeds_the_pointer_like_the_clients() -> None:
    pointer = PayloadPointer("bkt", "pre/key-1")
    handle = extended_receipt_handle("AQEB+abc/def==", pointer)
    assert handle == (
        "-..s3BucketName..-bkt-..s3BucketName..--..s3Key..-pre/key-1-..s3Key..-AQEB+abc/def=="
    )
    assert split_receipt_handle(handle) == (pointer, "AQEB+abc/def==")


def test_receipt_handle_containing_dashes_is_split_after_the_key_marker() -> None:
    # The Python client's split('-')[-1] would cut this; the Java client's rule does not.
    original = "a-b-c"
    pointer = PayloadPointer("b-k-t", "k-e-y")
    assert split_receipt_handle(extended_receipt_handle(original, pointer)) == (pointer, original)


@pytest.mark.parametrize("handle", ["AQEBplain==", "-..s3BucketName..-bkt", "x-..s3Key..-y"])
def test_plain_receipt_handles_are_left_alone(handle: str) -> None:
    assert split_receipt_handle(handle) == (None, handle)


# -- threshold --------------------------------------------------------------------------


def store(**kwargs: Any) -> PayloadStore:
    return PayloadStore(lambda: None, **kwargs)


def test_offload_only_above_the_threshold_body_plus_attributes() -> None:
    default = store(bucket="bkt")
    assert not default.wants(1_048_576, limit=1_048_576)  # equal: fits, like the clients
    assert default.wants(1_048_577, limit=1_048_576)
    lower = store(bucket="bkt", threshold=262_144)
    assert lower.wants(262_145, limit=1_048_576)
    assert not lower.wants(262_144, limit=1_048_576)


def test_threshold_above_the_queue_limit_is_capped_by_it() -> None:
    assert store(bucket="bkt", threshold=4_000_000).wants(2_000_000, limit=1_048_576)


def test_always_offloads_even_tiny_messages_and_no_bucket_never() -> None:
    assert store(bucket="bkt", always=True).wants(1, limit=1_048_576)
    assert not store().wants(50_000_000, limit=1_048_576)


# -- options ----------------------------------------------------------------------------


def test_large_payload_options_parse_with_their_defaults() -> None:
    options = parse_options({})
    assert options.large_payload_bucket is None
    assert options.large_payload_threshold is None
    assert options.large_payload_delete_after_ack is True
    assert options.large_payload_always is False
    options = parse_options(
        {
            "large_payload_bucket": "my.payload-bucket",
            "large_payload_threshold": "262144",
            "large_payload_prefix": "jobs/large_",
            "large_payload_delete_after_ack": "false",
            "large_payload_always": True,
        }
    )
    assert options.large_payload_bucket == "my.payload-bucket"
    assert options.large_payload_threshold == 262_144
    assert options.large_payload_prefix == "jobs/large_"
    assert options.large_payload_delete_after_ack is False
    assert options.large_payload_always is True


@pytest.mark.parametrize("bucket", ["ab", "My_Bucket", "s3://bucket", "bucket/key", "a..b", 7])
def test_bad_bucket_names_are_refused(bucket: object) -> None:
    with pytest.raises(ConfigurationError, match="'large_payload_bucket' must be an S3 bucket"):
        parse_options({"large_payload_bucket": bucket})


@pytest.mark.parametrize(
    "prefix",
    ["/abs", ".hidden", "a/../b", "spaces here", "é", "x" * (MAX_LARGE_PAYLOAD_PREFIX + 1)],
)
def test_bad_key_prefixes_are_refused_as_the_java_client_does(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="'large_payload_prefix' must be an S3 key"):
        parse_options({"large_payload_bucket": "bkt", "large_payload_prefix": prefix})


@pytest.mark.parametrize(
    "option",
    [
        {"large_payload_always": True},
        {"large_payload_threshold": 0},
        {"large_payload_prefix": "p/"},
    ],
)
def test_bucket_only_options_without_a_bucket_are_refused(option: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="needs 'large_payload_bucket'"):
        parse_options(option)


def test_s3_clients_of_an_endpoint_url_use_path_style_addressing() -> None:
    local = AWS(parse_options({"endpoint_url": "http://127.0.0.1:4566"}))
    assert local.client("s3").meta.config.s3 == {"addressing_style": "path"}
    assert local.client("sqs").meta.config.s3 is None
    chosen = AWS(
        parse_options(
            {
                "endpoint_url": "http://127.0.0.1:4566",
                "client-config": {"s3": {"addressing_style": "virtual"}},
            }
        )
    )
    assert chosen.client("s3").meta.config.s3 == {"addressing_style": "virtual"}
    assert not (AWS(parse_options({})).client("s3").meta.config.s3 or {}).get("addressing_style")
