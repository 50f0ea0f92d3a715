"""A Celery worker survives an endpoint outage: it reconnects and consumes again by itself."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from celery_app import AppSettings, create_app
from celery_helpers import WorkerProcess, task, wait_for

from sqsbus.local import LocalEndpoint

pytestmark = [pytest.mark.celery, pytest.mark.timeout(240)]


def test_worker_reconnects_after_the_endpoint_comes_back(
    aws_test_environment: None, tmp_path: Path
) -> None:
    first = LocalEndpoint(log_file=tmp_path / "moto-1.log").start()
    port = first.port
    (tmp_path / "results").mkdir()
    (tmp_path / "state").mkdir()
    settings = AppSettings(
        broker_url=first.broker_url(),
        queue_name_prefix=f"r{uuid.uuid4().hex[:8]}-",
        result_dir=str(tmp_path / "results"),
        state_dir=str(tmp_path / "state"),
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log", name="recovery", concurrency=1)
    second = None
    try:
        worker.start()
        app = create_app(settings)
        worker.wait_ready(app)
        assert task(app, "add").delay(1, 2).get(timeout=30) == 3
        app.close()

        first.stop()  # outage: every request now fails
        wait_for(
            "the worker to notice the outage",
            lambda: "cannot reach the endpoint" in worker.log(),
            timeout=60,
            context=worker.log_hint,
        )
        time.sleep(3)
        worker.check_alive("during the outage")

        # The endpoint comes back empty (moto keeps state in memory only).
        second = LocalEndpoint(port=port, log_file=tmp_path / "moto-2.log").start()
        app = create_app(settings)
        result = task(app, "add").delay(20, 22)
        assert result.get(timeout=90, interval=0.1) == 42, worker.log_hint()
        worker.check_alive("after the outage")
        assert "Connection to broker lost" in worker.log()
        app.close()
    finally:
        worker.stop()
        first.stop()
        if second is not None:
            second.stop()
