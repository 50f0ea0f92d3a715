"""Keep secrets out of log records, including botocore's own DEBUG output.

botocore logs request headers at DEBUG level, session tokens included.  Every
secret sqsbus handles is registered here; a log-record factory replaces it with
``***`` in records from botocore, boto3, urllib3 and sqsbus before any handler
sees them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

REDACTED: Final = "***"
#: Loggers whose records are scrubbed.
SCRUBBED_LOGGERS: Final = ("botocore", "boto3", "urllib3", "s3transfer", "sqsbus")
#: Shorter strings are not secrets worth scrubbing (and would mangle logs).
MIN_SECRET_LENGTH: Final = 8

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def register_secret(value: str | None) -> None:
    """Scrub ``value`` from log records from now on."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets.add(value)
    _install()


def forget_secret(value: str | None) -> None:
    """Stop scrubbing ``value`` (a renewed credential that no request uses any more).

    Keeps the set of secrets from growing without bound in a long-running process whose
    temporary credentials are renewed every few minutes.
    """
    if not value:
        return
    with _lock:
        _secrets.discard(value)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.startswith(SCRUBBED_LOGGERS) and _secrets:
            message = record.getMessage()
            clean = scrub(message)
            if clean != message:
                record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
