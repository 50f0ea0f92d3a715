"""Later checks of shared writes (queue and filter policies), without AWS."""

from __future__ import annotations

import logging
import time

import pytest
from kombu_helpers import wait_until

from sqsbus.errors import AccessDeniedError, QueueDoesNotExist, TransientError
from sqsbus.routing.rechecks import Rechecks


def test_a_check_runs_at_each_delay_and_then_the_thread_ends() -> None:
    rechecks = Rechecks(after=(0.05, 0.1, 0.15))
    runs: list[float] = []
    started = time.monotonic()
    rechecks.schedule("k", lambda: runs.append(time.monotonic() - started))
    assert wait_until(lambda: len(runs) == 3, 5)
    assert runs == sorted(runs) and runs[0] >= 0.05
    assert wait_until(lambda: rechecks.pending() == 0 and not rechecks.running(), 5)
    time.sleep(0.2)
    assert len(runs) == 3


def test_a_key_scheduled_again_starts_over_with_the_new_check() -> None:
    rechecks = Rechecks(after=(0.05, 1.0, 1.05))
    runs: list[str] = []
    rechecks.schedule("k", lambda: runs.append("first"))
    assert wait_until(lambda: runs == ["first"], 5)
    rechecks.schedule("k", lambda: runs.append("second"))
    assert wait_until(lambda: rechecks.pending() == 0, 10)
    assert runs == ["first", "second", "second", "second"]


def test_cancelled_and_cleared_checks_do_not_run_and_later_ones_do() -> None:
    rechecks = Rechecks(after=(0.2,))
    runs: list[str] = []
    rechecks.schedule("cancelled", lambda: runs.append("cancelled"))
    rechecks.schedule("cleared", lambda: runs.append("cleared"))
    rechecks.cancel("cancelled")
    rechecks.clear()
    assert rechecks.pending() == 0
    time.sleep(0.4)
    assert runs == []
    rechecks.schedule("later", lambda: runs.append("later"))
    assert wait_until(lambda: runs == ["later"], 5)


def test_a_failing_check_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rechecks = Rechecks(after=(0.05, 0.1))
    runs: list[str] = []

    def throttled() -> None:
        raise TransientError("SQS throttled the read")

    def deleted() -> None:
        raise QueueDoesNotExist("gone")

    def warnings() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.WARNING and "throttled the read" in r.getMessage()
        ]

    with caplog.at_level(logging.WARNING, logger="sqsbus"):
        rechecks.schedule("throttled", throttled)
        rechecks.schedule("deleted", deleted)
        rechecks.schedule("fine", lambda: runs.append("fine"))
        assert wait_until(lambda: bool(warnings()) and not rechecks.running(), 5)
    assert runs == ["fine", "fine"]
    # Throttled twice: only the last check's failure is a warning (no check comes after).
    assert warnings() == ["could not check a queue's or subscription's policy again: "
                          "SQS throttled the read"]  # fmt: skip


def test_a_check_failing_for_good_is_a_warning_every_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rechecks = Rechecks(after=(0.05, 0.1))

    def refused() -> None:
        raise AccessDeniedError("not allowed to read the queue's policy")

    def refusals() -> int:
        return len([r for r in caplog.records if "not allowed" in r.getMessage()])

    with caplog.at_level(logging.WARNING, logger="sqsbus"):
        rechecks.schedule("refused", refused)
        assert wait_until(lambda: refusals() == 2 and not rechecks.running(), 5)
    assert refusals() == 2
