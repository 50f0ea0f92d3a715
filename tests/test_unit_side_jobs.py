"""SideJobs: slow jobs run in order on their own thread; a failure does not stop the next."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from sqsbus.engine.side_jobs import SideJobs


def test_jobs_run_in_order_off_the_submitting_thread_and_drain_waits_for_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = SideJobs("test-side-jobs")
    ran: list[tuple[int, str]] = []
    release = threading.Event()

    def job(number: int) -> None:
        release.wait(5)
        ran.append((number, threading.current_thread().name))

    def failing() -> None:
        raise RuntimeError("boom")

    started = time.monotonic()
    jobs.submit(lambda: job(1))
    jobs.submit(failing)
    jobs.submit(lambda: job(2))
    assert time.monotonic() - started < 1  # submitting never waits for a job
    assert not jobs.drain(timeout=0.1)
    release.set()
    with caplog.at_level(logging.ERROR, logger="sqsbus"):
        assert jobs.drain(timeout=5)
    assert ran == [(1, "test-side-jobs"), (2, "test-side-jobs")]
    assert "a background job of sqsbus failed" in caplog.text
