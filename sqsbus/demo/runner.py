"""One demo run: the endpoint, the Celery worker and the producer, started, checked, stopped.

:func:`run` starts the embedded endpoint (:class:`sqsbus.local.LocalEndpoint`) and a worker on
:mod:`sqsbus.demo.app` (:class:`sqsbus.testing.worker.CeleryWorker`), publishes the plan's
tasks from this process while showing progress, settles every result, stops the worker with a
warm shutdown and prints the summary (:mod:`sqsbus.demo.report`). The worker and the endpoint
are always stopped, on Ctrl-C too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Final

from sqsbus.aws import GLOBAL_STATS
from sqsbus.demo import metrics
from sqsbus.demo.plan import DEFAULT_TASKS, Plan
from sqsbus.demo.producer import Collector, publish
from sqsbus.demo.progress import Progress
from sqsbus.demo.report import (
    collect_accounts,
    count_endpoint_requests,
    difference,
    format_summary,
    summarize,
)
from sqsbus.demo.settings import (
    FLAKY_FAILURES,
    FLAKY_RETRY_COUNTDOWN,
    QUEUE,
    READY_FILE,
    WAIT_TIME_SECONDS,
    DemoSettings,
)
from sqsbus.local import LocalEndpoint, LocalEndpointError
from sqsbus.testing.children import ChildFailed
from sqsbus.testing.worker import CeleryWorker

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "DemoFailed",
    "run",
]

DEFAULT_CONCURRENCY: Final = 4
DEFAULT_TIMEOUT: Final = 120.0
#: Seconds the worker gets to start consuming.
WORKER_START_TIMEOUT: Final = 60.0
#: Seconds the worker gets to finish its warm shutdown at the end of a run. More than the 30 s
#: billiard's pool processes may wait for the main process to read their last results.
WORKER_STOP_TIMEOUT: Final = 45.0
#: Seconds it gets after a failed run, and after Ctrl-C (a second Ctrl-C kills it at once).
FAILED_STOP_TIMEOUT: Final = 10.0
INTERRUPTED_STOP_TIMEOUT: Final = 5.0
#: Seconds between two looks at the results (and two frames of the progress bar).
POLL_SECONDS: Final = 0.1
#: The worker's ``-A`` argument and node name.
WORKER_APP: Final = "sqsbus.demo.app:app"
WORKER_NAME: Final = "sqsbus-demo"

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_INTERRUPTED: Final = 130

_CELERY_MISSING: Final = (
    "the demo needs Celery and moto's server: pip install 'sqsbus[celery,local]'"
)


class DemoFailed(Exception):
    """The demo could not run to the end; the message says why."""


def _say(message: str = "") -> None:
    print(message, flush=True)


# -- environment -------------------------------------------------------------------------------


@contextlib.contextmanager
def _isolated_aws_environment(endpoint: LocalEndpoint, scratch: Path) -> Iterator[dict[str, str]]:
    """This process's environment without the user's AWS settings, the endpoint's instead.

    Yields the environment for the worker. Profiles, config files and real credentials cannot
    leak into the demo; loopback is never sent through an HTTP proxy.
    """
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                del os.environ[name]
        os.environ.update(endpoint.env())
        os.environ["AWS_CONFIG_FILE"] = str(scratch / "no-aws-config")
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(scratch / "no-aws-credentials")
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        no_proxy = [p for p in os.environ.get("NO_PROXY", "").split(",") if p]
        no_proxy += ["127.0.0.1", "localhost", "::1"]
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(dict.fromkeys(no_proxy))
        yield dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _package_root() -> str:
    """The directory holding the ``sqsbus`` package, for the worker's ``PYTHONPATH``."""
    return str(Path(__file__).resolve().parents[2])


# -- the run -----------------------------------------------------------------------------------


def run(
    *,
    tasks: int = DEFAULT_TASKS,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    json_path: Path | None = None,
    keep: bool = False,
    metrics_port: int | None = None,
) -> int:
    """Run the demo; return the exit status (0 ok, 1 failed, 130 interrupted).

    With ``metrics_port``, each process serves its metrics to Prometheus from that port on
    (:mod:`sqsbus.demo.metrics`).
    """
    try:
        from sqsbus.demo import app as demo_app
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"celery", "kombu", "billiard"}:
            print(f"sqsbus demo: {_CELERY_MISSING}", file=sys.stderr)
            return EXIT_FAILED
        raise

    if metrics_port is not None:
        try:
            metrics.check_available()
            metrics.check_ports_free(
                range(metrics_port, metrics.pool_port(metrics_port, concurrency))
            )
        except metrics.MetricsUnavailable as exc:
            print(f"sqsbus demo: {exc}", file=sys.stderr)
            return EXIT_FAILED

    plan = Plan.for_tasks(tasks)
    workdir = Path(tempfile.mkdtemp(prefix="sqsbus-demo-"))
    # Ctrl-C and SIGTERM both unwind through the cleanup, even where SIGINT was ignored.
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in signals}
    demo = _Demo(demo_app, plan, concurrency, timeout, workdir, metrics_port)
    status = EXIT_FAILED
    try:
        try:
            status = demo.run()
        except KeyboardInterrupt:
            print(
                "\nsqsbus demo: interrupted; stopping the worker and the endpoint", file=sys.stderr
            )
            demo.problems.append("interrupted")
            status = EXIT_INTERRUPTED
        finally:
            demo.cleanup(interrupted=status == EXIT_INTERRUPTED)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = demo.summary or {"ok": False, "problems": demo.problems}
    summary["exit_status"] = status
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if keep or status == EXIT_FAILED:
        print(f"sqsbus demo: logs, results and stats kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Let nothing interrupt the last steps of the cleanup."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Demo:
    """One run: the endpoint, the worker, the producer and their summary."""

    def __init__(
        self,
        app_module: ModuleType,
        plan: Plan,
        concurrency: int,
        timeout: float,
        workdir: Path,
        metrics_port: int | None = None,
    ) -> None:
        self.mod = app_module
        self.metrics_port = metrics_port
        self.plan = plan
        self.concurrency = concurrency
        self.timeout = timeout
        self.workdir = workdir
        self.result_dir = workdir / "results"
        self.stats_dir = workdir / "stats"
        self.endpoint_log = workdir / "endpoint.log"
        self.endpoint = LocalEndpoint(log_file=self.endpoint_log)
        self.worker: CeleryWorker | None = None
        self.stop_publishing = threading.Event()
        self.publisher: threading.Thread | None = None
        self.summary: dict[str, Any] | None = None
        #: What went wrong, for the JSON summary of a run that failed before its end.
        self.problems: list[str] = []
        self._environment: contextlib.ExitStack = contextlib.ExitStack()

    def run(self) -> int:
        """The whole run; failures are reported here, KeyboardInterrupt is raised."""
        wall_started = time.monotonic()
        try:
            return self._run(wall_started)
        except (DemoFailed, ChildFailed, LocalEndpointError, metrics.MetricsUnavailable) as exc:
            self.problems.append(str(exc))
            print(f"\nsqsbus demo: FAILED: {exc}", file=sys.stderr)
            if self.worker is not None and self.worker.started:
                print(
                    f"--- last lines of the worker log ({self.worker.log_file}) ---\n"
                    f"{self.worker.log_tail()}\n---",
                    file=sys.stderr,
                )
            return EXIT_FAILED

    def _run(self, wall_started: float) -> int:
        mod = self.mod
        self.result_dir.mkdir()
        self.stats_dir.mkdir()
        run_id = uuid.uuid4().hex[:8]
        prefix = f"sqsbus-demo-{run_id}-"
        _say(f"sqsbus demo: {self.plan.total} real Celery tasks through sqsbus to a local SQS")
        self.endpoint.start()
        _say(f"  endpoint   {self.endpoint.url} (moto, in memory)")
        if self.metrics_port is not None:
            port = self.metrics_port
            metrics.serve(port, "sqsbus-demo-producer")
            _say(
                f"  metrics    http://127.0.0.1:{port}/metrics (producer), "
                f":{metrics.worker_port(port)} (worker), "
                f":{metrics.pool_port(port, 0)}-{metrics.pool_port(port, self.concurrency - 1)} "
                "(pool processes)"
            )
        env = self._environment.enter_context(
            _isolated_aws_environment(self.endpoint, self.workdir)
        )

        settings = DemoSettings(
            broker_url=self.endpoint.broker_url(),
            queue_name_prefix=prefix,
            result_dir=self.result_dir,
            stats_dir=self.stats_dir,
            parent_pid=os.getpid(),
            metrics_port=self.metrics_port,
        )
        mod.configure(settings)
        baseline_requests = GLOBAL_STATS.http_requests()
        baseline_published = dict(mod.counters.published)

        worker_env = {**env, **settings.to_env()}
        worker_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_package_root(), env.get("PYTHONPATH", "")) if p
        )
        self.worker = worker = CeleryWorker(
            WORKER_APP,
            self.workdir / "worker.log",
            name=WORKER_NAME,
            concurrency=self.concurrency,
            env=worker_env,
        )
        # Its own session: Ctrl-C reaches the demo only, which then stops the worker.
        worker.start()
        ready_file = self.stats_dir / READY_FILE
        ready_after = worker.wait_ready(ready_file.exists, timeout=WORKER_START_TIMEOUT)
        _say(
            f"  worker     celery -A {WORKER_APP} worker -c {self.concurrency} "
            f"(pid {worker.pid}), consuming after {ready_after:.1f} s"
        )
        _say(f"  queue      {prefix}{QUEUE} (SQS), results in Celery's filesystem backend")
        _say(f"  tasks      {self.plan.describe(FLAKY_FAILURES, FLAKY_RETRY_COUNTDOWN)}")
        _say()

        collector = Collector(self.result_dir)
        self.publisher = threading.Thread(
            target=publish,
            args=(mod, self.plan, collector, self.stop_publishing),
            name="sqsbus-demo-publisher",
            daemon=True,
        )
        progress = Progress(self.plan.total, sys.stderr)
        self.publisher.start()
        deadline = time.monotonic() + self.timeout
        problem: str | None = None
        while True:
            collector.poll()
            progress.update(collector.finished, collector.published)
            if collector.publish_error is not None:
                problem = f"publishing failed: {collector.publish_error!r}"
                break
            if collector.publishing_done and not collector.pending:
                break
            code = worker.returncode
            if code is not None:
                problem = f"the Celery worker exited with code {code} during the run"
                break
            if time.monotonic() > deadline:
                problem = (
                    f"timed out after {self.timeout:g} s: {len(collector.pending)} of "
                    f"{self.plan.total} tasks did not finish"
                )
                break
            time.sleep(POLL_SECONDS)
        progress.update(collector.finished, collector.published, final=True)
        self.stop_publishing.set()
        self.publisher.join(timeout=10)

        # The producer is done with the broker: close its connections before counting.
        mod.app.close()
        producer_requests = difference(GLOBAL_STATS.http_requests(), baseline_requests)
        producer_published = difference(dict(mod.counters.published), baseline_published)
        scraped = self._scrape_metrics() if self.metrics_port is not None else None

        stop_started = time.monotonic()
        grace = WORKER_STOP_TIMEOUT if problem is None else FAILED_STOP_TIMEOUT
        stop_code = worker.stop(grace)
        stop_seconds = time.monotonic() - stop_started
        accounts, stats_problems = collect_accounts(
            self.stats_dir, self.concurrency, producer_requests, producer_published
        )
        accounts.endpoint_requests = self._endpoint_requests(accounts.total_requests)
        problems = [problem] if problem else []
        if stop_code is None:
            problems.append(f"the worker did not stop within {grace:g} s of SIGTERM; killed it")
        elif stop_code != 0:
            problems.append(f"the worker exited with code {stop_code}")
        problems += stats_problems
        if collector.failures:
            problems.append(f"{len(collector.failures)} task(s) failed")
        if accounts.worker_failed:
            problems.append(f"tasks failed in the worker: {accounts.worker_failed}")

        self.summary = summarize(
            plan=self.plan,
            collector=collector,
            accounts=accounts,
            problems=problems,
            wall_seconds=time.monotonic() - wall_started,
            stop_seconds=stop_seconds,
            setup={
                "endpoint": self.endpoint.url,
                "queue": f"{prefix}{QUEUE}",
                "concurrency": self.concurrency,
                "worker_pid": worker.pid,
            },
        )
        if scraped is not None:
            self.summary["metrics"] = scraped
        _say(format_summary(self.summary, self.plan, collector, accounts))
        if problems:
            raise DemoFailed("; ".join(problems))
        _say("\nOK: every task completed with the expected result.")
        return EXIT_OK

    def _scrape_metrics(self) -> dict[str, Any]:
        """What the processes' Prometheus endpoints say, read once the tasks are done.

        The producer has closed its connections: its figures are final, and its request
        count must equal what sqsbus counted in it. The worker's processes still long-poll,
        so theirs are a moment's reading.
        """
        assert self.metrics_port is not None
        port = self.metrics_port
        producer = metrics.scrape(port)
        worker: Counter[str] = Counter()
        answered = [port]
        for worker_side in (
            metrics.worker_port(port),
            *(metrics.pool_port(port, i) for i in range(self.concurrency)),
        ):
            try:
                worker.update(metrics.scrape(worker_side))
            except OSError:
                continue  # a pool process that has not started or was replaced
            answered.append(worker_side)
        return {
            "ports_answered": answered,
            "producer": {name: producer.get(name, 0.0) for name in metrics.SUMMARY_SAMPLES},
            "worker": {name: worker.get(name, 0.0) for name in metrics.SUMMARY_SAMPLES},
            "producer_requests_counted": GLOBAL_STATS.total_http_requests,
            "samples": sorted(name for name in {*producer, *worker} if name.startswith("sqsbus_")),
        }

    def _endpoint_requests(self, counted: int) -> int | None:
        """The requests the endpoint logged, once those still in flight have been answered.

        A long poll the worker had started when it exited is answered (and logged) when its
        wait time is up; then the endpoint is stopped.
        """
        deadline = time.monotonic() + WAIT_TIME_SECONDS + 1.0
        while time.monotonic() < deadline:
            logged = count_endpoint_requests(self.endpoint_log)
            if logged is None or logged >= counted:
                break
            time.sleep(POLL_SECONDS)
        self.endpoint.stop()
        return count_endpoint_requests(self.endpoint_log)

    def cleanup(self, *, interrupted: bool) -> None:
        """Stop everything this run started; safe to call at any point, and twice."""
        self.stop_publishing.set()
        worker = self.worker
        try:
            if worker is not None and worker.running:
                grace = INTERRUPTED_STOP_TIMEOUT if interrupted else WORKER_STOP_TIMEOUT
                if worker.stop(grace) is None:
                    print(
                        f"sqsbus demo: the worker did not finish its warm shutdown within "
                        f"{grace:g} s; killed it",
                        file=sys.stderr,
                    )
        except KeyboardInterrupt:
            print("sqsbus demo: interrupted again; killing the worker", file=sys.stderr)
        finally:
            with _signals_ignored():
                if worker is not None:
                    worker.kill()  # if still running, and any pool process it left behind
                self.endpoint.stop()
                with contextlib.suppress(Exception):
                    self.mod.app.close()
                self._environment.close()
