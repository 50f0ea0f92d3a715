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
