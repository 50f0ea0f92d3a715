"""The Amazon SQS Extended Client wire format for payloads stored in S3 (no I/O here).

A message whose payload lives in S3 carries, instead of its body, a JSON pointer::

    ["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"b","s3Key":"k"}]

and a message attribute ``ExtendedPayloadSize`` (``Number``: the payload's size in
UTF-8 bytes).  Older Java producers write ``SQSLargePayloadSize`` and the pointer class
``com.amazon.sqs.javamessaging.MessageS3Pointer``; both are read.  The extended clients
also hand their applications receipt handles with the pointer embedded between
markers (``-..s3BucketName..-b-..s3BucketName..--..s3Key..-k-..s3Key..-<handle>``);
:func:`split_receipt_handle` undoes that.  See docs/large-payloads.md for the sources.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqsbus.limits import MAX_MESSAGE_ATTRIBUTES

#: Pointer class name written by the current Java and Python extended clients.
POINTER_CLASS: Final = "software.amazon.payloadoffloading.PayloadS3Pointer"
#: Pointer class name of Java extended client versions before 2.0.
LEGACY_POINTER_CLASS: Final = "com.amazon.sqs.javamessaging.MessageS3Pointer"
#: Size attribute written by sqsbus (and the Python client's default).
SIZE_ATTRIBUTE: Final = "ExtendedPayloadSize"
#: Size attribute the Java extended client writes by default (both clients read both).
LEGACY_SIZE_ATTRIBUTE: Final = "SQSLargePayloadSize"
RESERVED_ATTRIBUTES: Final = (SIZE_ATTRIBUTE, LEGACY_SIZE_ATTRIBUTE)
#: Message attributes an offloaded message may have besides the size attribute.
MAX_ATTRIBUTES_WITH_POINTER: Final = MAX_MESSAGE_ATTRIBUTES - 1
BUCKET_MARKER: Final = "-..s3BucketName..-"
KEY_MARKER: Final = "-..s3Key..-"


@dataclass(frozen=True)
class PayloadPointer:
    """Where an offloaded payload is stored."""

    bucket: str
    key: str
    #: Bytes of the object, where known (stored or read by this process); not compared.
    size: int | None = field(default=None, compare=False)

    def to_body(self) -> str:
        """The SQS message body that refers to this object (Jackson's compact form)."""
        return json.dumps(
            [POINTER_CLASS, {"s3BucketName": self.bucket, "s3Key": self.key}],
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_pointer(body: str) -> PayloadPointer:
    """The pointer in a message body; ``ValueError`` naming the problem if it is not one."""
    try:
        value: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("the body is not JSON") from None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], dict)):
        raise ValueError('the body is not ["<pointer class>", {"s3BucketName": ..., "s3Key": ...}]')
    if value[0] not in (POINTER_CLASS, LEGACY_POINTER_CLASS):
        raise ValueError(f"unknown pointer class {str(value[0])[:100]!r}")
    bucket, key = value[1].get("s3BucketName"), value[1].get("s3Key")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise ValueError("the pointer lacks s3BucketName or s3Key")
    return PayloadPointer(bucket, key)


def size_attribute(payload_bytes: int) -> dict[str, str]:
    """The value of :data:`SIZE_ATTRIBUTE` for a payload of ``payload_bytes``."""
    return {"DataType": "Number", "StringValue": str(payload_bytes)}


def reserved_attribute(attributes: Mapping[str, Any]) -> str | None:
    """The reserved size attribute present in ``attributes`` (marks an offloaded message)."""
    for name in RESERVED_ATTRIBUTES:
        if name in attributes:
            return name
    return None


def extended_receipt_handle(receipt_handle: str, pointer: PayloadPointer) -> str:
    """The receipt handle as the extended clients give it to their applications."""
    return (
        f"{BUCKET_MARKER}{pointer.bucket}{BUCKET_MARKER}"
        f"{KEY_MARKER}{pointer.key}{KEY_MARKER}{receipt_handle}"
    )


def split_receipt_handle(handle: str) -> tuple[PayloadPointer | None, str]:
    """``(pointer, SQS receipt handle)`` of an extended-client handle; ``(None, handle)`` else."""
    if not handle.startswith(BUCKET_MARKER) or KEY_MARKER not in handle:
        return None, handle
    bucket_end = handle.find(BUCKET_MARKER, len(BUCKET_MARKER))
    if bucket_end < 0 or not handle.startswith(KEY_MARKER, bucket_end + len(BUCKET_MARKER)):
        return None, handle
    key_start = bucket_end + len(BUCKET_MARKER) + len(KEY_MARKER)
    key_end = handle.find(KEY_MARKER, key_start)
    if key_end < 0:
        return None, handle
    pointer = PayloadPointer(handle[len(BUCKET_MARKER) : bucket_end], handle[key_start:key_end])
    return pointer, handle[key_end + len(KEY_MARKER) :]
