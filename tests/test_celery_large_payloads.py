"""Celery tasks with large arguments, through S3: a real worker with ``large_payload_bucket``.

The client publishes tasks whose arguments are far over SQS's 1 MiB limit; the worker
receives them whole (it returns their length and hash), and every S3 object is gone once
the task messages are acknowledged.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import boto3
import pytest
from celery_app import AppSettings, create_app
from celery_helpers import WorkerProcess, task, wait_for
from kombu_helpers import queue_counts

from sqsbus.local import DEFAULT_ACCESS_KEY, DEFAULT_REGION, DEFAULT_SECRET_KEY, LocalEndpoint

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = [pytest.mark.celery, pytest.mark.timeout(180)]

RESULT_TIMEOUT: Final = 60.0
MIB: Final = 1_048_576


class Worker:
    """A client app and a worker that share a large-payload bucket."""

    def __init__(self, app: Any, worker: WorkerProcess, settings: AppSettings, s3: Any) -> None:
        self.app = app
        self.worker = worker
        self.settings = settings
        self.s3 = s3

    @property
    def bucket(self) -> str:
        return str(self.settings.transport_options["large_payload_bucket"])

    def objects(self) -> int:
        return int(self.s3.list_objects_v2(Bucket=self.bucket).get("KeyCount", 0))


@pytest.fixture(scope="module")
def large(endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    base = tmp_path_factory.mktemp("celery-large")
    (base / "results").mkdir()
    (base / "state").mkdir()
    prefix = f"c{uuid.uuid4().hex[:8]}-"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        region_name=DEFAULT_REGION,
        aws_access_key_id=DEFAULT_ACCESS_KEY,
        aws_secret_access_key=DEFAULT_SECRET_KEY,
    )
    bucket = f"{prefix}payloads"
    s3.create_bucket(Bucket=bucket)
    settings = AppSettings(
        broker_url=endpoint.broker_url(),
        queue_name_prefix=prefix,
        result_dir=str(base / "results"),
        state_dir=str(base / "state"),
        prefetch_multiplier=1,
        transport_options={"large_payload_bucket": bucket},
    )
    app = create_app(settings)
    worker = WorkerProcess(settings, base / "worker.log", name="large", concurrency=1)
    try:
        worker.start()
        worker.wait_ready(app)
        yield Worker(app, worker, settings, s3)
    finally:
        worker.stop()
        app.close()
        print(worker.log_hint())


@pytest.mark.parametrize("mebibytes", [2, 20])
def test_task_with_a_large_argument_gets_it_whole_and_s3_is_cleaned_up(
    large: Worker, sqs_client: SQSClient, mebibytes: int
) -> None:
    chunk = uuid.uuid4().hex
    data = (chunk * (mebibytes * MIB // len(chunk) + 1))[: mebibytes * MIB]

    result = task(large.app, "digest").delay(data)

    large.worker.check_alive(f"running a task with a {mebibytes} MiB argument")
    answer = result.get(timeout=RESULT_TIMEOUT, interval=0.05)
    assert answer == {"length": len(data), "sha256": hashlib.sha256(data.encode()).hexdigest()}
    queue = large.settings.queue_name_prefix + "celery"
    wait_for(
        "the task message and its S3 object to be deleted",
        lambda: queue_counts(sqs_client, queue) == (0, 0) and large.objects() == 0,
        10.0,
        context=lambda: f"; queue {queue_counts(sqs_client, queue)}, objects {large.objects()}",
    )
    assert " ERROR" not in large.worker.log(), large.worker.log_hint()
