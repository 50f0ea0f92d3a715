"""The one backoff helper (:mod:`sqsbus.backoff`): bounds, growth, cap, jitter, attempts."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sqsbus.backoff import POLICY_WRITE_RETRY, RECEIVE_RETRY, SQS_BATCH_RETRY, Backoff


def test_pauses_double_from_the_first_up_to_the_cap() -> None:
    policy = Backoff(first=0.2, cap=5.0, attempts=10)
    assert [policy.ceiling(n) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_huge_failure_counts_stay_at_the_cap() -> None:
    policy = Backoff(first=0.5, cap=30.0, attempts=3)
    assert policy.ceiling(10_000) == 30.0
    assert 15.0 <= policy.delay(10**9) <= 30.0


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 1.0])
def test_each_pause_is_drawn_from_the_upper_share_of_its_ceiling(jitter: float) -> None:
    policy = Backoff(first=0.1, cap=2.0, attempts=6, jitter=jitter)
    rng = random.Random(7)
    for failures in range(1, 8):
        ceiling = policy.ceiling(failures)
        pauses = [policy.delay(failures, rng) for _ in range(200)]
        assert all(ceiling * (1 - jitter) <= pause <= ceiling for pause in pauses)
        if jitter:  # really random: spread over most of the range
            assert max(pauses) - min(pauses) > 0.8 * jitter * ceiling
        else:
            assert set(pauses) == {ceiling}


def test_pauses_grow_with_failures_even_with_jitter() -> None:
    policy = Backoff(first=0.1, cap=100.0, attempts=10)  # half jitter: ranges do not overlap
    rng = random.Random(1)
    pauses = [policy.delay(n, rng) for n in range(1, 9)]
    assert pauses == sorted(pauses)


def test_the_attempt_count_includes_the_first_attempt() -> None:
    policy = Backoff(first=1.0, cap=1.0, attempts=3)
    assert [policy.exhausted(n) for n in range(0, 5)] == [False, False, False, True, True]


@pytest.mark.parametrize(
    "arguments",
    [
        {"first": 0.0, "cap": 1.0, "attempts": 1},
        {"first": 2.0, "cap": 1.0, "attempts": 1},
        {"first": 1.0, "cap": 1.0, "attempts": 0},
        {"first": 1.0, "cap": 1.0, "attempts": 1, "jitter": 1.5},
        {"first": 1.0, "cap": 1.0, "attempts": 1, "jitter": -0.1},
    ],
)
def test_nonsense_policies_are_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Backoff(**arguments)


def test_a_pause_follows_a_failure() -> None:
    with pytest.raises(ValueError):
        SQS_BATCH_RETRY.delay(0)


def test_the_policies_of_sqsbus() -> None:
    """The numbers each retry loop used before the policies moved here."""
    assert (SQS_BATCH_RETRY.attempts, SQS_BATCH_RETRY.ceiling(1), SQS_BATCH_RETRY.cap) == (
        5,
        0.2,
        5,
    )
    assert (RECEIVE_RETRY.attempts, RECEIVE_RETRY.ceiling(1), RECEIVE_RETRY.cap) == (3, 1.0, 10)
    assert POLICY_WRITE_RETRY.attempts == 8
    assert [POLICY_WRITE_RETRY.ceiling(n) for n in (1, 2, 5, 6)] == [0.05, 0.1, 0.8, 1.0]
