"""Tools for tests, benchmarks and the demo; the runtime never imports this package.

* :mod:`sqsbus.testing.proxy`: :class:`~sqsbus.testing.proxy.FaultProxy`, a fault-injecting
  HTTP proxy in front of a local endpoint (``python -m sqsbus.testing.proxy``), with its
  HTTP framing (``_http``), AWS error shapes (``_aws_wire``) and session checks
  (``_sessions``).
* :mod:`sqsbus.testing.children`: waiting until a child process (a server, a worker) is ready.
* :mod:`sqsbus.testing.worker`: :class:`~sqsbus.testing.worker.CeleryWorker`, a
  ``celery worker`` child process.

Nothing here is imported by this module: import the one you need.
"""
