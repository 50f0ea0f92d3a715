"""``sqsbus demo``: a real run as a subprocess (endpoint, Celery worker, producer), and its plan."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_names import series_names

from sqsbus.demo import MIN_TASKS, Plan

RUN_TIMEOUT = 240.0


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sqsbus.cli", "demo", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


@pytest.mark.integration
@pytest.mark.celery
def test_demo_runs_every_task_and_counts_requests(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = run_demo("--tasks", "60", "--json", str(out), cwd=tmp_path)
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, output

    summary: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert summary["ok"] is True, output
    assert summary["exit_status"] == 0
    assert summary["problems"] == []

    tasks = summary["tasks"]
    assert tasks["requested"] == 60
    assert tasks["completed"] == 60, output
    assert tasks["failed"] == 0
    assert tasks["unfinished"] == 0
    assert sum(tasks["mix"].values()) == 60

    # Every flaky task failed once, was retried after its countdown, then succeeded.
    retries = summary["retries"]
    assert retries["observed"] == retries["expected"] == tasks["mix"]["flaky"]
    assert retries["flaky_attempts"] == [2] * tasks["mix"]["flaky"]

    requests = summary["aws_requests"]
    assert requests["per_message"] > 0
    operations = requests["by_operation"]
    assert any("SendMessage" in name for name in operations), operations
    assert any("ReceiveMessage" in name for name in operations), operations
    assert any("DeleteMessage" in name for name in operations), operations
    assert sum(op["total"] for op in operations.values()) == requests["total"]
    # The producer's and every worker process's counts together are exactly what the
    # endpoint served.
    assert requests["worker_processes"] == 1 + summary["setup"]["concurrency"]
    assert requests["endpoint_log"] == requests["total"]

    messages = summary["messages"]
    assert messages["published"] >= 60
    assert requests["per_message"] == pytest.approx(
        requests["total"] / messages["published"], abs=1e-3
    )

    assert "tasks completed     60 / 60" in result.stdout
    assert "AWS requests per message" in result.stdout
    assert "progress: 60/60" in result.stderr  # not a terminal: plain progress lines
    assert "kept in" not in result.stderr  # the run's directory is removed on success


def test_demo_help_and_bad_arguments(tmp_path: Path) -> None:
    help_run = run_demo("--help", cwd=tmp_path)
    assert help_run.returncode == 0
    assert "--tasks N" in help_run.stdout
    assert "--json PATH" in help_run.stdout

    bad = run_demo("--tasks", "3", cwd=tmp_path)
    assert bad.returncode == 2
    assert f"must be at least {MIN_TASKS}" in bad.stderr


@pytest.mark.parametrize("tasks", [MIN_TASKS, 60, 99, 300, 1234])
def test_plan_adds_up(tasks: int) -> None:
    plan = Plan.for_tasks(tasks)
    assert plan.total == tasks
    assert min(plan.singles, plan.group, plan.chord_header, plan.flaky) >= 1


def test_plan_needs_enough_tasks() -> None:
    with pytest.raises(ValueError, match="at least"):
        Plan.for_tasks(MIN_TASKS - 1)


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive ports that are free now."""
    for _ in range(50):
        base = random.randrange(20_000, 60_000)
        probes = [socket.socket() for _ in range(count)]
        try:
            for offset, probe in enumerate(probes):
                probe.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports")


@pytest.mark.integration
@pytest.mark.celery
def test_demo_serves_every_process_s_metrics_to_prometheus(tmp_path: Path) -> None:
    concurrency = 2
    port = free_port_range(2 + concurrency)
    out = tmp_path / "out.json"
    result = run_demo(
        "--tasks",
        "60",
        "-c",
        str(concurrency),
        "--metrics",
        str(port),
        "--json",
        str(out),
        cwd=tmp_path,
    )
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, output
    summary: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))

    scraped = summary["metrics"]
    # The producer, the worker's main process and both pool processes answered.
    assert scraped["ports_answered"] == list(range(port, port + 2 + concurrency)), output
    producer, worker = scraped["producer"], scraped["worker"]
    # The producer is done: its metrics equal what sqsbus counted in it, request for request.
    assert producer["sqsbus_aws_requests_total"] == scraped["producer_requests_counted"] > 0
    assert producer["sqsbus_messages_published_total"] == summary["messages"]["by_producer"]
    # The pool processes published the retries and the chord's callback.
    assert worker["sqsbus_messages_published_total"] == summary["messages"]["by_worker"]
    assert worker["sqsbus_messages_received_total"] >= summary["messages"]["published"]
    assert worker["sqsbus_messages_acked_total"] >= 60
    assert worker["sqsbus_aws_requests_total"] > 0
    # The exporter names the series as the dashboard and the docs expect.
    samples = set(scraped["samples"])
    assert samples <= series_names(), sorted(samples - series_names())
    assert {"sqsbus_delivery_lag_seconds_bucket", "sqsbus_prefetch_depth"} <= samples
    assert f"http://127.0.0.1:{port}/metrics (producer)" in result.stdout
    assert "the producer's requests are equal to what sqsbus counted" in result.stdout


def test_demo_metrics_port_taken_or_packages_missing_fail_clearly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_demo("--metrics", str(port), cwd=tmp_path)
    assert busy.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in busy.stderr
    assert "--metrics PORT" in busy.stderr

    # Without OpenTelemetry's Prometheus exporter (blocked at import), the fix is named.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('opentelemetry.exporter'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, _Block())\n",
        encoding="utf-8",
    )
    missing = subprocess.run(
        [sys.executable, "-m", "sqsbus.cli", "demo", "--metrics"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1, missing.stderr
    assert "pip install 'sqsbus[prometheus]'" in missing.stderr
    assert "Traceback" not in missing.stderr
