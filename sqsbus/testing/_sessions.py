"""Temporary credentials checked the way AWS checks them, for the fault proxy.

A local endpoint (moto's server) hands out temporary credentials through STS but never
checks them afterwards. :class:`SessionBook` watches the STS answers that carry
credentials (``AssumeRole``, ``GetSessionToken``, ...), notes each access key's expiry,
optionally shortens the session it hands out (rewriting ``Expiration``), and tells the
proxy which later requests are signed with an access key whose session has ended. Access
keys it never saw handed out (static keys) are never rejected.

Only the access key ID is read from a request (SigV4 ``Authorization`` header or the
``X-Amz-Credential`` query parameter of a presigned URL); nothing secret is kept or logged.
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from sqsbus.testing._aws_wire import Operation
from sqsbus.testing._http import Request, Response

__all__ = ["SessionBook", "access_key_of"]

_AUTHORIZATION_KEY: Final = re.compile(r"Credential=([^/,\s]+)/")
_XML_CREDENTIALS: Final = re.compile(rb"<Credentials>(.*?)</Credentials>", re.DOTALL)
_XML_ACCESS_KEY: Final = re.compile(rb"<AccessKeyId>\s*([^<\s]+)\s*</AccessKeyId>")
_XML_EXPIRATION: Final = re.compile(rb"<Expiration>\s*([^<\s]+)\s*</Expiration>")
#: Sessions that ended this long ago are forgotten (their keys are never seen again).
_FORGET_AFTER_S: Final = 3600.0


def access_key_of(request: Request) -> str | None:
    """The access key ID that signed ``request`` (SigV4 header or presigned URL), if any."""
    authorization = request.header("authorization")
    if authorization:
        found = _AUTHORIZATION_KEY.search(authorization)
        return found.group(1) if found else None
    query = parse_qs(urlsplit(request.target).query)
    credential = (query.get("X-Amz-Credential") or [""])[0]
    return credential.split("/", 1)[0] or None


def _parse_time(text: str) -> float | None:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _format_time(epoch: float) -> str:
    """AWS's timestamp format, to the second (``2026-11-26T10:00:00Z``)."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class SessionBook:
    """Access keys handed out by STS and when each expires.

    Args:
        session_seconds: if set, sessions handed out through the proxy last at most this
            long: the answer's ``Expiration`` is rewritten to now + ``session_seconds``
            (a scaled-down stand-in for a 15-minute to 12-hour session).
        clock: seconds since the epoch, like AWS's own clock (``time.time``).
    """

    def __init__(
        self, session_seconds: float | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        if session_seconds is not None and not session_seconds > 0:
            raise ValueError(f"session_seconds must be positive (or None), not {session_seconds!r}")
        self.session_seconds = session_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self.granted = 0

    def expired(self, request: Request) -> bool:
        """Whether ``request`` is signed with a key whose session has ended."""
        key = access_key_of(request)
        if key is None:
            return False
        with self._lock:
            expiry = self._expiry.get(key)
        return expiry is not None and self._clock() >= expiry

    def expire_all(self) -> int:
        """End every session handed out so far (a revoked role, a skewed clock); returns how
        many were still valid."""
        now = self._clock()
        with self._lock:
            valid = [key for key, expiry in self._expiry.items() if expiry > now]
            for key in valid:
                self._expiry[key] = now
        return len(valid)

    def observe(self, operation: Operation, response: Response) -> Response:
        """Note the credentials an STS answer hands out; returns the answer to pass on
        (with ``Expiration`` shortened when :attr:`session_seconds` says so)."""
        if operation.service != "sts" or response.status != 200 or not response.body:
            return response
        if (response.header("content-encoding") or "identity").lower() != "identity":
            return response  # compressed: moto never does this
        body = response.body
        if body.lstrip().startswith(b"{"):
            return self._observe_json(response)
        section = _XML_CREDENTIALS.search(body)
        if section is None:
            return response
        key = _XML_ACCESS_KEY.search(section.group(1))
        expiration = _XML_EXPIRATION.search(section.group(1))
        if key is None or expiration is None:
            return response
        granted = _parse_time(expiration.group(1).decode("ascii", errors="replace"))
        if granted is None:
            return response
        expiry = self._record(key.group(1).decode("ascii", errors="replace"), granted)
        if expiry == granted:
            return response
        start = section.start(1) + expiration.start(1)
        end = section.start(1) + expiration.end(1)
        new_body = body[:start] + _format_time(expiry).encode() + body[end:]
        return self._with_body(response, new_body)

    def _observe_json(self, response: Response) -> Response:
        try:
            document: Any = json.loads(response.body)
        except ValueError:
            return response
        if not isinstance(document, dict):
            return response
        result = document.get("Credentials")
        if not isinstance(result, dict):
            return response
        key, expiration = result.get("AccessKeyId"), result.get("Expiration")
        if not isinstance(key, str):
            return response
        if isinstance(expiration, int | float):
            granted: float | None = float(expiration)
        elif isinstance(expiration, str):
            granted = _parse_time(expiration)
        else:
            granted = None
        if granted is None:
            return response
        expiry = self._record(key, granted)
        if expiry == granted:
            return response
        result["Expiration"] = (
            expiry if isinstance(expiration, int | float) else _format_time(expiry)
        )
        return self._with_body(response, json.dumps(document).encode())

    def _record(self, key: str, granted: float) -> float:
        """Note ``key``'s session; returns its expiry (shortened if asked)."""
        now = self._clock()
        expiry = granted
        if self.session_seconds is not None:
            expiry = min(granted, float(int(now + self.session_seconds)))
        with self._lock:
            self.granted += 1
            self._expiry[key] = expiry
            stale = [k for k, e in self._expiry.items() if e < now - _FORGET_AFTER_S]
            for old in stale:
                del self._expiry[old]
        return expiry

    @staticmethod
    def _with_body(response: Response, body: bytes) -> Response:
        return Response(response.status, response.headers, body, response.reason, response.reusable)
