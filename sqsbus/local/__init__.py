"""An embedded SQS + SNS + S3 compatible endpoint for development, tests and demos.

:class:`LocalEndpoint` runs moto's server (``pip install 'sqsbus[local]'``) as a child process
on a loopback port. Its data lives only in memory: every queue, message, topic and bucket is
lost when it stops. It is single-process and far slower than AWS; keep queues shallow.
"""

from sqsbus.local.endpoint import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_REGION,
    DEFAULT_SECRET_KEY,
    MOTO_MISSING_MESSAGE,
    LocalEndpoint,
    LocalEndpointError,
    MotoNotInstalledError,
)

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_REGION",
    "DEFAULT_SECRET_KEY",
    "MOTO_MISSING_MESSAGE",
    "LocalEndpoint",
    "LocalEndpointError",
    "MotoNotInstalledError",
]
