"""``sqsbus demo``: a real run as a subprocess (endpoint, Celery worker, producer), and its plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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
