"""Unit tests of ``sqsbus.assumed_role``: when assumed-role credentials are renewed.

Pure: STS is a function handing out numbered grants, time is a settable clock.
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any

import pytest

from sqsbus.assumed_role import (
    AssumedRoleCredentials,
    Grant,
    retry_after_renewal,
    sts_refresh_margin,
)
from sqsbus.errors import TransientError
from sqsbus.redact import scrub

START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class FakeSTS:
    """Hands out grants valid for ``lifetime`` seconds (whatever was asked), or fails."""

    def __init__(self, clock: Clock, lifetime: float) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0
        self.failure: Exception | None = None

    def __call__(self) -> Grant:
        if self.failure is not None:
            raise self.failure
        self.calls += 1
        expiry = datetime.datetime.fromtimestamp(self.clock.now + self.lifetime, datetime.UTC)
        return Grant(
            access_key=f"ASIAKEY{self.calls}",
            secret_key=f"secret-of-grant-{self.calls}",
            token=f"token-of-grant-{self.calls}",
            expiry=expiry,
        )


def make(lifetime: float, buffer_time: int = 0) -> tuple[AssumedRoleCredentials, FakeSTS, Clock]:
    clock = Clock()
    sts = FakeSTS(clock, lifetime)
    return AssumedRoleCredentials(sts, buffer_time=buffer_time, clock=clock), sts, clock


def key(credentials: AssumedRoleCredentials) -> str:
    return str(credentials.get_frozen_credentials().access_key)


# -- the margin -----------------------------------------------------------------


def test_buffer_time_is_used_when_set() -> None:
    assert sts_refresh_margin(900, 120) == 120
    assert sts_refresh_margin(3600, 1) == 1


@pytest.mark.parametrize(("lifetime", "margin"), [(900, 90), (3600, 360), (43_200, 4_320)])
def test_default_margin_is_a_tenth_of_the_session(lifetime: int, margin: int) -> None:
    assert sts_refresh_margin(lifetime, 0) == margin


def test_default_margin_is_at_least_30_seconds() -> None:
    assert sts_refresh_margin(100, 0) == 30


@pytest.mark.parametrize(("lifetime", "buffer_time"), [(20, 0), (20, 300), (60, 0), (1, 0)])
def test_a_short_grant_is_renewed_halfway_not_on_every_request(
    lifetime: float, buffer_time: int
) -> None:
    assert sts_refresh_margin(lifetime, buffer_time) == lifetime / 2


# -- renewal ahead of the granted expiry ------------------------------------------------


def test_renewal_follows_the_lifetime_granted_not_the_one_asked_for() -> None:
    credentials, sts, clock = make(lifetime=20)  # asked for 900 s, got 20 s
    assert key(credentials) == "ASIAKEY1"
    clock.now += 9.9
    for _ in range(100):
        assert key(credentials) == "ASIAKEY1"  # not renewed on every request
    clock.now += 0.1  # halfway: 10 s before expiry
    assert key(credentials) == "ASIAKEY2"
    assert (sts.calls, credentials.renewals) == (2, 1)
    clock.now += 9.9
    assert key(credentials) == "ASIAKEY2"
    assert credentials.renew_at == datetime.datetime.fromtimestamp(START + 20, datetime.UTC)


def test_a_long_grant_is_renewed_a_tenth_before_expiry() -> None:
    credentials, _, clock = make(lifetime=3600)
    clock.now += 3600 - 361
    assert key(credentials) == "ASIAKEY1"
    clock.now += 1
    assert key(credentials) == "ASIAKEY2"
    assert credentials.expiry == datetime.datetime.fromtimestamp(
        START + 3600 - 360 + 3600, datetime.UTC
    )


def test_buffer_time_sets_the_renewal_point() -> None:
    credentials, _, clock = make(lifetime=900, buffer_time=300)
    clock.now += 599
    assert key(credentials) == "ASIAKEY1"
    clock.now += 1
    assert key(credentials) == "ASIAKEY2"


def test_a_failed_early_renewal_keeps_the_valid_credentials_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    credentials, sts, clock = make(lifetime=900)  # renewed from 810 s, must by 855 s
    sts.failure = TransientError("assume role: cannot reach the endpoint")
    clock.now += 815
    with caplog.at_level(logging.WARNING, logger="sqsbus.assumed_role"):
        assert key(credentials) == "ASIAKEY1"
    assert "renewing assumed-role credentials failed" in caplog.text
    sts.failure = None
    assert key(credentials) == "ASIAKEY1"  # backing off: no STS call on every request
    assert sts.calls == 1
    clock.now += 11
    assert key(credentials) == "ASIAKEY2"


def test_a_failed_renewal_close_to_expiry_raises() -> None:
    credentials, sts, clock = make(lifetime=900)
    sts.failure = TransientError("assume role: cannot reach the endpoint")
    clock.now += 860
    with pytest.raises(TransientError, match="assume role"):
        credentials.get_frozen_credentials()


def test_threads_renewing_at_once_ask_sts_once() -> None:
    credentials, sts, clock = make(lifetime=20)
    clock.now += 16  # past the point where everyone waits for the renewal
    barrier = threading.Barrier(8)
    keys: list[str] = []

    def sign() -> None:
        barrier.wait()
        keys.append(key(credentials))

    threads = [threading.Thread(target=sign) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert keys == ["ASIAKEY2"] * 8
    assert sts.calls == 2


# -- renewal after AWS said "expired" ----------------------------------------------------


def test_rejected_credentials_are_renewed_once_for_every_thread_that_used_them() -> None:
    credentials, sts, _ = make(lifetime=900)
    used_by_other: list[str] = []
    other_signed = threading.Event()
    renewed = threading.Event()

    def other_thread() -> None:
        used_by_other.append(key(credentials))
        other_signed.set()
        renewed.wait(5)
        credentials.renew_after_rejection()  # rejected too, but already renewed by now

    thread = threading.Thread(target=other_thread)
    thread.start()
    other_signed.wait(5)
    assert key(credentials) == "ASIAKEY1"
    credentials.renew_after_rejection()
    renewed.set()
    thread.join()
    assert used_by_other == ["ASIAKEY1"]
    assert sts.calls == 2
    assert key(credentials) == "ASIAKEY2"


def expired_answer(code: str) -> tuple[Any, dict[str, Any]]:
    return (None, {"Error": {"Code": code, "Message": "expired"}})


@pytest.mark.parametrize("code", ["ExpiredToken", "ExpiredTokenException", "RequestExpired"])
def test_an_expired_answer_renews_and_retries_once_per_call(code: str) -> None:
    credentials, sts, _ = make(lifetime=900)
    key(credentials)
    request: dict[str, Any] = {"context": {}}
    assert (
        retry_after_renewal(credentials, response=expired_answer(code), request_dict=request) == 0
    )
    assert sts.calls == 2
    # The retry was rejected again (a revoked role): the caller sees the error.
    assert (
        retry_after_renewal(credentials, response=expired_answer(code), request_dict=request)
        is None
    )
    assert sts.calls == 2


@pytest.mark.parametrize("code", ["RequestThrottled", "InvalidClientTokenId", "AccessDenied"])
def test_other_answers_are_left_to_botocore(code: str) -> None:
    credentials, sts, _ = make(lifetime=900)
    request: dict[str, Any] = {"context": {}}
    assert (
        retry_after_renewal(credentials, response=expired_answer(code), request_dict=request)
        is None
    )
    assert retry_after_renewal(credentials, response=None, request_dict=request) is None
    assert sts.calls == 1


# -- secrets ------------------------------------------------------------------------------


def test_secrets_are_scrubbed_while_in_use_and_forgotten_after() -> None:
    credentials, _, clock = make(lifetime=20)
    assert scrub("secret-of-grant-1 token-of-grant-1") == "*** ***"
    for _ in range(3):
        clock.now += 10
        key(credentials)
    assert key(credentials) == "ASIAKEY4"
    assert scrub("secret-of-grant-4 secret-of-grant-3") == "*** ***"
    assert scrub("secret-of-grant-1") == "secret-of-grant-1"  # long unused: forgotten
