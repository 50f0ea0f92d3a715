"""The benchmark harness end to end, in its tiny ``--smoke`` mode (numbers mean nothing here).

Runs ``python -m bench --smoke`` (both transports, every scenario, each on a fresh embedded
endpoint) and checks that the JSON it writes has every figure for sqsbus and for Kombu's SQS
transport, and that the requests sqsbus made were counted, by the endpoint and by sqsbus.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from bench.common import ACCESS_KEY, REGION, SECRET_KEY, open_endpoint

pytest.importorskip("moto.server")
pytest.importorskip("celery")

pytestmark = [pytest.mark.integration, pytest.mark.celery]

ROOT = Path(__file__).resolve().parents[1]
#: Kombu's SQS transport consumes in a Celery worker through pycurl; without it the harness
#: reports that figure as n/a, with the reason.
HAVE_PYCURL = importlib.util.find_spec("pycurl") is not None


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, f"bench --smoke failed:\n{completed.stdout}{completed.stderr}"
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def test_every_figure_has_both_transports(report: dict[str, Any]) -> None:
    from bench.figures import FIGURES

    rows = {row["id"]: row for row in report["figures"]}
    assert sorted(rows) == sorted(figure.id for figure in FIGURES)
    for figure_id, row in rows.items():
        if not HAVE_PYCURL and figure_id.startswith("celery_") and row["kombu"] is None:
            assert "pycurl" in row["notes"]["kombu"]
            continue
        for transport in ("sqsbus", "kombu"):
            value = row[transport]
            assert isinstance(value, int | float), f"{figure_id}: no {transport} value ({row})"
        assert row["ratio"] is not None, figure_id
    assert not report["failed"]


def test_endpoint_ceiling_is_measured(report: dict[str, Any]) -> None:
    ceiling = {row["id"]: row for row in report["ceiling"]}
    assert set(ceiling) == {
        "send_batch_msgs_per_s",
        "send_batch_concurrent_msgs_per_s",
        "receive_delete_msgs_per_s_1q",
        "receive_delete_msgs_per_s_nq",
        "receive_delete_msgs_per_s_nq_concurrent",
    }
    assert all(row["msgs_per_s"] > 0 for row in ceiling.values())


def test_sqsbus_requests_are_counted(report: dict[str, Any]) -> None:
    checks = {row["run"]: row for row in report["cross_check"]}
    assert {"e2e", "publish/1", "publish/8", "consume/1", "consume/10", "celery"} <= set(checks)
    for run, row in checks.items():
        assert row["endpoint"] > 0, run
        if row["sqsbus"] is not None:
            assert row["sqsbus"] > 0, run
    for run in ("e2e", "publish/8", "consume/10", "celery"):
        assert checks[run]["sqsbus"] is not None and checks[run]["sqsbus"] > 0, run
    e2e = report["runs"]["e2e"]["sqsbus"]["details"]["measured"]
    assert e2e["sqsbus_requests"] > 0 and e2e["transport_requests"] > 0
    assert sum(e2e["sqsbus_by_operation"].values()) == e2e["sqsbus_requests"]


def test_metrics_overhead_is_measured_in_every_mode(report: dict[str, Any]) -> None:
    """The metrics scenario consumed in each mode; the SDK recorded every ack."""
    rows = {row["mode"]: row for row in report["metrics_overhead"]}
    assert set(rows) == {"off", "api", "sdk", "sdk_1s"}
    assert all(row["median"] > 0 for row in rows.values())
    assert rows["off"]["ratio"] == 1.0
    run = report["runs"]["metrics"]["sqsbus"]
    for mode in ("sdk", "sdk_1s"):
        [sdk] = run["details"]["child_reports"][mode]
        assert sdk["recorded_acked"] == run["details"]["messages"]
        assert sdk["collect_ms"] > 0
    assert "kombu" not in report["runs"]["metrics"]


def test_latency_option_puts_a_delaying_proxy_in_front_of_the_endpoint(tmp_path: Path) -> None:
    """``--latency-ms``: every request reaches the endpoint (and its count) through a proxy
    that holds it at least that long."""
    with open_endpoint("moto", tmp_path, latency_ms=200) as endpoint:
        client = boto3.client(
            "sqs",
            endpoint_url=endpoint.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        before = endpoint.log.poll()
        started = time.monotonic()
        client.list_queues()
        elapsed = time.monotonic() - started
        time.sleep(0.2)  # the endpoint logs a request just after answering it
        assert endpoint.log.poll() == before + 1
    assert elapsed >= 0.2
