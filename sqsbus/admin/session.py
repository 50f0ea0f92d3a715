"""Connect the operator commands to SQS with exactly the transport's settings.

The broker URL and transport options mean what they mean to ``sqsbus://`` connections
(:func:`sqsbus.config.parse_options`): same endpoint, region, credentials, queue name prefix
and predefined queues, so an operator sees the queues a Celery worker uses.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from sqsbus.aws import AWS, configured_region, require_credentials
from sqsbus.config import Options, parse_options
from sqsbus.errors import (
    ConfigurationError,
    QueueDoesNotExist,
    UndefinedQueueError,
    UnknownQueueError,
)
from sqsbus.local.record import read_records
from sqsbus.queues import QueueDirectory, QueueRef, band_queue, entity_name

__all__ = [
    "BROKER_ENV_VARS",
    "AdminSession",
    "BrokerChoice",
    "choose_broker",
    "parse_option_args",
]

#: Environment variables read, in this order, when no ``--broker`` is given.
BROKER_ENV_VARS: Final = ("SQSBUS_BROKER_URL", "CELERY_BROKER_URL")
#: URL schemes accepted: sqsbus's own, and Kombu's SQS transport's (same options).
SCHEMES: Final = ("sqsbus", "sqs")
#: Seconds to wait for a TCP connection, unless ``client-config`` says otherwise
#: (botocore's default, 60 s per attempt, is long for a command at a terminal).
CONNECT_TIMEOUT: Final = 10
#: Broker used when nothing is configured: AWS through the boto3 credential chain.
AWS_DEFAULT_URL: Final = "sqsbus://"


@dataclass(frozen=True)
class BrokerChoice:
    """The broker URL to use and where it came from (for messages; never shows secrets)."""

    url: str
    source: str


def choose_broker(explicit: str | None, environ: Mapping[str, str]) -> BrokerChoice:
    """``--broker``, else ``SQSBUS_BROKER_URL``/``CELERY_BROKER_URL``, else a running
    ``sqsbus local``, else AWS with the boto3 credential chain."""
    if explicit:
        return BrokerChoice(explicit, "--broker")
    for name in BROKER_ENV_VARS:
        if environ.get(name):
            return BrokerChoice(environ[name], name)
    running = read_records(environ)
    if running:
        newest = running[0]
        others = f" (the newest of {len(running)} running)" if len(running) > 1 else ""
        return BrokerChoice(
            newest.broker_url, f"the endpoint of 'sqsbus local' at {newest.url}{others}"
        )
    return BrokerChoice(AWS_DEFAULT_URL, "the default (AWS, boto3 credential chain)")


def parse_option_args(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings into transport options; values are JSON when they parse as JSON
    (numbers, booleans, dicts for ``predefined_queues``), else plain strings."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigurationError(
                f"option {item!r} is not of the form key=value (e.g. -o queue_name_prefix=prod-)"
            )
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        options[key] = value
    return options


@dataclass(frozen=True)
class _BrokerUrl:
    hostname: str | None
    port: int | None
    userid: str | None
    password: str | None


def _split_broker_url(url: str) -> _BrokerUrl:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigurationError(
            "the broker URL is malformed; expected sqsbus://[KEY:SECRET@][host[:port]]"
        ) from None
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(
            f"the broker URL has the scheme {parts.scheme + '://' if parts.scheme else 'none'}; "
            "the sqsbus commands need an SQS broker: sqsbus://[KEY:SECRET@][host[:port]]"
        )
    return _BrokerUrl(
        hostname=parts.hostname or None,
        port=port,
        userid=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class AdminSession:
    """An SQS connection for operator commands: clients, queue directory and options."""

    def __init__(self, options: Options, broker: BrokerChoice) -> None:
        self.options = options
        self.broker = broker
        self.aws = AWS(options)
        self.directory = QueueDirectory(self.aws, options)

    @classmethod
    def connect(
        cls, broker: BrokerChoice, transport_options: Mapping[str, Any] | None = None
    ) -> AdminSession:
        """Validate the settings and check credentials, as a transport connection would."""
        parts = _split_broker_url(broker.url)
        raw = dict(transport_options or {})
        client_config = raw.get("client-config")
        if client_config is None or isinstance(client_config, Mapping):
            # An operator waits at the terminal: give up on an unreachable host sooner.
            raw["client-config"] = {"connect_timeout": CONNECT_TIMEOUT, **(client_config or {})}
        options = parse_options(
            raw,
            hostname=parts.hostname,
            port=parts.port,
            userid=parts.userid,
            password=parts.password,
            default_region=configured_region(raw),
        )
        session = cls(options, broker)
        require_credentials(session.aws)
        return session

    @property
    def prefix(self) -> str:
        """The queue name prefix as SQS sees it (translated like queue names)."""
        return entity_name(self.options.queue_name_prefix)

    def where(self) -> str:
        """Endpoint, region and prefix, for messages (no credentials)."""
        endpoint = self.options.endpoint_url or "AWS"
        prefix = f", prefix {self.options.queue_name_prefix!r}" if self.prefix else ""
        return f"{endpoint} ({self.options.region}{prefix})"

    def short_name(self, sqs_name: str) -> str:
        """The name to type on the command line for the SQS queue ``sqs_name``."""
        if self.prefix and sqs_name.startswith(self.prefix):
            return sqs_name[len(self.prefix) :]
        return sqs_name

    def all_queues(self) -> list[QueueRef]:
        """Every queue under the prefix (or the predefined ones), sorted by name."""
        directory = self.directory
        if self.options.predefined_queues:
            return [directory.get(name) for name in sorted(self.options.predefined_queues)]
        urls = directory.list_urls()
        client = directory.client_for(None)
        scope = directory.scope(None)
        return [QueueRef(name, urls[name], client, scope=scope) for name in sorted(urls)]

    def queue(self, name: str) -> QueueRef:
        """The queue a Kombu queue name refers to; :class:`UnknownQueueError` if none."""
        try:
            return self.directory.get(name)
        except QueueDoesNotExist:
            pass
        known = [self.short_name(ref.name) for ref in self.all_queues()]
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        sqs_name = self.directory.sqs_name(name)
        shown = f"{name!r}" if sqs_name == name else f"{name!r} (SQS name {sqs_name!r})"
        raise UnknownQueueError(
            f"no queue {shown} at {self.where()}{hint} ('sqsbus queues' lists them)"
        )

    def priority_bands(self, name: str) -> list[QueueRef]:
        """The existing priority band queues of the Kombu queue ``name`` (``name.p6`` ...),
        for the ``priority_steps`` option's bands, highest first."""
        found = []
        for step in sorted(self.options.priority_steps, reverse=True):
            if step > 0:
                with contextlib.suppress(QueueDoesNotExist, UndefinedQueueError):
                    found.append(self.directory.get(band_queue(name, step)))
        return found
