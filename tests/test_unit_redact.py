"""Unit tests of ``sqsbus.redact``: what the log-record factory scrubs, and for how long.

Pure: secrets are canaries registered by hand, credentials a stand-in for botocore's.
"""

from __future__ import annotations

import gc
import io
import logging
import sys
from collections.abc import Iterator

import pytest
from botocore.credentials import ReadOnlyCredentials

from sqsbus.redact import SigningSecrets, forget_secret, register_secret, scrub


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """What a plain ``logging.Formatter`` writes for the ``sqsbus.tests`` logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("sqsbus.tests")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def test_tracebacks_and_chained_exceptions_are_scrubbed(output: io.StringIO) -> None:
    inner, outer = "canary-CAUSE-8d2f61", "canary-EXCEPTION-5b7c03"
    register_secret(inner)
    register_secret(outer)
    try:
        try:
            raise ValueError(f"bad token {inner}")
        except ValueError as exc:
            raise RuntimeError(f"request signed with {outer} failed") from exc
    except RuntimeError:
        logging.getLogger("sqsbus.tests").exception("publish failed")
    text = output.getvalue()
    assert inner not in text
    assert outer not in text
    assert "ValueError: bad token ***" in text
    assert "direct cause of the following exception" in text
    assert "RuntimeError: request signed with *** failed" in text


def test_stack_info_is_scrubbed(output: io.StringIO) -> None:
    register_secret("canary-STACK-0e94aa")
    # The stack shows this line's source text, canary included.
    logging.getLogger("sqsbus.tests").warning("here", stack_info=True)  # canary-STACK-0e94aa
    text = output.getvalue()
    assert "canary-STACK-0e94aa" not in text
    assert "Stack (most recent call last)" in text
    assert "# ***" in text


def test_clean_tracebacks_are_left_to_the_formatter() -> None:
    register_secret("canary-UNUSED-44c1d9")
    try:
        raise ValueError("nothing secret")
    except ValueError:
        record = logging.getLogger("sqsbus.tests").makeRecord(
            "sqsbus.tests", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    assert record.exc_text is None


class Credentials:
    """Stands for botocore credentials; ``frozen`` is what they sign with now."""

    def __init__(self, token: str) -> None:
        self.frozen = ReadOnlyCredentials("ASIAKEY", f"{token}-key", token, None)

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return self.frozen

    def refresh(self, token: str) -> None:
        self.frozen = ReadOnlyCredentials("ASIAKEY", f"{token}-key", token, None)


def test_refreshed_credentials_stay_scrubbed_while_in_use_and_are_released_after() -> None:
    tokens = [f"canary-SIGNING-{n}-6f3a" for n in range(4)]
    credentials = Credentials(tokens[0])
    before_sign = SigningSecrets(credentials)
    before_sign()
    assert scrub(f"{tokens[0]} {tokens[0]}-key") == "*** ***"
    for token in tokens[1:]:
        credentials.refresh(token)
        before_sign(request=None, operation_name="SendMessage")
    # The credentials in use and the ones before (a request signed just before the refresh
    # may still be logged) are scrubbed; older ones are not kept for ever.
    assert scrub(f"{tokens[3]} {tokens[2]} {tokens[2]}-key") == "*** *** ***"
    assert scrub(f"{tokens[0]} {tokens[1]}") == f"{tokens[0]} {tokens[1]}"
    del before_sign
    gc.collect()
    assert scrub(tokens[3]) == tokens[3]  # its client is gone


def test_a_token_in_use_by_one_client_stays_scrubbed_when_another_refreshes() -> None:
    shared, renewed = "canary-SHARED-TOKEN-91be", "canary-RENEWED-TOKEN-d07c"
    first, second = Credentials(shared), Credentials(shared)  # e.g. one instance profile
    sqs, s3 = SigningSecrets(first), SigningSecrets(second)
    sqs()
    s3()
    forget_secret(shared)  # forgetting a registered secret does not drop a signing one
    for token in ("canary-A-TOKEN-1234", "canary-B-TOKEN-5678", renewed):
        first.refresh(token)
        sqs()
    assert scrub(shared) == "***"  # s3 still signs with it
    second.refresh(renewed)
    s3()
    second.refresh("canary-C-TOKEN-9abc")
    s3()
    assert scrub(shared) == shared
    assert scrub(renewed) == "***"


def test_records_made_without_a_name_still_work_while_secrets_are_scrubbed() -> None:
    """``logging.makeLogRecord`` (used by log shippers and tests) makes nameless records."""
    register_secret("a-secret-for-nameless-records")
    try:
        record = logging.makeLogRecord({"msg": "hello"})
        assert record.getMessage() == "hello"
    finally:
        forget_secret("a-secret-for-nameless-records")
