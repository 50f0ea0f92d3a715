"""Large payloads through S3, in the Amazon SQS Extended Client format.

:class:`PayloadStore` stores a body that is too large for SQS as an S3 object
(``PutObject``, key = prefix + UUID) and gives the pointer body and size attribute
to send instead (:mod:`sqsbus.engine.pointer`); on receipt it replaces a pointer
by the object's content (``GetObject``); once SQS confirmed the delete of an
acknowledged message, it deletes the object (``DeleteObject(s)``).  The object is
never deleted while its message can still be delivered.  Pointers come from whoever
can send to the queue: only those into the allowed buckets (and under the prefix) are
followed or deleted, and reads are bounded by ``large_payload_max_bytes``.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from sqsbus.aws import call, translate_error
from sqsbus.config import DEFAULT_LARGE_PAYLOAD_MAX_BYTES
from sqsbus.engine.messages import Received
from sqsbus.engine.pointer import (
    MAX_ATTRIBUTES_WITH_POINTER,
    RESERVED_ATTRIBUTES,
    SIZE_ATTRIBUTE,
    PayloadPointer,
    parse_pointer,
    reserved_attribute,
    size_attribute,
)
from sqsbus.errors import (
    ConfigurationError,
    MessageTooLarge,
    PayloadMissing,
    SQSBusError,
    UnreadablePayload,
)
from sqsbus.limits import MAX_MESSAGE_ATTRIBUTES, S3_MAX_DELETE_KEYS
from sqsbus.log_fields import message_fields
from sqsbus.telemetry import payload_deleted, payload_fetched, payload_stored

logger = logging.getLogger(__name__)

#: S3 error codes meaning the object (or its bucket) is not there.
MISSING_OBJECT_CODES: Final = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})


class PayloadStore:
    """Offloads, resolves and deletes large payloads; thread-safe.

    ``client`` returns the S3 client to use (made and counted by :mod:`sqsbus.aws`).
    Pointers are untrusted (whoever can send to a queue writes them): only those into
    ``allowed_buckets`` (default: ``bucket`` alone; none without a bucket) whose key
    starts with ``prefix`` are followed, only payloads of at most ``max_bytes`` whose
    stored size matches the declared one are read, and only followed objects are
    deleted after the ack.
    """

    def __init__(
        self,
        client: Callable[[], Any],
        *,
        bucket: str | None = None,
        prefix: str = "",
        threshold: int | None = None,
        always: bool = False,
        delete_after_ack: bool = True,
        allowed_buckets: Collection[str] | None = None,
        max_bytes: int = DEFAULT_LARGE_PAYLOAD_MAX_BYTES,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        #: Offload above this many bytes (body + attributes); None: the queue's limit.
        self.threshold = threshold
        self.always = always
        self.delete_after_ack = delete_after_ack
        if allowed_buckets is None:
            allowed_buckets = () if bucket is None else (bucket,)
        #: Buckets whose pointers are followed (``large_payload_allowed_buckets``).
        self.allowed_buckets = frozenset(allowed_buckets)
        #: Largest payload read from S3 (``large_payload_max_bytes``).
        self.max_bytes = max_bytes

    # -- publishing ------------------------------------------------------------------------

    def wants(self, size: int, limit: int) -> bool:
        """True if a message of ``size`` bytes for a queue taking ``limit`` goes through S3."""
        if self.bucket is None:
            return False
        threshold = limit if self.threshold is None else min(self.threshold, limit)
        return self.always or size > threshold

    def offload(
        self, body: str, attributes: Mapping[str, Any], *, queue: str
    ) -> tuple[str, dict[str, Any], PayloadPointer]:
        """Store ``body`` in S3; return the pointer body, the attributes to send, the pointer."""
        if self.bucket is None:
            raise ConfigurationError("no large_payload_bucket is configured")
        if len(attributes) > MAX_ATTRIBUTES_WITH_POINTER:
            raise ConfigurationError(
                f"message for queue {queue!r} has {len(attributes)} message attributes; a "
                f"message whose payload goes through S3 may have at most "
                f"{MAX_ATTRIBUTES_WITH_POINTER} (SQS allows {MAX_MESSAGE_ATTRIBUTES}, and the "
                f"extended-client format takes one for {SIZE_ATTRIBUTE}). Move the rest into "
                "the body."
            )
        data = body.encode("utf-8")
        if len(data) > self.max_bytes:
            raise MessageTooLarge(
                f"message for queue {queue!r} is {len(data)} bytes; consumers read payloads of "
                f"at most {self.max_bytes} bytes from S3 (large_payload_max_bytes). Raise it "
                "on producers and consumers alike, or send a reference to the data instead."
            )
        pointer = PayloadPointer(self.bucket, f"{self.prefix}{uuid.uuid4()}", len(data))
        call(
            self._client(),
            "put_object",
            f"store a {len(data)}-byte payload for queue {queue!r} in S3 bucket "
            f"{self.bucket!r} (large_payload_bucket)",
            Bucket=pointer.bucket,
            Key=pointer.key,
            Body=data,
            ContentType="text/plain; charset=utf-8",
        )
        payload_stored(pointer.bucket, len(data))
        sent = dict(attributes)
        sent[SIZE_ATTRIBUTE] = size_attribute(len(data))
        return pointer.to_body(), sent, pointer

    # -- receiving -------------------------------------------------------------------------

    def resolve(self, message: Received) -> Received:
        """``message``, its pointer replaced by the payload read from S3 (if it has one).

        Raises :class:`UnreadablePayload` for a marked message without a valid pointer,
        with a pointer this store does not follow, or with a payload over ``max_bytes``
        or of another size than declared; :class:`PayloadMissing` when the object does
        not exist; and other :class:`SQSBusError` subclasses for failures reading it.
        """
        marker = reserved_attribute(message.message_attributes)
        if marker is None:
            return message
        try:
            pointer = parse_pointer(message.body)
        except ValueError as exc:
            raise UnreadablePayload(
                f"it has the {'/'.join(RESERVED_ATTRIBUTES)} attribute of a payload stored in "
                f"S3, but {exc}"
            ) from None
        refusal = self.refusal(pointer)
        if refusal is not None:
            raise UnreadablePayload(refusal)
        size = self._declared_size(message.message_attributes[marker], marker)
        data = self._read(pointer, size, marker)
        payload_fetched(pointer.bucket, len(data))
        try:
            body = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnreadablePayload(f"its payload at {pointer} is not UTF-8 text") from None
        del data
        # In place: leases, parking and settling refer to this very object.
        message.body = body
        message.message_attributes = {
            name: value
            for name, value in message.message_attributes.items()
            if name not in RESERVED_ATTRIBUTES
        }
        message.payload = dataclasses.replace(pointer, size=size)
        return message

    def refusal(self, pointer: PayloadPointer) -> str | None:
        """Why ``pointer`` is not followed (nor its object deleted), or None if it is."""
        if pointer.bucket not in self.allowed_buckets:
            if not self.allowed_buckets:
                rule = (
                    "this consumer follows no S3 pointers (set large_payload_bucket, or "
                    "large_payload_allowed_buckets to the buckets its producers write to)"
                )
            else:
                rule = (
                    f"this consumer follows pointers only into "
                    f"{', '.join(sorted(self.allowed_buckets))} (large_payload_allowed_buckets)"
                )
            return f"its payload pointer names {pointer}, outside the allowed buckets: {rule}"
        if not pointer.key.startswith(self.prefix):
            return (
                f"its payload pointer names {pointer}, whose key does not start with "
                f"large_payload_prefix {self.prefix!r}"
            )
        if any(part in (".", "..") for part in pointer.key.split("/")):
            return f"its payload pointer names {pointer}, a key with '.' or '..' path segments"
        return None

    def _declared_size(self, value: Any, marker: str) -> int:
        text = value.get("StringValue") if isinstance(value, dict) else None
        try:
            size = int(str(text))
        except ValueError:
            raise UnreadablePayload(
                f"its {marker} attribute is {str(text)[:40]!r}, not a size in bytes"
            ) from None
        if size < 0:
            raise UnreadablePayload(f"its {marker} attribute is {size}, not a size in bytes")
        if size > self.max_bytes:
            raise UnreadablePayload(
                f"its payload is {size} bytes ({marker}), over the {self.max_bytes} bytes a "
                "consumer reads from S3 (large_payload_max_bytes)"
            )
        return size

    def _read(self, pointer: PayloadPointer, size: int, marker: str) -> bytes:
        """The object's bytes, which must be exactly ``size``; never more is read."""
        action = f"read the payload at {pointer}"
        try:
            answer = self._client().get_object(Bucket=pointer.bucket, Key=pointer.key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in MISSING_OBJECT_CODES:
                raise PayloadMissing(f"{action}: the object does not exist ({code})") from exc
            raise translate_error(exc, action) from exc
        except (BotoCoreError, OSError) as exc:
            raise translate_error(exc, action) from exc
        stream = answer["Body"]
        try:
            stored = answer.get("ContentLength")
            if stored != size:
                raise UnreadablePayload(
                    f"its payload at {pointer} is {stored} bytes, but its {marker} attribute "
                    f"says {size}"
                )
            data: bytes = stream.read(size + 1)
        except (BotoCoreError, OSError) as exc:
            raise translate_error(exc, action) from exc
        finally:
            stream.close()  # unread bytes are dropped with the connection, not read
        if len(data) != size:
            raise UnreadablePayload(
                f"its payload at {pointer} has {len(data)} bytes, but its {marker} attribute "
                f"says {size}"
            )
        return data

    # -- deleting --------------------------------------------------------------------------

    def delete_acked(self, messages: Sequence[Received]) -> None:
        """After SQS deleted ``messages``: delete their payloads (``delete_after_ack``).

        Only objects this store follows are deleted, whatever a message points to.
        """
        if self.delete_after_ack:
            self.discard(
                [
                    m.payload
                    for m in messages
                    if m.payload is not None and self.refusal(m.payload) is None
                ]
            )

    def discard(self, pointers: Sequence[PayloadPointer]) -> None:
        """Delete these objects; failures are logged (the objects are then left over)."""
        by_bucket: dict[str, list[PayloadPointer]] = {}
        for pointer in pointers:
            by_bucket.setdefault(pointer.bucket, []).append(pointer)
        for bucket, objects in by_bucket.items():
            for start in range(0, len(objects), S3_MAX_DELETE_KEYS):
                self._delete(bucket, objects[start : start + S3_MAX_DELETE_KEYS])

    def _delete(self, bucket: str, objects: list[PayloadPointer]) -> None:
        keys = [pointer.key for pointer in objects]
        action = f"delete {len(keys)} payload(s) from S3 bucket {bucket!r}"
        try:
            if len(keys) == 1:
                call(self._client(), "delete_object", action, Bucket=bucket, Key=keys[0])
                payload_deleted(bucket, objects[0].size or 0)
                return
            answer = call(
                self._client(),
                "delete_objects",
                action,
                Bucket=bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
        except SQSBusError as exc:
            _log_left_over(bucket, keys, str(exc))
            return
        left = set()
        for error in answer.get("Errors") or []:
            left.add(str(error.get("Key")))
            _log_left_over(
                bucket, [str(error.get("Key"))], f"{error.get('Code')}: {error.get('Message')}"
            )
        payload_deleted(bucket, sum(p.size or 0 for p in objects if p.key not in left))


def as_sent(message: Received, attributes: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Body and attributes that send ``message`` on as it came (dead letters, parking).

    A resolved large payload goes on as its pointer, so the copy refers to the same S3
    object (uploaded once, deleted once, when the last holder is acked).
    """
    if message.payload is None:
        return message.body, dict(attributes)
    sent = {k: v for k, v in attributes.items() if k not in RESERVED_ATTRIBUTES}
    sent[SIZE_ATTRIBUTE] = size_attribute(len(message.body.encode("utf-8")))
    return message.payload.to_body(), sent


def _log_left_over(bucket: str, keys: list[str], reason: str) -> None:
    logger.warning(
        "could not delete large payload(s) %s from S3 bucket %s (%s); they stay until "
        "deleted otherwise (e.g. by a lifecycle rule on the bucket)",
        ", ".join(keys),
        bucket,
        reason,
        extra=message_fields("delete-payload"),
    )
