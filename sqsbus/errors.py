"""Exceptions raised by sqsbus.

Every error names what went wrong and how to fix it.  None of them carries a
secret: credentials are never formatted into messages.
"""

from __future__ import annotations


class SQSBusError(Exception):
    """Base class of every error sqsbus raises."""


class ConfigurationError(SQSBusError, ValueError):
    """An option, URL or name is invalid; the message says which and why."""


class CredentialsError(SQSBusError):
    """No usable AWS credentials were found, or AWS refused them."""


class TransientError(SQSBusError, ConnectionError):
    """Network failure, throttling or a 5xx answer: safe to retry or reconnect."""


class AccessDeniedError(SQSBusError):
    """AWS denied an operation; the IAM policy needs the named permission."""


class QueueError(SQSBusError):
    """Base class of errors about a particular queue."""


class UndefinedQueueError(QueueError, KeyError):
    """A queue is not listed in ``predefined_queues`` (which forbids creating it)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message.
        return str(self.args[0]) if self.args else ""


class InvalidQueueError(QueueError, ValueError):
    """A queue's name and URL disagree (e.g. a ``.fifo`` name on a standard queue)."""


class QueueDoesNotExist(QueueError):
    """The queue does not exist in SQS (and may not be created here)."""


class QueueDeletedRecently(QueueDoesNotExist, TransientError):
    """SQS refuses to recreate a queue deleted less than 60 s ago: retry (reconnect) later."""


class MessageTooLarge(SQSBusError, ValueError):
    """A message body is over the queue's maximum size; nothing was sent."""


class DeliveryError(SQSBusError):
    """SQS refused some entries of a send, delete or visibility change."""


class PublishBatchError(DeliveryError):
    """Messages published in ``batched_publishing()`` were not all accepted by SQS.

    ``errors`` holds each refused message's error; ``unanswered`` counts those without
    an answer when the wait ended.
    """

    def __init__(self, message: str, *, errors: list[BaseException], unanswered: int = 0) -> None:
        super().__init__(message)
        self.errors = errors
        self.unanswered = unanswered


class PayloadError(SQSBusError):
    """A large payload could not be stored in or read from S3."""


class PayloadMissing(PayloadError):
    """The S3 object a message points to does not exist (deleted, expired, wrong bucket)."""


class UnreadablePayload(PayloadError, ValueError):
    """A message marked as stored in S3 has no valid pointer, or its payload is not text."""
