"""One typed, validated options object built from Kombu ``transport_options``.

Every option name of Kombu's SQS transport keeps its meaning and default, so a
Celery app switches transport without touching ``broker_transport_options``.
Unknown or ill-typed options raise :class:`~sqsbus.errors.ConfigurationError`
naming the option and what it accepts.  Secrets are wrapped in :class:`Secret`
so they never show up in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.config import Config as BotocoreConfig
from botocore.exceptions import BotoCoreError

from sqsbus.errors import ConfigurationError
from sqsbus.limits import (
    MAX_DELAY_SECONDS,
    MAX_GROUP_ID_LENGTH,
    MAX_KMS_DATA_KEY_REUSE_SECONDS,
    MAX_MESSAGE_BYTES,
    MAX_QUEUE_TAGS,
    MAX_RECEIVE_COUNT,
    MAX_RETENTION_SECONDS,
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_VISIBILITY_TIMEOUT,
    MAX_WAIT_TIME_SECONDS,
    MIN_KMS_DATA_KEY_REUSE_SECONDS,
    MIN_MESSAGE_BYTES,
    MIN_RETENTION_SECONDS,
    S3_MAX_KEY_BYTES,
    STS_MAX_SESSION_SECONDS,
    STS_MIN_SESSION_SECONDS,
)
from sqsbus.redact import register_secret

DEFAULT_REGION: Final = "us-east-1"
#: HTTP connections per botocore client: long polls of many queues plus publishers.
DEFAULT_MAX_POOL_CONNECTIONS: Final = 64
#: Names (after the prefix, translated) of the temporary queues Celery and Kombu declare:
#: remote-control (``<host>.celery.pidbox``), reply (``<id>.reply.celery.pidbox``), event
#: (``celeryev.<id>``) and anonymous (``amq.gen-<id>``) queues.  Only these are checked for
#: expiry by orphan sweeps (see :mod:`sqsbus.expiry`).
DEFAULT_ORPHAN_QUEUE_PATTERNS: Final = ("*-pidbox", "celeryev-*", "amq-gen-*", "sqsbus-parking-*")
#: Longest ``large_payload_prefix``: 36 bytes of an S3 key go to the UUID.
MAX_LARGE_PAYLOAD_PREFIX: Final = S3_MAX_KEY_BYTES - 36
#: Largest ``large_payload_threshold`` accepted (the queue's own limit caps it anyway).
MAX_LARGE_PAYLOAD_THRESHOLD: Final = 16 * 1_048_576
#: Default ``large_payload_max_bytes``: the largest payload a consumer reads from S3.
DEFAULT_LARGE_PAYLOAD_MAX_BYTES: Final = 64 * 1_048_576
#: Largest ``large_payload_max_bytes`` accepted (the extended clients' own limit, 2 GiB).
MAX_LARGE_PAYLOAD_MAX_BYTES: Final = 2**31 - 1
#: botocore's rule for region names (it refuses others with an InvalidRegionError).
_REGION_NAME: Final = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
#: Numeric CreateQueue attributes and the bounds SQS enforces.
_CREATION_ATTRIBUTE_BOUNDS: Final = {
    "DelaySeconds": (0, MAX_DELAY_SECONDS),
    "MaximumMessageSize": (MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES),
    "MessageRetentionPeriod": (MIN_RETENTION_SECONDS, MAX_RETENTION_SECONDS),
    "ReceiveMessageWaitTimeSeconds": (0, MAX_WAIT_TIME_SECONDS),
    "VisibilityTimeout": (0, MAX_VISIBILITY_TIMEOUT),
    "KmsDataKeyReusePeriodSeconds": (
        MIN_KMS_DATA_KEY_REUSE_SECONDS,
        MAX_KMS_DATA_KEY_REUSE_SECONDS,
    ),
}
#: Every attribute CreateQueue accepts.
CREATION_ATTRIBUTES: Final = frozenset(
    {
        *_CREATION_ATTRIBUTE_BOUNDS,
        "Policy",
        "RedrivePolicy",
        "RedriveAllowPolicy",
        "KmsMasterKeyId",
        "SqsManagedSseEnabled",
        "FifoQueue",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
    }
)
#: SQS's rule for a MessageGroupId: printable ASCII characters, at most MAX_GROUP_ID_LENGTH.
_GROUP_ID: Final = re.compile(rf"[!-~]{{1,{MAX_GROUP_ID_LENGTH}}}")
#: SQS queue tags: characters allowed in keys and values, and their limits.
_TAG_TEXT: Final = re.compile(r"[\w .:/=+\-@]*")
#: Key prefixes reserved by AWS, and by sqsbus for its bookkeeping (see ``expiry``).
RESERVED_TAG_PREFIXES: Final = ("aws:", "sqsbus:")
_BUCKET_NAME: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_CHARACTERS: Final = re.compile(r"[A-Za-z0-9./_-]*")


class Secret:
    """A string that hides itself from ``repr``/``str``; ``.reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class PredefinedQueue:
    """A queue that already exists, with its own URL and optionally credentials/region."""

    name: str
    url: str
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    region: str | None = None
    backoff_policy: Mapping[int, int] = field(default_factory=dict)
    backoff_tasks: frozenset[str] = frozenset()

    @property
    def is_fifo(self) -> bool:
        return self.name.endswith(".fifo")


@dataclass(frozen=True)
class RedrivePolicy:
    """Where messages go after ``max_receive_count`` deliveries (or on reject)."""

    dead_letter_queue: str
    max_receive_count: int = 5


@dataclass(frozen=True)
class Options:
    """Validated transport settings.  Build with :func:`parse_options`."""

    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    is_secure: bool = True
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    wait_time_seconds: int = 10
    polling_interval: float = 1.0
    visibility_timeout: int = 1800
    queue_name_prefix: str = ""
    #: Prefix of the SNS topic names of exchanges; None: ``queue_name_prefix``.
    topic_name_prefix: str | None = None
    predefined_queues: Mapping[str, PredefinedQueue] = field(default_factory=dict)
    predefined_exchanges: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    supports_fanout: bool = True
    sts_role_arn: str | None = None
    sts_token_timeout: int = STS_MIN_SESSION_SECONDS  # Kombu's default
    sts_token_buffer_time: int = 0
    client_config: Mapping[str, Any] = field(default_factory=dict)
    creation_attributes: Mapping[str, str] = field(default_factory=dict)
    queue_tags: Mapping[str, str] = field(default_factory=dict)
    base64_encoding: bool = True
    fetch_message_attributes: tuple[str, ...] = ()
    fifo_message_group_id: str = "default"
    publish_linger_ms: int = 0
    receive_coalesce_ms: int = 10
    #: Visibility (seconds) each receive asks for, extended while a message is held;
    #: 0 turns leases off (the queue's VisibilityTimeout applies, as in Kombu).
    lease_seconds: int = 60
    #: Countdown/ETA messages wait in SQS (DelaySeconds, re-sent every 15 minutes for
    #: longer delays) rather than in the worker's memory.
    native_delays: bool = True
    #: Dead-letter queue of the queues sqsbus creates (None: no redrive policy).
    redrive_policy: RedrivePolicy | None = None
    #: Lowest priority of each band of an ``x-max-priority`` queue (one SQS queue each).
    priority_steps: tuple[int, ...] = (0, 3, 6, 9)
    #: Tag temporary queues and keep them alive, so that a dead process's ones are swept.
    temporary_queue_expiry: bool = True
    #: Shortest expiry (seconds) of a temporary queue nobody keeps alive any more.
    temporary_queue_min_expires: int = 300
    #: Seconds between automatic sweeps of expired temporary queues (0: none).
    orphan_sweep_interval: float = 900.0
    #: Names (after the prefix) that sweeps look at.
    orphan_queue_patterns: tuple[str, ...] = DEFAULT_ORPHAN_QUEUE_PATTERNS
    large_payload_bucket: str | None = None
    large_payload_threshold: int | None = None
    large_payload_prefix: str = ""
    large_payload_delete_after_ack: bool = True
    large_payload_always: bool = False
    #: Buckets whose pointers a consumer follows; None: ``large_payload_bucket`` alone.
    large_payload_allowed_buckets: tuple[str, ...] | None = None
    #: Largest payload (bytes) a consumer reads from S3.
    large_payload_max_bytes: int = DEFAULT_LARGE_PAYLOAD_MAX_BYTES
    body_encoding: str = "base64"
    deadletter_queue: str | None = None

    @property
    def topic_prefix(self) -> str:
        """The prefix of exchange topic names (``topic_name_prefix``, else the queues')."""
        if self.topic_name_prefix is None:
            return self.queue_name_prefix
        return self.topic_name_prefix

    @property
    def followed_buckets(self) -> frozenset[str]:
        """The buckets whose payload pointers consumers follow."""
        if self.large_payload_allowed_buckets is not None:
            return frozenset(self.large_payload_allowed_buckets)
        return frozenset({self.large_payload_bucket} if self.large_payload_bucket else ())

    def botocore_config(self) -> BotocoreConfig:
        """The botocore ``Config`` built from ``client-config``.

        Unless set there, the HTTP pool holds :data:`DEFAULT_MAX_POOL_CONNECTIONS`
        connections (botocore's 10 would make a consumer of many queues, whose
        long polls each hold one, open and drop connections all the time).
        """
        settings: dict[str, Any] = {"max_pool_connections": DEFAULT_MAX_POOL_CONNECTIONS}
        settings.update(self.client_config)
        return BotocoreConfig(**settings)


# ---------------------------------------------------------------------------
# Validators: each takes (option name, raw value) and returns the clean value.

Validator = Callable[[str, Any], Any]


def _fail(name: str, expected: str, value: Any) -> ConfigurationError:
    """``name`` is an option name or a path such as ``predefined_queues['q'].region``."""
    label = repr(name) if name in _OPTIONS else name
    if "secret" in name or "session_token" in name or name in _MAPPING_OPTIONS:
        shown = f"a {type(value).__name__}"  # never echo what may hold credentials
    else:
        shown = repr(value)
    return ConfigurationError(f"transport option {label} must be {expected}, got {shown}")


def _int_range(low: int, high: int) -> Validator:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool):
            raise _fail(name, f"an integer from {low} to {high}", value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _fail(name, f"an integer from {low} to {high}", value) from None
        if not math.isfinite(number) or number != int(number) or not low <= number <= high:
            raise _fail(name, f"an integer from {low} to {high}", value)
        return int(number)

    return check


def _non_negative_number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _fail(name, "a number of seconds >= 0", value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(name, "a number of seconds >= 0", value) from None
    if not math.isfinite(number) or number < 0:
        raise _fail(name, "a number of seconds >= 0", value)
    return number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {
        "true",
        "1",
        "yes",
        "on",
        "false",
        "0",
        "no",
        "off",
    }:
        return value.lower() in {"true", "1", "yes", "on"}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _fail(name, "true or false", value)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(name, "a string", value)
    return value


def _optional_string(name: str, value: Any) -> str | None:
    return None if value is None else _string(name, value)


def _secret(name: str, value: Any) -> Secret | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _fail(name, "a string", value)
    return Secret(value)


def _string_map(name: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _fail(name, "a dict with string keys", value)
    return {key: str(val) for key, val in value.items()}


def _queue_tags(name: str, value: Any) -> dict[str, str]:
    """Tags for the queues sqsbus creates, within SQS's limits (checked now, not at the
    first CreateQueue)."""
    tags = _string_map(name, value)
    if len(tags) > MAX_QUEUE_TAGS:
        raise ConfigurationError(
            f"transport option {name!r} has {len(tags)} tags; SQS allows {MAX_QUEUE_TAGS} per queue"
        )
    for key, text in tags.items():
        problem = None
        if not 1 <= len(key) <= MAX_TAG_KEY_LENGTH or not _TAG_TEXT.fullmatch(key):
            problem = f"keys must be 1 to {MAX_TAG_KEY_LENGTH} letters, digits, spaces or _.:/=+-@"
        elif key.lower().startswith(RESERVED_TAG_PREFIXES):
            problem = "keys starting with 'aws:' or 'sqsbus:' are reserved"
        elif len(text) > MAX_TAG_VALUE_LENGTH or not _TAG_TEXT.fullmatch(text):
            problem = (
                f"values must be at most {MAX_TAG_VALUE_LENGTH} letters, digits, spaces or _.:/=+-@"
            )
        if problem:
            raise ConfigurationError(
                f"transport option {name!r} has an invalid tag {key!r}: {problem}"
            )
    return tags


def _region(name: str, value: Any) -> str:
    if not isinstance(value, str) or (value and not _REGION_NAME.fullmatch(value)):
        raise _fail(name, "an AWS region name such as 'eu-west-1'", value)
    return value


def _group_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _GROUP_ID.fullmatch(value):
        raise _fail(
            name, f"1 to {MAX_GROUP_ID_LENGTH} printable ASCII characters without spaces", value
        )
    return value


def _creation_attributes(name: str, value: Any) -> dict[str, str]:
    """CreateQueue attributes: names SQS knows, numbers within SQS's bounds."""
    attributes = _string_map(name, value)
    for key, text in attributes.items():
        if key not in CREATION_ATTRIBUTES:
            raise ConfigurationError(
                f"transport option {name!r} has unknown queue attribute {key!r}"
                f"{_suggest(key, CREATION_ATTRIBUTES)}; SQS accepts: "
                f"{', '.join(sorted(CREATION_ATTRIBUTES))}"
            )
        bounds = _CREATION_ATTRIBUTE_BOUNDS.get(key)
        if bounds is not None:
            _int_range(*bounds)(f"{name}[{key!r}]", text)
    return attributes


def _client_config(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(name, "a dict of botocore Config settings", value)
    allowed = set(BotocoreConfig.OPTION_DEFAULTS)
    for key in value:
        if key not in allowed:
            raise ConfigurationError(
                f"transport option {name!r} has unknown botocore Config key {key!r}"
                f"{_suggest(key, allowed)}; allowed keys: {', '.join(sorted(allowed))}"
            )
    try:
        BotocoreConfig(**dict(value))
    except (TypeError, ValueError, AttributeError, BotoCoreError) as exc:
        raise ConfigurationError(f"transport option {name!r} is invalid: {exc}") from None
    return dict(value)


def _fetch_message_attributes(name: str, value: Any) -> tuple[str, ...]:
    """Accept Kombu's list or ``{'MessageSystemAttributeNames': [...]}`` forms."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Mapping):
        names: list[str] = []
        for key in ("MessageSystemAttributeNames", "MessageAttributeNames"):
            names.extend(value.get(key) or [])
        value = names
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _fail(name, "a list of attribute names", value)
    return tuple(value)


def _patterns(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise _fail(name, "a list of queue name patterns such as 'celeryev-*'", value)
    return tuple(value)


def _predefined_exchanges(name: str, value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(name, "a dict of exchange name -> {'arn': ...}", value)
    exchanges: dict[str, dict[str, Any]] = {}
    for exchange, spec in value.items():
        where = f"{name}[{exchange!r}]"
        if not isinstance(spec, Mapping) or not isinstance(spec.get("arn"), str):
            raise ConfigurationError(f"transport option {where} needs an 'arn' string")
        clean = dict(spec)
        clean["secret_access_key"] = _secret(
            f"{where}['secret_access_key']", spec.get("secret_access_key")
        )
        exchanges[exchange] = clean
    return exchanges


def _priority_steps(name: str, value: Any) -> tuple[int, ...]:
    expected = "a list of distinct priorities from 0 to 255, e.g. [0, 3, 6, 9]"
    if not isinstance(value, list | tuple) or not value:
        raise _fail(name, expected, value)
    check = _int_range(0, 255)
    steps = [check(name, step) for step in value]
    if len(set(steps)) != len(steps):
        raise _fail(name, expected, value)
    return tuple(sorted(steps))


_REDRIVE_KEYS = frozenset({"dead_letter_queue", "max_receive_count"})


def _redrive_policy(name: str, value: Any) -> RedrivePolicy | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(name, "a dict {'dead_letter_queue': NAME, 'max_receive_count': N}", value)
    unknown = set(value) - _REDRIVE_KEYS
    if unknown:
        raise ConfigurationError(
            f"transport option {name!r} has unknown key(s) "
            f"{', '.join(sorted(map(repr, unknown)))}; allowed: {', '.join(sorted(_REDRIVE_KEYS))}"
        )
    queue = value.get("dead_letter_queue")
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError(
            f"transport option {name!r} needs 'dead_letter_queue': the name of the queue "
            "that receives dead letters"
        )
    count = _int_range(1, MAX_RECEIVE_COUNT)(
        f"{name}['max_receive_count']", value.get("max_receive_count", 5)
    )
    return RedrivePolicy(queue, count)


_PREDEFINED_QUEUE_KEYS = frozenset(
    {"url", "access_key_id", "secret_access_key", "region", "backoff_policy", "backoff_tasks"}
)


def _backoff_policy(where: str, value: Any) -> dict[int, int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"transport option {where}['backoff_policy'] must be a dict of retry -> seconds"
        )
    check = _int_range(0, MAX_VISIBILITY_TIMEOUT)
    policy: dict[int, int] = {}
    for retry, seconds in value.items():
        try:
            retry_number = int(retry)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"transport option {where}['backoff_policy'] keys must be retry numbers, "
                f"got {retry!r}"
            ) from None
        policy[retry_number] = check(f"{where}['backoff_policy'][{retry!r}]", seconds)
    return policy


def _predefined_queues(name: str, value: Any) -> dict[str, PredefinedQueue]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(name, "a dict of queue name -> {'url': ...}", value)
    queues: dict[str, PredefinedQueue] = {}
    for queue_name, spec in value.items():
        where = f"{name}[{queue_name!r}]"
        if not isinstance(spec, Mapping):
            raise ConfigurationError(f"transport option {where} must be a dict with at least 'url'")
        unknown = set(spec) - _PREDEFINED_QUEUE_KEYS
        if unknown:
            raise ConfigurationError(
                f"transport option {where} has unknown key(s) "
                f"{', '.join(sorted(map(repr, unknown)))}; "
                f"allowed: {', '.join(sorted(_PREDEFINED_QUEUE_KEYS))}"
            )
        url = spec.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"transport option {where}['url'] must be the queue's http(s) URL"
            )
        tasks = spec.get("backoff_tasks") or []
        if not isinstance(tasks, list | tuple | set | frozenset) or not all(
            isinstance(t, str) for t in tasks
        ):
            raise ConfigurationError(
                f"transport option {where}['backoff_tasks'] must be a list of task names"
            )
        queues[queue_name] = PredefinedQueue(
            name=queue_name,
            url=url,
            access_key_id=_optional_string(f"{where}['access_key_id']", spec.get("access_key_id")),
            secret_access_key=_secret(
                f"{where}['secret_access_key']", spec.get("secret_access_key")
            ),
            region=_optional_string(f"{where}['region']", spec.get("region")),
            backoff_policy=_backoff_policy(where, spec.get("backoff_policy")),
            backoff_tasks=frozenset(tasks),
        )
    return queues


def _bucket_name(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _BUCKET_NAME.fullmatch(value) or ".." in value:
        raise _fail(name, "an S3 bucket name (3-63 lowercase letters, digits, '.' and '-')", value)
    return value


def _bucket_names(name: str, value: Any) -> tuple[str, ...]:
    """A bucket name or a list of them (each checked like ``large_payload_bucket``)."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple | set | frozenset):
        raise _fail(name, "a list of S3 bucket names", value)
    checked: set[str] = set()
    for entry in names:
        bucket = _bucket_name(f"{name} entry", entry)
        if bucket is None:
            raise _fail(f"{name} entry", "an S3 bucket name", entry)
        checked.add(bucket)
    return tuple(sorted(checked))


def _key_prefix(name: str, value: Any) -> str:
    """The rules of the Java extended client's ``withS3KeyPrefix``."""
    if not isinstance(value, str):
        raise _fail(name, "a string", value)
    if (
        len(value) > MAX_LARGE_PAYLOAD_PREFIX
        or not _PREFIX_CHARACTERS.fullmatch(value)
        or value.startswith((".", "/"))
        or ".." in value
    ):
        raise _fail(
            name,
            f"an S3 key prefix of at most {MAX_LARGE_PAYLOAD_PREFIX} letters, digits, '/', "
            "'_', '-' and '.', not starting with '.' or '/' and without '..'",
            value,
        )
    return value


def _ignored(name: str, value: Any) -> Any:
    """Options Kombu itself reads (reconnect policy, ``regioninfo``/``port``)."""
    return value


#: Transport option name -> (Options field or None when Kombu consumes it, validator).
_OPTIONS: Final[dict[str, tuple[str | None, Validator]]] = {
    "region": ("region", _region),
    "is_secure": ("is_secure", _boolean),
    "endpoint_url": ("endpoint_url", _optional_string),
    "session_token": ("session_token", _secret),
    "wait_time_seconds": ("wait_time_seconds", _int_range(0, MAX_WAIT_TIME_SECONDS)),
    "polling_interval": ("polling_interval", _non_negative_number),
    "visibility_timeout": ("visibility_timeout", _int_range(0, MAX_VISIBILITY_TIMEOUT)),
    "queue_name_prefix": ("queue_name_prefix", _string),
    "topic_name_prefix": ("topic_name_prefix", _string),
    "predefined_queues": ("predefined_queues", _predefined_queues),
    "predefined_exchanges": ("predefined_exchanges", _predefined_exchanges),
    "supports_fanout": ("supports_fanout", _boolean),
    "sts_role_arn": ("sts_role_arn", _optional_string),
    "sts_token_timeout": (
        "sts_token_timeout",
        _int_range(STS_MIN_SESSION_SECONDS, STS_MAX_SESSION_SECONDS),
    ),
    "sts_token_buffer_time": ("sts_token_buffer_time", _int_range(0, STS_MAX_SESSION_SECONDS)),
    "client-config": ("client_config", _client_config),
    "sqs-creation-attributes": ("creation_attributes", _creation_attributes),
    "queue_tags": ("queue_tags", _queue_tags),
    "sqs_base64_encoding": ("base64_encoding", _boolean),
    "fetch_message_attributes": ("fetch_message_attributes", _fetch_message_attributes),
    "fifo_message_group_id": ("fifo_message_group_id", _group_id),
    "publish_linger_ms": ("publish_linger_ms", _int_range(0, 60_000)),
    "receive_coalesce_ms": ("receive_coalesce_ms", _int_range(0, 10_000)),
    "lease_seconds": ("lease_seconds", _int_range(0, MAX_VISIBILITY_TIMEOUT)),
    "native_delays": ("native_delays", _boolean),
    "redrive_policy": ("redrive_policy", _redrive_policy),
    "priority_steps": ("priority_steps", _priority_steps),
    "temporary_queue_expiry": ("temporary_queue_expiry", _boolean),
    "temporary_queue_min_expires": ("temporary_queue_min_expires", _int_range(1, 86_400)),
    "orphan_sweep_interval": ("orphan_sweep_interval", _non_negative_number),
    "orphan_queue_patterns": ("orphan_queue_patterns", _patterns),
    "large_payload_bucket": ("large_payload_bucket", _bucket_name),
    "large_payload_threshold": (
        "large_payload_threshold",
        _int_range(0, MAX_LARGE_PAYLOAD_THRESHOLD),
    ),
    "large_payload_prefix": ("large_payload_prefix", _key_prefix),
    "large_payload_delete_after_ack": ("large_payload_delete_after_ack", _boolean),
    "large_payload_always": ("large_payload_always", _boolean),
    "large_payload_allowed_buckets": ("large_payload_allowed_buckets", _bucket_names),
    "large_payload_max_bytes": (
        "large_payload_max_bytes",
        _int_range(1, MAX_LARGE_PAYLOAD_MAX_BYTES),
    ),
    "body_encoding": ("body_encoding", _optional_string),
    "deadletter_queue": ("deadletter_queue", _optional_string),
    # Read by kombu.Connection itself (reconnect policy) or unused by SQS.
    "regioninfo": (None, _ignored),
    "port": (None, _ignored),
    "max_retries": (None, _ignored),
    "interval_start": (None, _ignored),
    "interval_step": (None, _ignored),
    "interval_max": (None, _ignored),
    "connect_retries_timeout": (None, _ignored),
}

#: Options whose wrong-typed values are not echoed, as they may embed credentials.
_MAPPING_OPTIONS: Final = frozenset({"predefined_queues", "predefined_exchanges"})

#: Every transport option name sqsbus accepts.
KNOWN_OPTIONS: Final = frozenset(_OPTIONS)


def _suggest(name: str, choices: set[str] | frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_options(
    transport_options: Mapping[str, Any] | None = None,
    *,
    hostname: str | None = None,
    port: int | None = None,
    userid: str | None = None,
    password: str | None = None,
    default_region: str | None = None,
) -> Options:
    """Validate ``transport_options`` plus the broker URL parts into :class:`Options`.

    ``hostname``/``port`` from ``sqsbus://KEY:SECRET@host:port`` select the endpoint:
    plain HTTP for loopback hosts, HTTPS otherwise unless ``is_secure`` says so.
    ``default_region`` is the region of the boto3 credential chain, used when the
    ``region`` option is absent; ``us-east-1`` is the last fallback.
    """
    raw = dict(transport_options or {})
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in _OPTIONS:
            raise ConfigurationError(
                f"unknown transport option {name!r}{_suggest(name, KNOWN_OPTIONS)}; "
                f"sqsbus accepts: {', '.join(sorted(KNOWN_OPTIONS))}"
            )
        target, validate = _OPTIONS[name]
        if value is None and target not in {"endpoint_url", "sts_role_arn", "deadletter_queue"}:
            continue  # None means "use the default", as in Kombu.
        clean = validate(name, value)
        if target is not None:
            values[target] = clean

    if "region" not in values or not values["region"]:
        values["region"] = default_region or DEFAULT_REGION

    if hostname and not values.get("endpoint_url"):
        secure = values.get("is_secure")
        if secure is None:
            secure = not is_loopback(hostname)
        values["is_secure"] = secure
        host = f"[{hostname}]" if ":" in hostname and not hostname.startswith("[") else hostname
        values["endpoint_url"] = f"{'https' if secure else 'http'}://{host}" + (
            f":{port}" if port else ""
        )
    if userid:
        values["access_key_id"] = userid
    if password:
        values["secret_access_key"] = Secret(password)
    if (userid is None) != (password is None) and (userid or password):
        raise ConfigurationError(
            "the broker URL has only half of the credentials: use sqsbus://KEY:SECRET@host, "
            "or no credentials at all to use the boto3 credential chain"
        )

    if not values.get("large_payload_bucket"):
        for name in ("large_payload_threshold", "large_payload_always"):
            if values.get(name) or (name == "large_payload_threshold" and name in values):
                raise ConfigurationError(
                    f"transport option {name!r} needs 'large_payload_bucket', the S3 bucket "
                    "that large payloads go to"
                )
        if values.get("large_payload_prefix") and not values.get("large_payload_allowed_buckets"):
            raise ConfigurationError(
                "transport option 'large_payload_prefix' needs 'large_payload_bucket' (the S3 "
                "bucket that large payloads go to) or 'large_payload_allowed_buckets' (the "
                "buckets whose payloads consumers read)"
            )

    buffer_time = values.get("sts_token_buffer_time", 0)
    timeout = values.get("sts_token_timeout", STS_MIN_SESSION_SECONDS)
    if buffer_time >= timeout:
        raise ConfigurationError(
            f"transport option 'sts_token_buffer_time' ({buffer_time}) must be less than "
            f"'sts_token_timeout' ({timeout})"
        )
    return Options(**values)
