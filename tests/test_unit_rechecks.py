"""Later checks of shared writes (queue and filter policies), without AWS."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from kombu_helpers import wait_until

from sqsbus.errors import QueueDoesNotExist, TransientError
from sqsbus.routing.rechecks import Rechecks


def recheck_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sqsbus-rechecks" and t.is_alive()]


def test_a_check_runs_at_each_delay_and_then_the_thread_ends() -> None:
    rechecks = Rechecks(after=(0.05, 0.1, 0.15))
    runs: list[float] = []
    started = time.monotonic()
    rechecks.schedule("k", lambda: runs.append(time.monotonic() - started))
    assert wait_until(lambda: len(runs) == 3, 5)
    assert runs == sorted(runs) and runs[0] >= 0.05
    assert wait_until(lambda: rechecks.pending() == 0 and not recheck_threads(), 5)
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

    with caplog.at_level(logging.WARNING, logger="sqsbus"):
        rechecks.schedule("throttled", throttled)
        rechecks.schedule("deleted", deleted)
        rechecks.schedule("fine", lambda: runs.append("fine"))
        assert wait_until(lambda: rechecks.pending() == 0, 5)
    assert runs == ["fine", "fine"]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["could not check a queue's or subscription's policy again: "
                        "SQS throttled the read"] * 2  # fmt: skip
