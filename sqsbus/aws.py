"""AWS sessions and clients: credentials, STS role assumption, endpoint, counting.

Every botocore client sqsbus uses is made here, so every request passes through
one counted place (:class:`RequestStats`) and every error is translated into the
:mod:`sqsbus.errors` hierarchy by :func:`call`.
"""

from __future__ import annotations

import datetime
import functools
import logging
import re
import threading
import time
import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import botocore.session
from botocore.config import Config as BotocoreConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import (
    ConnectionError as BotocoreConnectionError,
)

from sqsbus.assumed_role import (
    EXPIRED_CODES,
    AssumedRoleCredentials,
    Grant,
    retry_after_renewal,
    scrub_sts_answer,
)
from sqsbus.config import Options, Secret, is_loopback
from sqsbus.errors import (
    AccessDeniedError,
    ConfigurationError,
    CredentialsError,
    QueueDoesNotExist,
    SQSBusError,
    TransientError,
)
from sqsbus.forks import reset_in_child
from sqsbus.markup import html_summary, xml_error_message
from sqsbus.redact import SigningSecrets, register_secret
from sqsbus.telemetry import active as metrics_active
from sqsbus.telemetry import record_requests

logger = logging.getLogger(__name__)

#: Error codes of an answer that says "too many requests".
THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "Throttled",
        "ThrottlingException",
        "RequestThrottled",
        "OverLimit",
        "SlowDown",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "KMS.ThrottlingException",
    }
)
#: Error codes that mean "try again later".
TRANSIENT_CODES: Final = THROTTLING_CODES | frozenset(
    {
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
CREDENTIAL_CODES: Final = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "MissingAuthenticationToken",
        "IncompleteSignature",
    }
)
ACCESS_DENIED_CODES: Final = frozenset(
    {"AccessDenied", "AccessDeniedException", "KMS.AccessDeniedException"}
)
MISSING_QUEUE_CODES: Final = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
#: The host name of an AWS service endpoint, which names its region.
_AWS_SERVICE_HOST: Final = re.compile(
    r"(?:sqs|sns|s3|sts)[.-](?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?", re.I
)


_ALL_STATS: weakref.WeakSet[RequestStats] = weakref.WeakSet()


class RequestStats:
    """Thread-safe counters of AWS calls, per operation and per queue.

    ``calls`` counts API calls as made by sqsbus (``"sqs.SendMessageBatch"``);
    ``http_requests`` counts HTTP attempts including botocore's retries, which is
    what AWS bills.
    """

    def __init__(self, parent: RequestStats | None = None) -> None:
        self._lock = threading.Lock()
        _ALL_STATS.add(self)
        self._calls: Counter[str] = Counter()
        self._per_queue: Counter[tuple[str, str]] = Counter()
        self._http: Counter[str] = Counter()
        self._parent = parent

    def record_call(self, operation: str, queue: str | None) -> None:
        with self._lock:
            self._calls[operation] += 1
            if queue:
                self._per_queue[(operation, queue)] += 1
        if self._parent is not None:
            self._parent.record_call(operation, queue)

    def record_http(self, operation: str) -> None:
        with self._lock:
            self._http[operation] += 1
        if self._parent is not None:
            self._parent.record_http(operation)

    def calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)

    def per_queue(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._per_queue)

    def http_requests(self) -> dict[str, int]:
        with self._lock:
            return dict(self._http)

    @property
    def total_http_requests(self) -> int:
        with self._lock:
            return sum(self._http.values())

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._per_queue.clear()
            self._http.clear()


#: Process-wide totals over every sqsbus connection (benchmarks read this).
GLOBAL_STATS: Final = RequestStats()


def _after_fork_in_child() -> None:
    """A thread of the parent may have held a stats lock at fork: give the child new ones."""
    for stats in list(_ALL_STATS):
        stats._lock = threading.Lock()


reset_in_child(_after_fork_in_child)


@dataclass(frozen=True)
class CredentialSource:
    """Where a client's credentials come from; all ``None`` means the boto3 chain."""

    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None

    def __repr__(self) -> str:
        kind = "static keys" if self.access_key_id else "default credential chain"
        return f"CredentialSource({kind})"


def translate_error(exc: BaseException, action: str, region: str | None = None) -> SQSBusError:
    """Map a botocore exception to the sqsbus error a caller can act on.

    ``region`` is the region the call went to (named when a queue is not found there).
    """
    if isinstance(exc, SQSBusError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or code
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code not in CREDENTIAL_CODES | ACCESS_DENIED_CODES and status in (400, 403):
            # An answer botocore could not parse (e.g. XML to a JSON-protocol request):
            # find the error code in its text.
            known = [c for c in CREDENTIAL_CODES | ACCESS_DENIED_CODES if f">{c}<" in message]
            code = known[0] if known else code
        message = xml_error_message(message) or message
        page = html_summary(message)
        if page is not None:  # a proxy or web server answered, not AWS: no markup in errors
            text = f"{action}: {_html_answer(status or code, page)}"
            return TransientError(text) if status >= 500 or status == 429 else SQSBusError(text)
        if status >= 500 and code == str(status):  # botocore found no AWS error in it
            return TransientError(
                f"{action}: the endpoint answered HTTP {status} ({message}) without an AWS "
                "error; a proxy or load balancer in between may be failing"
            )
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientError(f"{action}: AWS asked to retry ({code}: {message})")
        if code in EXPIRED_CODES:
            return CredentialsError(
                f"{action}: AWS rejected the credentials as expired ({code}). Give a fresh "
                "session token (session_token, AWS_SESSION_TOKEN) or use sts_role_arn, which "
                "renews them; check that this host's clock is right."
            )
        if code in CREDENTIAL_CODES:
            return CredentialsError(
                f"{action}: AWS rejected the credentials ({code}). Check the key pair in the "
                "broker URL or the boto3 credential chain, and the region."
            )
        if code in ACCESS_DENIED_CODES:
            return AccessDeniedError(
                f"{action}: access denied ({message}). Grant the IAM permission for this "
                "action on the queue."
            )
        if code in MISSING_QUEUE_CODES:
            where = f" in region {region}" if region else ""
            return QueueDoesNotExist(
                f"{action}: the queue does not exist{where} ({message}). Check the queue's "
                "name, the region and the account of its URL."
            )
        return SQSBusError(f"{action}: {code}: {message}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CredentialsError(
            f"{action}: no AWS credentials found. Put them in the broker URL "
            "(sqsbus://KEY:SECRET@...), set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or configure a profile or instance role."
        )
    if isinstance(exc, SSLError):
        # Retrying cannot fix a certificate: say so instead of reconnecting forever.
        return ConfigurationError(
            f"{action}: the endpoint's TLS certificate could not be verified ({exc}). "
            "sqsbus verifies certificates: give the endpoint a certificate your system "
            "trusts, point AWS_CA_BUNDLE at its CA, or use http:// for a local test endpoint."
        )
    if isinstance(exc, BotocoreConnectionError | HTTPClientError | OSError):
        return TransientError(f"{action}: cannot reach the endpoint ({type(exc).__name__}: {exc})")
    if isinstance(exc, BotoCoreError):
        return SQSBusError(f"{action}: {exc}")
    return SQSBusError(f"{action}: {type(exc).__name__}: {exc}")


def call(client: Any, operation: str, action: str, **params: Any) -> dict[str, Any]:
    """Invoke ``client.<operation>(**params)``, translating errors into sqsbus errors.

    ``action`` describes the call for error messages (e.g. ``"send to queue 'x'"``).
    """
    try:
        result: dict[str, Any] = getattr(client, operation)(**params)
    except (BotoCoreError, ClientError, OSError) as exc:
        region = getattr(getattr(client, "meta", None), "region_name", None)
        raise translate_error(exc, action, region) from exc
    return result


class AWS:
    """Makes and caches botocore clients for one transport connection."""

    def __init__(self, options: Options, stats: RequestStats | None = None) -> None:
        self.options = options
        self.stats = stats or RequestStats(parent=GLOBAL_STATS)
        self._session = botocore.session.get_session()
        self._clients: dict[tuple[str, str, CredentialSource], Any] = {}
        self._assumed: dict[CredentialSource, AssumedRoleCredentials] = {}
        self._lock = threading.Lock()

    @property
    def default_source(self) -> CredentialSource:
        return CredentialSource(
            self.options.access_key_id,
            self.options.secret_access_key,
            self.options.session_token,
        )

    def client(
        self,
        service: str,
        *,
        region: str | None = None,
        source: CredentialSource | None = None,
    ) -> Any:
        """A cached client for ``service`` with the given region and credentials."""
        key = (service, region or self.options.region, source or self.default_source)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._new_client(*key)
            return client

    def _new_client(self, service: str, region: str, source: CredentialSource) -> Any:
        session = botocore.session.Session()
        assumed: AssumedRoleCredentials | None = None
        if self.options.sts_role_arn:
            assumed = self._assumed_role(source, region)
            # botocore has no public setter for refreshable credentials.
            session._credentials = assumed  # type: ignore[attr-defined]
        elif source.access_key_id and source.secret_access_key:
            session.set_credentials(
                source.access_key_id,
                source.secret_access_key.reveal(),
                source.session_token.reveal() if source.session_token else None,
            )
        config = self.options.botocore_config()
        if service == "s3" and self.options.endpoint_url and "s3" not in self.options.client_config:
            # A local endpoint (http://127.0.0.1:PORT) has no bucket subdomains.
            config = config.merge(BotocoreConfig(s3={"addressing_style": "path"}))
        kwargs: dict[str, Any] = {
            "region_name": region,
            "config": config,
            "use_ssl": self.options.is_secure,
        }
        if self.options.endpoint_url:
            kwargs["endpoint_url"] = self.options.endpoint_url
        client = session.create_client(service, **kwargs)
        self._count(client, service)
        if service != "s3":  # S3 objects may be HTML; SQS and SNS answers never are
            service_id = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register(f"before-parse.{service_id}", refuse_html_answer)
        if assumed is not None:
            # An answer "these credentials expired" renews them and retries, once per call.
            hook: Any = functools.partial(retry_after_renewal, assumed)
            client.meta.events.register(
                f"needs-retry.{client.meta.service_model.service_id.hyphenize()}", hook
            )
        _scrub_signing_credentials(session, client)
        return client

    def _count(self, client: Any, service: str) -> None:
        stats = self.stats
        service_id = client.meta.service_model.service_id
        metered = metrics_active()

        def on_call(model: Any, params: dict[str, Any], **kwargs: Any) -> None:
            queue = params.get("QueueUrl") if isinstance(params, dict) else None
            stats.record_call(f"{service}.{model.name}", queue)
            context = kwargs.get("context")
            if metered and isinstance(context, dict):
                context[_METERED_CALL] = _MeteredCall(str(service_id), model.name, params)

        def on_send(event_name: str, **_: Any) -> None:
            stats.record_http(f"{service}.{event_name.rsplit('.', 1)[-1]}")

        events = client.meta.events
        events.register(f"before-parameter-build.{service_id.hyphenize()}", on_call)
        events.register(f"before-send.{service_id.hyphenize()}", on_send)
        if metered:
            events.register(f"request-created.{service_id.hyphenize()}", _attempt_started)
            events.register(f"response-received.{service_id.hyphenize()}", _attempt_answered)
            events.register(f"after-call.{service_id.hyphenize()}", _call_finished)
            events.register(f"after-call-error.{service_id.hyphenize()}", _call_finished)

    def _assumed_role(self, source: CredentialSource, region: str) -> AssumedRoleCredentials:
        """One set of assumed-role credentials per source, shared by every service client."""
        credentials = self._assumed.get(source)
        if credentials is None:
            credentials = self._assumed[source] = self._assumed_role_credentials(source, region)
        return credentials

    def _assumed_role_credentials(
        self, source: CredentialSource, region: str
    ) -> AssumedRoleCredentials:
        """Credentials from ``sts:AssumeRole``, renewed before the expiry STS granted."""
        options = self.options
        role_arn = options.sts_role_arn
        assert role_arn is not None
        base = botocore.session.Session()
        if source.access_key_id and source.secret_access_key:
            base.set_credentials(
                source.access_key_id,
                source.secret_access_key.reveal(),
                source.session_token.reveal() if source.session_token else None,
            )
        sts_kwargs: dict[str, Any] = {"region_name": region}
        if options.endpoint_url and _endpoint_is_local(options.endpoint_url):
            sts_kwargs["endpoint_url"] = options.endpoint_url
        sts = base.create_client("sts", **sts_kwargs)
        _scrub_signing_credentials(base, sts)
        self._count(sts, "sts")
        sts.meta.events.register("before-parse.sts", scrub_sts_answer)

        def assume() -> Grant:
            answer = call(
                sts,
                "assume_role",
                f"assume role {role_arn}",
                RoleArn=role_arn,
                RoleSessionName="sqsbus",
                DurationSeconds=options.sts_token_timeout,
            )
            creds = answer["Credentials"]
            expiry = creds["Expiration"]
            if not isinstance(expiry, datetime.datetime):
                expiry = _parse_expiry(str(expiry))
            register_secret(creds["SecretAccessKey"])
            register_secret(creds["SessionToken"])
            logger.debug("assumed role %s until %s", role_arn, expiry.isoformat())
            return Grant(
                access_key=creds["AccessKeyId"],
                secret_key=creds["SecretAccessKey"],
                token=creds["SessionToken"],
                expiry=expiry,
            )

        return AssumedRoleCredentials(assume, buffer_time=options.sts_token_buffer_time)


def refuse_html_answer(response_dict: dict[str, Any] | None = None, **_: Any) -> None:
    """botocore ``before-parse`` hook: a successful answer that is an HTML page came from a
    web server or proxy, not AWS, and botocore would read it as an empty result (no queues,
    no messages); raise :class:`TransientError` naming the page instead."""
    answer = response_dict or {}
    status, body = answer.get("status_code", 0), answer.get("body")
    if not isinstance(status, int) or not 200 <= status < 300 or not isinstance(body, bytes):
        return
    page = html_summary(body[:4096].decode("utf-8", errors="replace"))
    if page is not None:
        raise TransientError(_html_answer(status, page))


def _html_answer(status: int | str, page: str) -> str:
    """What an HTML page titled ``page`` answered with HTTP ``status`` means."""
    title = f" ({page!r})" if page else ""
    return (
        f"the endpoint answered HTTP {status} with an HTML page{title}, not an AWS answer. "
        "Check that the endpoint URL points at the AWS service (not a web server), and any "
        "proxy in between."
    )


#: Where a call's :class:`_MeteredCall` rides in botocore's request context.
_METERED_CALL: Final = "sqsbus.metered_call"


class _MeteredCall:
    """The HTTP attempts of one AWS call, recorded in :mod:`sqsbus.telemetry` when it ends."""

    __slots__ = ("attempts", "method", "queue", "service", "started")

    def __init__(self, service: str, method: str, params: Any) -> None:
        self.service = service
        self.method = method
        #: The SQS queue it is about (by URL or by name), if any.
        self.queue: str | None = None
        if isinstance(params, dict):
            url, name = params.get("QueueUrl"), params.get("QueueName")
            if isinstance(url, str) and url:
                self.queue = url.rstrip("/").rsplit("/", 1)[-1]
            elif isinstance(name, str) and name:
                self.queue = name
        self.started = 0.0
        #: (``ok``/``throttled``/``error``, seconds) per attempt so far.
        self.attempts: list[tuple[str, float]] = []

    def finish(self) -> None:
        """Every attempt but the last was tried again; the last one ended the call."""
        attempts, self.attempts = self.attempts, []
        if not attempts:
            return
        outcomes = [
            ("throttled" if kind == "throttled" else "retried", seconds)
            for kind, seconds in attempts[:-1]
        ]
        kind, seconds = attempts[-1]
        outcomes.append(("ok" if kind == "ok" else "failed", seconds))
        record_requests(self.service, self.method, self.queue, outcomes)


def _metered_call(context: Any) -> _MeteredCall | None:
    call = context.get(_METERED_CALL) if isinstance(context, dict) else None
    return call if isinstance(call, _MeteredCall) else None


def _attempt_started(request: Any, **_: Any) -> None:
    call = _metered_call(getattr(request, "context", None))
    if call is not None:
        call.started = time.perf_counter()


def _attempt_answered(
    context: Any, response_dict: Any = None, parsed_response: Any = None, **_: Any
) -> None:
    call = _metered_call(context)
    if call is None or not call.started:
        return
    seconds = time.perf_counter() - call.started
    call.started = 0.0
    call.attempts.append((_attempt_kind(response_dict, parsed_response), seconds))


def _attempt_kind(response_dict: Any, parsed: Any) -> str:
    """``ok``, ``throttled`` or ``error``: how AWS answered one attempt (no answer: error)."""
    if not isinstance(response_dict, dict):
        return "error"
    status = int(response_dict.get("status_code") or 0)
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    code = str(error.get("Code", "")) if isinstance(error, dict) else ""
    if status == 429 or code in THROTTLING_CODES:
        return "throttled"
    if status >= 300 or code:
        return "error"
    return "ok"


def _call_finished(context: Any, **_: Any) -> None:
    call = _metered_call(context)
    if call is not None:
        call.finish()


def _scrub_signing_credentials(session: botocore.session.Session, client: Any) -> None:
    """Scrub from logs the credentials that sign ``client``'s requests, as they are now and
    after every refresh by their provider (container, instance profile, SSO, process...)."""
    credentials = session.get_credentials()  # the very object the client signs with
    if credentials is None:
        return
    scrubber = SigningSecrets(credentials)
    scrubber()
    service_id = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-sign.{service_id}", scrubber)


def _parse_expiry(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed


def _endpoint_is_local(url: str) -> bool:
    host = urlsplit(url).hostname
    return bool(host) and is_loopback(host or "")


def unknown_region_error(options: Options, exc: TransientError) -> ConfigurationError | None:
    """A clear error for an unreachable AWS endpoint of a region botocore does not know (a
    typo, most likely): the ``region`` option's, or the one an AWS endpoint URL names
    (``sqs.eu-wset-1.amazonaws.com``); None for any other endpoint or a known region."""
    region = options.region
    check = "the 'region' transport option (or AWS_DEFAULT_REGION / the profile's region)"
    if options.endpoint_url:
        aws_host = _AWS_SERVICE_HOST.fullmatch(urlsplit(options.endpoint_url).hostname or "")
        if aws_host is None:
            return None
        region, check = aws_host.group("region"), "the host name of the endpoint URL"
    if region in botocore.session.get_session().get_available_regions("sqs"):
        return None
    return ConfigurationError(
        f"region {region!r} is not an AWS region botocore knows, and its SQS "
        f"endpoint cannot be reached ({exc}). Check {check}; for a new region, upgrade "
        "botocore or set endpoint_url."
    )


def configured_region(transport_options: Mapping[str, Any]) -> str | None:
    """The region of the boto3 configuration, unless the ``region`` option is set."""
    if transport_options.get("region"):
        return None
    try:
        region = botocore.session.Session().get_config_variable("region")
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names a missing profile
        raise ConfigurationError(f"cannot read the AWS configuration: {exc}") from None
    return str(region) if region else None


def require_credentials(aws: AWS, source: CredentialSource | None = None) -> None:
    """Fail early with a clear message when no credentials can be found at all."""
    source = source or aws.default_source
    if aws.options.sts_role_arn or (source.access_key_id and source.secret_access_key):
        return
    if botocore.session.Session().get_credentials() is None:
        raise translate_error(NoCredentialsError(), "connect to SQS")
