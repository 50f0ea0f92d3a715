"""``sqsbus demo``: real Celery tasks through sqsbus on the embedded SQS endpoint.

The demo starts the embedded endpoint (:class:`sqsbus.local.LocalEndpoint`), starts a real
Celery worker on :mod:`sqsbus.demo.app` as a subprocess, and then acts as the producer: it
publishes single tasks, a group, a chord (a header plus a callback summing it) and ``flaky``
tasks that fail once and are retried after a countdown, showing progress while it collects and
checks every result from Celery's filesystem result backend. It then stops the worker with
SIGTERM (warm shutdown) and prints a summary, including the AWS requests made per message
as counted by sqsbus itself (:data:`sqsbus.aws.GLOBAL_STATS`) in the producer and in every
worker process, cross-checked against the endpoint's own request log.

Exit status: 0 when every task completed with the expected result, 1 when anything failed or
timed out, 130 when interrupted. The worker and the endpoint are always stopped.

Modules: ``command`` (options), ``plan`` (the task mix), ``runner`` (one run, start to stop),
``producer`` (publishing, settling results), ``progress``, ``report`` (the summary),
``settings`` (what producer and worker share), ``app`` and ``stats`` (the worker's side:
the Celery app, its tasks and per-process counts). Importing this package does not import
Celery; :func:`run` does.
"""

from sqsbus.demo.command import build_parser, main
from sqsbus.demo.plan import MIN_TASKS, Plan
from sqsbus.demo.runner import DemoFailed, run

__all__ = ["MIN_TASKS", "DemoFailed", "Plan", "build_parser", "main", "run"]
