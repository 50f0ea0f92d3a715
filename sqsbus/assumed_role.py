"""Assumed-role credentials: renewed ahead of the expiry STS granted, and on demand.

:class:`AssumedRoleCredentials` is the botocore credentials object of every client made
with the ``sts_role_arn`` option. Renewal is planned from the expiry of each grant, not
from the session length asked for: STS may grant less (role chaining caps sessions at one
hour, a role's maximum session may be shorter) and a proxy or test endpoint may grant
something else entirely. Between the renewal point and a little before expiry one caller
renews while the others keep signing with the current grant; closer to expiry every caller
waits for the new one.

When AWS still rejects a request as expired (clock skew, a revoked session), the client's
``needs-retry`` hook (:func:`retry_after_renewal`) renews the credentials once and retries
the request, signed anew.
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.credentials import Credentials, ReadOnlyCredentials

from sqsbus.forks import reset_in_child
from sqsbus.redact import forget_secret, register_secret

logger = logging.getLogger(__name__)

#: Error codes with which AWS rejects a request signed with expired credentials (or
#: signed too long ago): renewing the credentials and signing again fixes them.
EXPIRED_CODES: Final = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
)
#: Shortest default renewal margin, in seconds (for sessions of 5 minutes or more).
MIN_DEFAULT_MARGIN: Final = 30
#: ``request_dict["context"]`` key marking a request already retried after a renewal.
_RETRIED: Final = "sqsbus_renewed_credentials"

#: The secret parts of an STS answer (XML of the query protocol, or JSON).
_SECRETS_IN_ANSWER: Final = re.compile(
    rb"<(?:SecretAccessKey|SessionToken)>\s*([^<\s]+)\s*<"
    rb'|"(?:SecretAccessKey|SessionToken)"\s*:\s*"([^"]+)"'
)

_ALL: weakref.WeakSet[AssumedRoleCredentials] = weakref.WeakSet()


def sts_refresh_margin(lifetime: float, buffer_time: int = 0) -> float:
    """Seconds before expiry at which credentials valid for ``lifetime`` seconds are renewed.

    ``buffer_time`` (the ``sts_token_buffer_time`` option) when set, else a tenth of the
    lifetime but at least 30 s; never more than half the lifetime, so renewal neither lands
    after expiry nor happens on every request, whatever lifetime STS granted.
    """
    wanted = float(buffer_time) if buffer_time else max(MIN_DEFAULT_MARGIN, lifetime / 10)
    return max(0.0, min(wanted, lifetime / 2))


@dataclass(frozen=True)
class Grant:
    """One answer of ``sts:AssumeRole``: a key pair, its session token and its expiry."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str = field(repr=False)
    expiry: datetime.datetime
    account_id: str | None = None

    def frozen(self) -> ReadOnlyCredentials:
        return ReadOnlyCredentials(self.access_key, self.secret_key, self.token, self.account_id)


@dataclass(frozen=True)
class _Plan:
    """When to renew ``grant``: from ``renew_at`` (one caller) and ``must_at`` (everyone)."""

    grant: Grant
    renew_at: float
    must_at: float


def _epoch(moment: datetime.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


class AssumedRoleCredentials(Credentials):
    """botocore credentials from ``assume()``, renewed before the granted expiry.

    Args:
        assume: asks STS for a new :class:`Grant` (raises an sqsbus error when it cannot).
        buffer_time: the ``sts_token_buffer_time`` option (0: a tenth of each session).
        clock: seconds since the epoch (``time.time``); tests may pass their own.
    """

    method = "sts-assume-role"

    def __init__(
        self,
        assume: Callable[[], Grant],
        *,
        buffer_time: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._assume = assume
        self._buffer_time = buffer_time
        self._clock = clock
        self._lock = threading.Lock()
        self._local = threading.local()
        self._retry_at = 0.0
        self._previous: Grant | None = None
        self.renewals = 0
        self._plan = self._plan_for(self._fetch())
        _ALL.add(self)

    # Read by botocore (the AccountId endpoint parameter) and by people: the current grant.
    @property
    def access_key(self) -> str | None:  # type: ignore[override]
        return self.get_frozen_credentials().access_key

    @property
    def secret_key(self) -> str | None:  # type: ignore[override]
        return self.get_frozen_credentials().secret_key

    @property
    def token(self) -> str | None:  # type: ignore[override]
        return self.get_frozen_credentials().token

    @property
    def account_id(self) -> str | None:
        return self._plan.grant.account_id

    @property
    def expiry(self) -> datetime.datetime:
        """When the current grant expires (as STS said)."""
        return self._plan.grant.expiry

    @property
    def renew_at(self) -> datetime.datetime:
        """From when the next signing renews the grant."""
        return datetime.datetime.fromtimestamp(self._plan.renew_at, datetime.UTC)

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        """The credentials to sign a request with, renewed first if their time has come."""
        plan = self._plan
        now = self._clock()
        if now >= plan.renew_at and now >= self._retry_at:
            self._renew_ahead(plan, now)
            plan = self._plan
        self._local.used = plan.grant
        return plan.grant.frozen()

    def renew(self) -> None:
        """Assume the role again now, whatever the current grant's expiry."""
        with self._lock:
            self._replace()

    def renew_after_rejection(self) -> None:
        """Renew because AWS rejected the grant this thread last signed with as expired.

        Threads rejected together renew once: a thread whose grant was already replaced
        just signs again with the new one.
        """
        used = getattr(self._local, "used", None)
        with self._lock:
            if used is not None and self._plan.grant is not used:
                return
            self._replace()

    def _renew_ahead(self, plan: _Plan, now: float) -> None:
        mandatory = now >= plan.must_at
        if not self._lock.acquire(blocking=mandatory):
            return  # another thread renews; the current grant is still good for a while
        try:
            if self._plan is not plan:
                return  # renewed while this thread waited
            try:
                self._replace()
            except Exception as exc:
                if mandatory:
                    raise
                delay = max(1.0, (plan.must_at - now) / 4)
                self._retry_at = now + delay
                logger.warning(
                    "renewing assumed-role credentials failed (%s); the current ones stay "
                    "valid until %s, trying again in %.0f s",
                    exc,
                    plan.grant.expiry.isoformat(),
                    delay,
                )
        finally:
            self._lock.release()

    def _fetch(self) -> Grant:
        grant = self._assume()
        register_secret(grant.secret_key)
        register_secret(grant.token)
        return grant

    def _replace(self) -> None:
        """Assume the role again (the caller holds the lock)."""
        grant = self._fetch()
        older, self._previous = self._previous, self._plan.grant
        self._plan = self._plan_for(grant)
        self._retry_at = 0.0
        self.renewals += 1
        if older is not None:  # two grants back: no request signs with it any more
            forget_secret(older.secret_key)
            forget_secret(older.token)

    def _plan_for(self, grant: Grant) -> _Plan:
        expiry = _epoch(grant.expiry)
        lifetime = max(0.0, expiry - self._clock())
        margin = sts_refresh_margin(lifetime, self._buffer_time)
        logger.debug(
            "assumed-role credentials valid for %.0f s, renewed %.0f s before expiry",
            lifetime,
            margin,
        )
        return _Plan(grant, renew_at=expiry - margin, must_at=expiry - margin / 2)


def retry_after_renewal(
    credentials: AssumedRoleCredentials,
    response: Any = None,
    request_dict: dict[str, Any] | None = None,
    **_: Any,
) -> int | None:
    """botocore ``needs-retry`` hook: after an expired-credentials answer, renew and retry.

    Returns 0 (retry now: botocore signs the retry again) once per call; None otherwise,
    leaving the decision to botocore's own retry handler.
    """
    if response is None or request_dict is None:
        return None
    error = response[1].get("Error") if isinstance(response[1], dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    if code not in EXPIRED_CODES:
        return None
    context = request_dict.setdefault("context", {})
    if context.get(_RETRIED):
        return None  # renewed once already: let the caller see the error
    context[_RETRIED] = True
    logger.warning(
        "AWS rejected the assumed-role credentials as expired (%s): renewing them and retrying",
        code,
    )
    credentials.renew_after_rejection()
    return 0


def scrub_sts_answer(response_dict: dict[str, Any] | None = None, **_: Any) -> None:
    """botocore ``before-parse`` hook of STS clients: register the secrets of an answer
    before botocore's parser logs its body (at DEBUG level)."""
    body = (response_dict or {}).get("body")
    if not isinstance(body, bytes):
        return
    for found in _SECRETS_IN_ANSWER.finditer(body):
        secret = found.group(1) or found.group(2)
        register_secret(secret.decode("utf-8", errors="replace"))


def _after_fork_in_child() -> None:
    """A thread of the parent may have held a renewal lock at fork: give the child new ones."""
    for credentials in list(_ALL):
        credentials._lock = threading.Lock()
        credentials._local = threading.local()


reset_in_child(_after_fork_in_child)
