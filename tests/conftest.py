"""Shared test fixtures.

* Every test runs with a sanitised AWS environment: all ``AWS_*`` variables removed, dummy
  ``testing`` credentials, region ``us-east-1``, and no config or credentials files, so nothing
  can reach a real account. ``SQSBUS_BROKER_URL``/``CELERY_BROKER_URL`` are removed and
  ``SQSBUS_STATE_DIR`` is a temp dir, so the ``sqsbus`` commands see no broker of the developer.
* ``endpoint``: one embedded SQS + SNS + S3 endpoint (moto) for the whole session. Use
  ``endpoint.url`` for boto3 and ``endpoint.broker_url()`` for Kombu/Celery. Its state is shared
  by all tests, so name queues, topics and buckets with ``prefix``.
* ``prefix``: a unique name prefix per test, like ``t1a2b3c4d-``.
* ``authenticating_endpoint``: a second endpoint, per module, that checks signatures (IAM).
* ``sqs_client``: a plain boto3 SQS client on the endpoint, for assertions.

Tests that use ``endpoint`` (directly or through another fixture) are marked ``integration``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest

from sqsbus.expiry import EXIT_CLEANUP
from sqsbus.local import DEFAULT_ACCESS_KEY, DEFAULT_REGION, DEFAULT_SECRET_KEY, LocalEndpoint

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@pytest.fixture(scope="session", autouse=True)
def aws_test_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Replace the AWS environment with dummy credentials for the whole session."""
    no_config = tmp_path_factory.mktemp("aws-config")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        patch.setenv("AWS_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", DEFAULT_SECRET_KEY)
        patch.setenv("AWS_DEFAULT_REGION", DEFAULT_REGION)
        # Files that don't exist: ~/.aws must not supply profiles, regions or endpoints.
        patch.setenv("AWS_CONFIG_FILE", str(no_config / "config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(no_config / "credentials"))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        # sqsbus commands: no broker from the developer's environment, no recorded endpoint.
        for name in ("SQSBUS_BROKER_URL", "CELERY_BROKER_URL"):
            patch.delenv(name, raising=False)
        patch.setenv("SQSBUS_STATE_DIR", str(tmp_path_factory.mktemp("sqsbus-state")))
        # moto's default, pinned: PurgeQueue once per queue per minute, as on AWS.
        patch.setenv("MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR", "true")
        yield


@pytest.fixture(scope="session")
def endpoint(
    aws_test_environment: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalEndpoint]:
    """One embedded endpoint for the session; moto's request log goes to a temp file.

    Its first start in a fresh virtualenv (the version matrix's, made by uv without
    bytecode) compiles moto while other workers keep the machine busy: it may take long."""
    log_file = tmp_path_factory.mktemp("endpoint") / "moto.log"
    with LocalEndpoint(log_file=log_file, startup_timeout=120) as started:
        yield started
        # What the interpreter's exit would do for connections the tests left open (Celery
        # apps' pools): now, while the endpoint still answers.
        EXIT_CLEANUP.run()


@pytest.fixture(scope="module")
def authenticating_endpoint(
    aws_test_environment: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalEndpoint]:
    """A second endpoint, per test module, that checks request signatures like AWS (moto's
    IAM authentication): its first two requests are free (to create an IAM user and key),
    every later one must be signed by a known key."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "2")
        log = tmp_path_factory.mktemp("auth-endpoint") / "moto.log"
        with LocalEndpoint(log_file=log) as started:
            patch.undo()
            yield started


@pytest.fixture
def prefix() -> str:
    """A queue/topic/bucket name prefix unique to this test, e.g. ``t1a2b3c4d-``."""
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture(scope="session")
def sqs_client(endpoint: LocalEndpoint) -> SQSClient:
    """A plain boto3 SQS client on the session endpoint, for test assertions."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint.url,
        region_name=DEFAULT_REGION,
        aws_access_key_id=DEFAULT_ACCESS_KEY,
        aws_secret_access_key=DEFAULT_SECRET_KEY,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the embedded endpoint as ``integration``."""
    for item in items:
        if "endpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
