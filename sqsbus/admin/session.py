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
    "DEFAULT_TIMEOUT",
    "AdminSession",
    "BrokerChoice",
    "choose_broker",
    "parse_option_args",
    "secret_quoting_problem",
    "timeout_settings",
]

#: Environment variables read, in this order, when no ``--broker`` is given.
BROKER_ENV_VARS: Final = ("SQSBUS_BROKER_URL", "CELERY_BROKER_URL")
#: URL schemes accepted: sqsbus's own, and Kombu's SQS transport's (same options).
SCHEMES: Final = ("sqsbus", "sqs")
#: Seconds each AWS request may take to connect, and again to answer, unless ``client-config``
#: says otherwise (``--timeout``; botocore's 60 s each is long for a command at a terminal).
DEFAULT_TIMEOUT: Final = 10.0
#: Attempts of each AWS call (botocore's standard retry mode): a call gives up after at most
#: this many timeouts plus the backoff between them (a few seconds).
ATTEMPTS: Final = 2
#: A secret access key of AWS: 40 characters of this alphabet.
_AWS_SECRET_CHARACTERS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)
#: How to write a secret key into a broker URL, for hints.
QUOTING_HINT: Final = (
    "URL-quote the secret key in the broker URL: '/' as %2F and '+' as %2B "
    "(urllib.parse.quote(secret, safe=''))"
)
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
        except json.JSONDecodeError as exc:
            if text.lstrip()[:1] in ("{", "[", '"'):  # meant as JSON: say where it breaks
                raise ConfigurationError(
                    f"option {key!r}: the value is not valid JSON ({exc.msg} at line "
                    f"{exc.lineno} column {exc.colno}). Write it in JSON (double quotes) and "
                    f'quote it for the shell: -o \'{key}={{"name": "value"}}\''
                ) from None
            value = text
        options[key] = value
    return options


def timeout_settings(timeout: float) -> dict[str, Any]:
    """The botocore ``Config`` settings bounding each request to ``timeout`` seconds to
    connect and to answer, and each call to :data:`ATTEMPTS` attempts."""
    return {
        "connect_timeout": timeout,
        "read_timeout": timeout,
        "retries": {"mode": "standard", "total_max_attempts": ATTEMPTS},
    }


def secret_quoting_problem(url: str) -> str | None:
    """Why the secret key of the broker URL ``url`` looks mangled by missing URL quoting
    (a space where a ``+`` was decoded, characters no AWS secret key has), else None.
    The secret itself is never part of the answer."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    if not password:
        return None
    secret = unquote(password)
    if " " in secret:
        return "the secret key in the broker URL has a space, where a '+' was likely decoded"
    if not set(secret) <= _AWS_SECRET_CHARACTERS:
        return "the secret key in the broker URL has characters no AWS secret key has"
    return None


@dataclass(frozen=True)
class _BrokerUrl:
    hostname: str | None
    port: int | None
    userid: str | None
    password: str | None


def _split_broker_url(url: str) -> _BrokerUrl:
    malformed = "the broker URL is malformed; expected sqsbus://[KEY:SECRET@][host[:port]]"
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError(malformed) from None
    if "@" in parts.path + parts.query + parts.fragment:
        # sqsbus://KEY:abc/def@host splits at the '/': its host would be "KEY".
        raise ConfigurationError(
            "the broker URL is malformed: its credentials go on past a '/', '?' or '#', "
            f"which a secret key must not hold unquoted. {QUOTING_HINT}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(malformed) from None
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
        cls,
        broker: BrokerChoice,
        transport_options: Mapping[str, Any] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> AdminSession:
        """Validate the settings and check credentials, as a transport connection would.

        Each AWS request gets ``timeout`` seconds to connect and as many to answer, each
        call :data:`ATTEMPTS` attempts (settings of ``client-config`` win over these).
        """
        parts = _split_broker_url(broker.url)
        raw = dict(transport_options or {})
        client_config = raw.get("client-config")
        if client_config is None or isinstance(client_config, Mapping):
            # An operator waits at the terminal: give up on a silent endpoint in bounded time.
            raw["client-config"] = {**timeout_settings(timeout), **(client_config or {})}
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
