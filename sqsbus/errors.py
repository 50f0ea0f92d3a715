"""Every exception of sqsbus that callers can catch, in one module.

Every error names what went wrong and how to fix it.  None of them carries a
secret: credentials are never formatted into messages.  Catch :class:`SQSBusError`
for all of them; :class:`TransientError` marks those worth a retry or a reconnect
(Kombu and Celery take it for a connection error).

The hierarchy, each class under its first base, its other bases after "also"
(``tests/test_errors.py`` checks this tree against the classes, and that no other
module of sqsbus defines an exception)::

    Exception
    └── SQSBusError
        ├── ConfigurationError              also ValueError
        ├── CredentialsError
        ├── TransientError                  also ConnectionError
        │   └── ReceiveFailed
        ├── AccessDeniedError
        ├── QueueError
        │   ├── UndefinedQueueError         also KeyError
        │   ├── InvalidQueueError           also ValueError
        │   ├── QueueDoesNotExist
        │   │   ├── QueueDeletedRecently    also TransientError
        │   │   └── UnknownQueueError
        │   └── PurgeInProgress
        ├── MessageTooLarge                 also ValueError
        ├── DeliveryError
        │   └── PublishBatchError
        ├── PayloadError
        │   ├── PayloadMissing
        │   └── UnreadablePayload           also ValueError
        ├── UnsupportedExchangeType         also NotImplementedError
        └── PeekRefused

The embedded endpoint (:mod:`sqsbus.local`) stands alone and imports nothing else of
sqsbus, so its ``LocalEndpointError`` lives there.

Foundation layer: this module imports nothing from sqsbus.
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


class ReceiveFailed(TransientError):
    """A receiver could not receive from its queue; reconnecting may help."""


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


class UnknownQueueError(QueueDoesNotExist):
    """A queue named on the command line does not exist; the message lists close matches."""


class PurgeInProgress(QueueError):
    """The queue was purged less than a minute ago; SQS refuses another purge until then."""


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


class UnsupportedExchangeType(SQSBusError, NotImplementedError):
    """The exchange type is not available on this transport."""


class PeekRefused(SQSBusError):
    """Peeking would send messages to the dead-letter queue; the message says how to force it."""
