"""What an operator reads when a command fails: the error, and the fix where it is known.

:func:`explain` turns an expected failure of an operator command into its one line: a
request that timed out names the endpoint, the timeout and ``--timeout``; an unreachable
endpoint of a region botocore does not know gets the transport's region error; credentials
AWS rejected get the URL-quoting hint when the broker URL's secret key looks mangled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.config import Config as BotocoreConfig
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from sqsbus.admin.session import (
    QUOTING_HINT,
    AdminSession,
    BrokerChoice,
    secret_quoting_problem,
)
from sqsbus.aws import unknown_region_error
from sqsbus.errors import CredentialsError, SQSBusError, TransientError

__all__ = ["explain"]

_TIMEOUTS = (ConnectTimeoutError, ReadTimeoutError)


def explain(exc: SQSBusError, session: AdminSession | None, broker: BrokerChoice | None) -> str:
    """The line an operator reads for ``exc`` (no secrets: error texts never hold one)."""
    if isinstance(exc, TransientError):
        if session is not None:
            timed_out = _timeout_cause(exc)
            if timed_out is not None:
                return _timeout_text(timed_out, session, broker)
            wrong_region = unknown_region_error(session.options, exc)
            if wrong_region is not None:
                return str(wrong_region)
        return f"{exc} (broker from {broker.source})" if broker else str(exc)
    if isinstance(exc, CredentialsError) and broker is not None:
        problem = secret_quoting_problem(broker.url)
        if problem:
            return f"{exc} Likely cause: {problem}; {QUOTING_HINT}."
    return str(exc)


def _timeout_cause(exc: BaseException) -> ConnectTimeoutError | ReadTimeoutError | None:
    """The botocore timeout behind ``exc``, if a timeout is what it is."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, _TIMEOUTS):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _timeout_text(
    exc: ConnectTimeoutError | ReadTimeoutError, session: AdminSession, broker: BrokerChoice | None
) -> str:
    source = f" (from {broker.source})" if broker else ""
    config: dict[str, Any] = {**BotocoreConfig.OPTION_DEFAULTS, **session.options.client_config}
    endpoint = exc.kwargs.get("endpoint_url") or session.options.endpoint_url or "the endpoint"
    attempts = _attempts(config["retries"])
    tries = f" ({attempts} attempts)" if attempts and attempts > 1 else ""
    if isinstance(exc, ConnectTimeoutError):
        return (
            f"could not connect to {endpoint} within {config['connect_timeout']:g} s{tries}. "
            f"Check the host and port of the broker URL{source} and that no firewall drops "
            "the connection, or give a slow network more time with --timeout SECONDS."
        )
    return (
        f"no answer from {endpoint} within {config['read_timeout']:g} s{tries}: it accepted "
        f"the connection, then said nothing. Check that the broker URL{source} points at an "
        "SQS endpoint, or give a slow one more time with --timeout SECONDS."
    )


def _attempts(retries: Mapping[str, Any] | None) -> int | None:
    """Attempts per call that botocore's ``retries`` setting allows, if it says."""
    if not retries:
        return None
    if "total_max_attempts" in retries:
        return int(retries["total_max_attempts"])
    if "max_attempts" in retries:
        return int(retries["max_attempts"]) + 1
    return None
