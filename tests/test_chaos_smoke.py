"""A short run of the chaos harness (bench/chaos.py): faults and an outage, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import count, run_scenario

pytestmark = [pytest.mark.celery, pytest.mark.timeout(300)]


def test_checker_counts_lost_and_duplicated() -> None:
    assert count([1, 2, 3], [1, 1, 3, 3, 3]) == (2, 1, 3)
    assert count([], []) == (0, 0, 0)


@pytest.mark.parametrize("scenario", ["steady", "outage", "kill-worker"])
def test_short_chaos_run_loses_nothing(
    scenario: str, tmp_path: Path, aws_test_environment: None
) -> None:
    outcome = run_scenario(scenario, 300, tmp_path, outage_s=3, kill_every=0.5)
    assert outcome.published == 300
    assert (outcome.lost, outcome.delivered) == (0, 300), outcome
    if scenario == "steady":
        assert sum(outcome.faults.values()) > 0  # faults were injected
    if scenario == "outage":
        assert outcome.recovery_s is not None
    if scenario == "kill-worker":
        assert not outcome.notes.startswith("0 "), outcome.notes


def test_short_run_with_expiring_and_revoked_credentials_loses_nothing(
    tmp_path: Path, aws_test_environment: None
) -> None:
    # 4 s sessions expire about three times in the run; every 1.5 s all of them are revoked.
    outcome = run_scenario(
        "expiring-credentials", 300, tmp_path, outage_s=3, session_s=4, revoke_every=1.5
    )
    assert outcome.published == 300
    assert (outcome.lost, outcome.delivered) == (0, 300), outcome
    assert outcome.renewals is not None and outcome.expired_answers is not None
    # Requests met ExpiredToken answers (and were retried: nothing lost), and the three
    # processes (two workers, the producer) each assumed the role again, more than once.
    assert outcome.expired_answers > 0, outcome
    assert outcome.renewals >= 3 * 3, outcome
