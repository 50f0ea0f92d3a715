"""The AWS limits sqsbus relies on, in one place.

Each constant is a rule of an AWS service (SQS unless its name says SNS, S3, STS or
CloudWatch), with where AWS states it.  Modules import them from here and never write the
numbers themselves.  What sqsbus chooses on its own (windows, timeouts, buffer sizes) lives with the
code that uses it, and retry policies live in :mod:`sqsbus.backoff`.

Foundation layer: this module imports nothing from sqsbus.
"""

from __future__ import annotations

from typing import Final

# -- SQS: batch calls and receives -----------------------------------------------------------

#: Entries of one SendMessageBatch, DeleteMessageBatch or ChangeMessageVisibilityBatch.
MAX_BATCH_ENTRIES: Final = 10
#: Messages one ReceiveMessage returns at most (``MaxNumberOfMessages``).
MAX_RECEIVE_MESSAGES: Final = 10
#: Sum of the payloads (bodies and message attributes) of one SendMessageBatch: 1 MiB.
MAX_BATCH_BYTES: Final = 1_048_576
#: Longest long poll (``WaitTimeSeconds``, ``ReceiveMessageWaitTimeSeconds``).
MAX_WAIT_TIME_SECONDS: Final = 20
#: ``MaxResults`` of one ListQueues or ListDeadLetterSourceQueues page.
MAX_LIST_RESULTS: Final = 1000
#: ``MaxResults`` of ListMessageMoveTasks.
MAX_MOVE_TASK_RESULTS: Final = 10

# -- SQS: messages --------------------------------------------------------------------------

#: Largest ``MaximumMessageSize`` of a queue (body plus message attributes): 1 MiB.
MAX_MESSAGE_BYTES: Final = 1_048_576
#: Smallest ``MaximumMessageSize`` of a queue.
MIN_MESSAGE_BYTES: Final = 1024
#: ``MaximumMessageSize`` of a queue created without one (1 MiB since 2025).
DEFAULT_MAX_MESSAGE_BYTES: Final = 1_048_576
#: Message attributes of one message.
MAX_MESSAGE_ATTRIBUTES: Final = 10
#: Length of a message attribute name.
MAX_ATTRIBUTE_NAME_LENGTH: Final = 256
#: Length of a ``MessageGroupId`` (1 to this many printable ASCII characters).
MAX_GROUP_ID_LENGTH: Final = 128
#: Longest per-message or per-queue delivery delay (``DelaySeconds``): 15 minutes.
MAX_DELAY_SECONDS: Final = 900
#: Longest visibility timeout one call sets (``VisibilityTimeout``): 12 hours.
MAX_VISIBILITY_TIMEOUT: Final = 43_200
#: Longest a received message stays invisible in all, counted from its receive, however
#: often its visibility is extended: 12 hours.
MAX_TOTAL_VISIBILITY: Final = 43_200
#: Received and not yet deleted messages of one queue.  Beyond it ReceiveMessage answers
#: ``OverLimit``, which :mod:`sqsbus.aws` treats as transient (receivers back off).
MAX_IN_FLIGHT_MESSAGES: Final = 120_000
#: Bounds of ``MessageRetentionPeriod``: 1 minute to 14 days.
MIN_RETENTION_SECONDS: Final = 60
MAX_RETENTION_SECONDS: Final = 1_209_600

# -- SQS: queues ----------------------------------------------------------------------------

#: Length of a queue name, ``.fifo`` included.
MAX_QUEUE_NAME_LENGTH: Final = 80
#: Tags of one queue, and the lengths of a tag's key and value.
MAX_QUEUE_TAGS: Final = 50
MAX_TAG_KEY_LENGTH: Final = 128
MAX_TAG_VALUE_LENGTH: Final = 256
#: Largest ``maxReceiveCount`` of a redrive policy.
MAX_RECEIVE_COUNT: Final = 1000
#: Length of a queue policy statement's Sid (a permission label: letters, digits, ``-``, ``_``).
MAX_STATEMENT_ID_LENGTH: Final = 80
#: Bounds of ``KmsDataKeyReusePeriodSeconds``: 1 minute to 24 hours.
MIN_KMS_DATA_KEY_REUSE_SECONDS: Final = 60
MAX_KMS_DATA_KEY_REUSE_SECONDS: Final = 86_400

# -- SNS --------------------------------------------------------------------------------------

#: Largest message SNS publishes (body and attributes): 256 KiB, less than SQS takes.
SNS_MAX_PUBLISH_BYTES: Final = 262_144
#: Length of a topic name.
SNS_MAX_TOPIC_NAME_LENGTH: Final = 256

# -- S3 ---------------------------------------------------------------------------------------

#: Keys of one DeleteObjects call.
S3_MAX_DELETE_KEYS: Final = 1000
#: Length of an object key, in UTF-8 bytes.
S3_MAX_KEY_BYTES: Final = 1024

# -- STS --------------------------------------------------------------------------------------

#: Bounds of an assumed-role session (``DurationSeconds``): 15 minutes to 12 hours.
STS_MIN_SESSION_SECONDS: Final = 900
STS_MAX_SESSION_SECONDS: Final = 43_200

# -- CloudWatch -------------------------------------------------------------------------------

#: Metric queries (``MetricDataQueries``) of one GetMetricData call.
CLOUDWATCH_MAX_METRIC_QUERIES: Final = 500
