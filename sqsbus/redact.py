"""Keep secrets out of log records, including botocore's own DEBUG output.

botocore logs request headers at DEBUG level, session tokens included.  Every
secret sqsbus handles is registered here, and every credential that signs a
request of an sqsbus client is held here by :class:`SigningSecrets`, refreshed
ones included.  A log-record factory replaces them with ``***`` in records from
botocore, boto3, urllib3, s3transfer and sqsbus before any handler sees them: in
the message, in the traceback of ``exc_info`` (chained exceptions included) and in
``stack_info``.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter, deque
from typing import Any, Final

from sqsbus.forks import reset_in_child

REDACTED: Final = "***"
#: Loggers whose records are scrubbed.
SCRUBBED_LOGGERS: Final = (
    "botocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "sqsbus",
    "kombu",
    "celery",
)
#: Shorter strings are not secrets worth scrubbing (and would mangle logs).
MIN_SECRET_LENGTH: Final = 8

_secrets: set[str] = set()
#: Secrets of signing credentials, counted per :class:`SigningSecrets` holding them.
_held: Counter[str] = Counter()
#: Holds given up by collected :class:`SigningSecrets`, released at the next change.
_released: deque[tuple[str, ...]] = deque()
#: Every secret to scrub, longest first; replaced (never mutated) under ``_lock``.
_active: tuple[str, ...] = ()
_lock = threading.Lock()
_installed = False
#: Formats tracebacks as ``logging.Formatter`` does by default.
_FORMATTER: Final = logging.Formatter()


def register_secret(value: str | None) -> None:
    """Scrub ``value`` from log records from now on."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value not in _secrets:
            _secrets.add(value)
            _changed()
    _install()


def forget_secret(value: str | None) -> None:
    """Stop scrubbing ``value`` (a renewed credential that no request uses any more).

    Keeps the set of secrets from growing without bound in a long-running process whose
    temporary credentials are renewed every few minutes. A secret still held by
    :class:`SigningSecrets` stays scrubbed until released there too.
    """
    if not value:
        return
    with _lock:
        if value in _secrets:
            _secrets.discard(value)
            _changed()


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _active:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class SigningSecrets:
    """botocore ``before-sign`` handler: scrubs the secret key and session token of the
    credentials signing a client's requests, whichever provider refreshes them.

    Called with no argument, it holds the current credentials at once. The credentials
    this handler saw last and the ones before (a request signed just before a refresh may
    still be logged) stay held; older ones are released, and so are both when the handler
    is collected with its client. Unchanged credentials cost one comparison per request.
    """

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials
        self._current: Any = None
        #: The secrets held, one tuple per credentials seen, oldest first (two at most).
        self._kept: list[tuple[str, ...]] = []
        weakref.finalize(self, _release_later, self._kept).atexit = False

    def __call__(self, **_: Any) -> None:
        frozen = self._credentials.get_frozen_credentials()
        if frozen != self._current:
            self._hold(frozen)

    def _hold(self, frozen: Any) -> None:
        secrets = tuple(
            s for s in (frozen.secret_key, frozen.token) if s and len(s) >= MIN_SECRET_LENGTH
        )
        with _lock:
            self._current = frozen
            if secrets in self._kept:  # signed by a thread that read them before a refresh
                return
            _held.update(secrets)
            self._kept.append(secrets)
            if len(self._kept) > 2:
                _release(self._kept.pop(0))
            _changed()
        _install()


def _release(secrets: tuple[str, ...]) -> None:
    """Give up one hold of ``secrets`` (the caller holds ``_lock``)."""
    _held.subtract(secrets)
    for secret in secrets:
        if _held[secret] <= 0:
            del _held[secret]


def _release_later(kept: list[tuple[str, ...]]) -> None:
    """Finalizer of :class:`SigningSecrets`: may run inside a locked block of this very
    thread (garbage collection), so it only queues the release if the lock is taken."""
    _released.extend(kept)
    if _lock.acquire(blocking=False):
        try:
            _changed()
        finally:
            _lock.release()


def _changed() -> None:
    """Apply queued releases and rebuild the scrubbed tuple (the caller holds ``_lock``)."""
    global _active
    while _released:
        _release(_released.popleft())
    _active = tuple(sorted(_secrets | _held.keys(), key=len, reverse=True))


def _scrub_record(record: logging.LogRecord) -> None:
    message = record.getMessage()
    clean = scrub(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        # What a Formatter would print, chained exceptions included; set only when it
        # differs, so a formatter of its own still formats clean tracebacks its way.
        text = _FORMATTER.formatException(record.exc_info)
        clean = scrub(text)
        if clean != text:
            record.exc_text = clean
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        # logging.makeLogRecord() makes records without a name.
        if _active and isinstance(record.name, str) and record.name.startswith(SCRUBBED_LOGGERS):
            _scrub_record(record)
        return record

    logging.setLogRecordFactory(factory)


def _after_fork_in_child() -> None:
    """A thread of the parent may have held the lock at fork: give the child a new one."""
    global _lock
    _lock = threading.Lock()


reset_in_child(_after_fork_in_child)
