"""``sqsbus demo``: real Celery tasks through sqsbus on the embedded SQS endpoint.

The demo starts the embedded endpoint (:class:`sqsbus.local.LocalEndpoint`), starts a real
Celery worker on :mod:`sqsbus.demo_app` as a subprocess, and then acts as the producer: it
publishes single tasks, a group, a chord (a header plus a callback summing it) and ``flaky``
tasks that fail once and are retried after a countdown, showing progress while it collects and
checks every result from Celery's filesystem result backend. It then stops the worker with
SIGTERM (warm shutdown) and prints a summary, including the AWS requests made per message
as counted by sqsbus itself (:data:`sqsbus.aws.GLOBAL_STATS`) in the producer and in every
worker process, cross-checked against the endpoint's own request log.

Exit status: 0 when every task completed with the expected result, 1 when anything failed or
timed out, 130 when interrupted. The worker and the endpoint are always stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import IO, Any, Final

from sqsbus.local import LocalEndpoint, LocalEndpointError

__all__ = ["DemoFailed", "Plan", "build_parser", "main", "run"]

DEFAULT_TASKS: Final = 300
MIN_TASKS: Final = 10
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
#: Seconds between two progress lines when the output is not a terminal.
PLAIN_PROGRESS_SECONDS: Final = 2.0
LOG_TAIL_LINES: Final = 40
BAR_WIDTH: Final = 30

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_INTERRUPTED: Final = 130

_CELERY_MISSING: Final = (
    "the demo needs Celery and moto's server: pip install 'sqsbus[celery,local]'"
)
_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-9;]*m")
_REQUEST_LINE: Final = re.compile(r'"(?:GET|POST|PUT|DELETE|HEAD|PATCH) (\S+) HTTP/[0-9.]+"')


class DemoFailed(Exception):
    """The demo could not run to the end; the message says why."""


# -- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``sqsbus demo``'s options."""
    parser = argparse.ArgumentParser(
        prog="sqsbus demo",
        description=(
            "Run real Celery tasks through sqsbus on an embedded SQS endpoint (moto, in memory): "
            "start the endpoint and a Celery worker, publish single tasks, a group, a chord and "
            "tasks that fail once and are retried, check every result, then report throughput "
            "and the AWS requests made per message."
        ),
    )
    parser.add_argument(
        "--tasks",
        type=_task_count,
        default=DEFAULT_TASKS,
        metavar="N",
        help=f"how many tasks to run, at least {MIN_TASKS} (default: %(default)s)",
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="worker pool processes (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="give up if the results are not all in after this long (default: %(default)g)",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        type=Path,
        metavar="PATH",
        help="also write the summary as JSON to PATH",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the run's directory (worker log, endpoint log, results, stats)",
    )
    return parser


def _task_count(text: str) -> int:
    number = _positive_int(text)
    if number < MIN_TASKS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_TASKS}, got {number}")
    return number


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _positive_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return number


def main(argv: list[str] | None = None) -> int:
    """Run ``sqsbus demo`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    return run(
        tasks=args.tasks,
        concurrency=args.concurrency,
        timeout=args.timeout,
        json_path=args.json_path,
        keep=args.keep,
    )


# -- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How the demo's tasks are made up; ``total`` of them are checked."""

    singles: int
    group: int
    chord_header: int
    flaky: int

    @classmethod
    def for_tasks(cls, tasks: int) -> Plan:
        """A mix of ``tasks`` tasks: 1% flaky, 10% chord header (+1 callback), 20% group."""
        if tasks < MIN_TASKS:
            raise ValueError(f"the demo needs at least {MIN_TASKS} tasks, not {tasks}")
        flaky = max(1, tasks // 100)
        chord_header = max(2, tasks // 10)
        group = max(2, tasks // 5)
        singles = tasks - flaky - (chord_header + 1) - group
        return cls(singles=singles, group=group, chord_header=chord_header, flaky=flaky)

    @property
    def total(self) -> int:
        return self.singles + self.group + self.chord_header + 1 + self.flaky

    def describe(self, flaky_failures: int, countdown: float) -> str:
        return (
            f"{self.singles} single tasks, a group of {self.group}, a chord of "
            f"{self.chord_header} + a summing callback, {self.flaky} flaky task(s) "
            f"(fail {flaky_failures}x, retried after {countdown:g} s)"
        )


# -- results -----------------------------------------------------------------------------------


@dataclass
class _Tracked:
    kind: str
    label: str
    result: Any
    expected: object
    #: The name of the result's file in the result directory, if known.
    file_name: str | None = None


@dataclass
class _Collector:
    """Results to wait for (added by the publishing thread) and what became of them."""

    result_dir: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list[_Tracked] = field(default_factory=list)
    completed: int = 0
    failures: list[str] = field(default_factory=list)
    flaky_attempts: list[int] = field(default_factory=list)
    published: int = 0
    publishing_done: bool = False
    publish_error: Exception | None = None
    first_publish: float | None = None
    last_result: float | None = None

    def add(self, tracked: _Tracked) -> None:
        try:
            key = tracked.result.backend.get_key_for_task(tracked.result.id)
            tracked.file_name = key.decode() if isinstance(key, bytes) else str(key)
        except Exception:  # not a key-value backend: read the result itself every time
            tracked.file_name = None
        with self.lock:
            if self.first_publish is None:
                self.first_publish = time.monotonic()
            self.pending.append(tracked)
            self.published += 1

    @property
    def finished(self) -> int:
        return self.completed + len(self.failures)

    def poll(self) -> None:
        """Look at every pending result once; settle the ready ones."""
        with self.lock:
            pending = list(self.pending)
        try:  # only results with a file can be ready: spare reading all the others
            present = set(os.listdir(self.result_dir))
        except OSError:
            present = None
        settled: list[_Tracked] = []
        for tracked in pending:
            name = tracked.file_name
            if present is not None and name is not None and name not in present:
                continue
            try:
                state = str(tracked.result.state)
                if state not in {"SUCCESS", "FAILURE", "REVOKED"}:
                    continue
                value = tracked.result.result
            except Exception:  # e.g. a result file read while being written: look again
                continue
            settled.append(tracked)
            if state != "SUCCESS":
                self.failures.append(f"{tracked.label}: {state}: {value!r}")
            elif _normalized(value) != _normalized(tracked.expected):
                self.failures.append(
                    f"{tracked.label}: returned {value!r}, expected {tracked.expected!r}"
                )
            else:
                self.completed += 1
                if tracked.kind == "flaky" and isinstance(value, dict):
                    self.flaky_attempts.append(int(value.get("attempts", 0)))
        if settled:
            self.last_result = time.monotonic()
            done = {id(tracked) for tracked in settled}
            with self.lock:
                self.pending = [t for t in self.pending if id(t) not in done]


def _normalized(value: object) -> object:
    return json.loads(json.dumps(value, sort_keys=True))


def _publish(
    app_module: ModuleType, plan: Plan, collector: _Collector, stop: threading.Event
) -> None:
    """Publish the plan's tasks (in the publishing thread), tracking each result."""
    from celery import chord, group

    try:
        number = 0
        expected_attempts = app_module.FLAKY_FAILURES + 1
        for _ in range(plan.flaky):
            if stop.is_set():
                return
            number += 1
            collector.add(
                _Tracked(
                    "flaky",
                    f"flaky({number})",
                    app_module.flaky.delay(number),
                    {"number": number, "attempts": expected_attempts},
                )
            )

        header_numbers = list(range(number + 1, number + 1 + plan.chord_header))
        number += plan.chord_header
        callback_result = chord(app_module.add.s(n, n) for n in header_numbers)(
            app_module.total.s(), interval=app_module.CHORD_UNLOCK_INTERVAL
        )
        for n, header_result in zip(header_numbers, callback_result.parent.results, strict=True):
            collector.add(_Tracked("chord", f"chord header add({n}, {n})", header_result, 2 * n))
        collector.add(
            _Tracked(
                "chord-callback",
                f"chord callback total({len(header_numbers)} results)",
                callback_result,
                sum(2 * n for n in header_numbers),
            )
        )
        if stop.is_set():
            return

        group_numbers = list(range(number + 1, number + 1 + plan.group))
        number += plan.group
        group_result = group(app_module.add.s(n, 1) for n in group_numbers).apply_async()
        for n, member in zip(group_numbers, group_result.results, strict=True):
            collector.add(_Tracked("group", f"group member add({n}, 1)", member, n + 1))

        for _ in range(plan.singles):
            if stop.is_set():
                return
            number += 1
            collector.add(
                _Tracked(
                    "single",
                    f"add({number}, {number})",
                    app_module.add.delay(number, number),
                    2 * number,
                )
            )
    except Exception as exc:
        collector.publish_error = exc
    finally:
        collector.publishing_done = True


# -- progress ----------------------------------------------------------------------------------


class _Progress:
    """A ``\\r``-updated progress bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last_plain = self.started
        self._last_line = ""

    def update(self, finished: int, published: int, *, final: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        rate = finished / elapsed if elapsed > 0 else 0.0
        percent = 100 * finished // self.total if self.total else 100
        if self.tty:
            filled = BAR_WIDTH * finished // self.total if self.total else BAR_WIDTH
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            line = (
                f"  [{bar}] {finished:>{len(str(self.total))}}/{self.total} {percent:3d}%  "
                f"sent {published}  {rate:6.1f} tasks/s  {elapsed:5.1f} s"
            )
            padding = " " * max(0, len(self._last_line) - len(line))
            self.stream.write("\r" + line + padding + ("\n" if final else ""))
            self._last_line = line
            self.stream.flush()
        elif final or now - self._last_plain >= PLAIN_PROGRESS_SECONDS:
            self._last_plain = now
            self.stream.write(
                f"  progress: {finished}/{self.total} tasks done ({percent}%), {published} sent, "
                f"{rate:.1f} tasks/s, {elapsed:.1f} s\n"
            )
            self.stream.flush()


# -- the worker --------------------------------------------------------------------------------


class _Worker:
    """``celery -A sqsbus.demo_app worker`` in its own session, output to a log file."""

    def __init__(
        self, concurrency: int, env: Mapping[str, str], log_path: Path, ready_file: Path
    ) -> None:
        self.concurrency = concurrency
        self.env = dict(env)
        self.log_path = log_path
        self.ready_file = ready_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "sqsbus.demo_app",
            "worker",
            "--pool=prefork",
            f"--concurrency={self.concurrency}",
            "--loglevel=warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname=sqsbus-demo@%h",
        ]

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # Its own session: Ctrl-C reaches the demo only, which then stops the worker.
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait_ready(self, timeout: float) -> float:
        """Wait until the worker consumes; return how long that took."""
        started = time.monotonic()
        while not self.ready_file.exists():
            code = self.exit_code()
            if code is not None:
                raise DemoFailed(f"the Celery worker exited with code {code} while starting")
            if time.monotonic() - started > timeout:
                raise DemoFailed(f"the Celery worker did not start consuming within {timeout:g} s")
            time.sleep(POLL_SECONDS)
        return time.monotonic() - started

    def stop(self, timeout: float) -> int | None:
        """Warm shutdown (SIGTERM), then SIGKILL to the whole group if it lingers.

        Returns the exit code of a worker that stopped by itself, None if it had to be killed.
        """
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        if process.returncode != 0:
            self._kill_group()  # pool processes a failed worker may have left behind
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes unless it exited cleanly."""
        process = self.process
        if process is not None and (process.poll() is None or process.returncode != 0):
            self._kill_group()
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()

    def _kill_group(self) -> None:
        # The worker leads its own process group (start_new_session): only it and its pool.
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(the worker wrote nothing)"


# -- accounting --------------------------------------------------------------------------------


@dataclass
class _Accounts:
    """Requests and messages of the producer and of every worker process."""

    producer_requests: dict[str, int]
    worker_requests: dict[str, int]
    producer_published: dict[str, int]
    worker_published: dict[str, int]
    retried: dict[str, int]
    worker_failed: dict[str, int]
    worker_processes: int
    endpoint_requests: int | None

    @property
    def total_requests(self) -> int:
        return sum(self.producer_requests.values()) + sum(self.worker_requests.values())

    @property
    def messages(self) -> int:
        return sum(self.producer_published.values()) + sum(self.worker_published.values())

    @property
    def per_message(self) -> float:
        return self.total_requests / self.messages if self.messages else 0.0

    def operations(self) -> list[tuple[str, int, int, int]]:
        names = set(self.producer_requests) | set(self.worker_requests)
        rows = [
            (
                name,
                self.producer_requests.get(name, 0),
                self.worker_requests.get(name, 0),
                self.producer_requests.get(name, 0) + self.worker_requests.get(name, 0),
            )
            for name in names
        ]
        return sorted(rows, key=lambda row: (-row[3], row[0]))


def _add_counts(into: dict[str, int], counts: Mapping[str, Any]) -> None:
    for name, count in counts.items():
        into[str(name)] = into.get(str(name), 0) + int(count)


def _difference(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    diff = {name: count - before.get(name, 0) for name, count in after.items()}
    return {name: count for name, count in diff.items() if count}


def _read_worker_stats(stats_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    stats: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in sorted(stats_dir.glob("stats-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"cannot read {path.name}: {exc}")
            continue
        if isinstance(data, dict):
            stats.append(data)
        else:
            problems.append(f"{path.name} does not hold a JSON object")
    return stats, problems


def _count_endpoint_requests(log_file: Path) -> int | None:
    """Requests in moto's log, without the endpoint's own health checks."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    count = 0
    for line in _ANSI_ESCAPE.sub("", text).splitlines():
        match = _REQUEST_LINE.search(line)
        if match and not match.group(1).startswith("/moto-api"):
            count += 1
    return count


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
    return str(Path(__file__).resolve().parent.parent)


# -- the run -----------------------------------------------------------------------------------


def _say(message: str = "") -> None:
    print(message, flush=True)


def run(
    *,
    tasks: int = DEFAULT_TASKS,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    json_path: Path | None = None,
    keep: bool = False,
) -> int:
    """Run the demo; return the exit status (0 ok, 1 failed, 130 interrupted)."""
    try:
        from sqsbus import demo_app
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"celery", "kombu", "billiard"}:
            print(f"sqsbus demo: {_CELERY_MISSING}", file=sys.stderr)
            return EXIT_FAILED
        raise

    plan = Plan.for_tasks(tasks)
    workdir = Path(tempfile.mkdtemp(prefix="sqsbus-demo-"))
    # Ctrl-C and SIGTERM both unwind through the cleanup, even where SIGINT was ignored.
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in signals}
    demo = _Demo(demo_app, plan, concurrency, timeout, workdir)
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
        self, app_module: ModuleType, plan: Plan, concurrency: int, timeout: float, workdir: Path
    ) -> None:
        self.mod = app_module
        self.plan = plan
        self.concurrency = concurrency
        self.timeout = timeout
        self.workdir = workdir
        self.result_dir = workdir / "results"
        self.stats_dir = workdir / "stats"
        self.endpoint_log = workdir / "endpoint.log"
        self.endpoint = LocalEndpoint(log_file=self.endpoint_log)
        self.worker: _Worker | None = None
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
        except (DemoFailed, LocalEndpointError) as exc:
            self.problems.append(str(exc))
            print(f"\nsqsbus demo: FAILED: {exc}", file=sys.stderr)
            if self.worker is not None and self.worker.process is not None:
                print(
                    f"--- last lines of the worker log ({self.worker.log_path}) ---\n"
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
        env = self._environment.enter_context(
            _isolated_aws_environment(self.endpoint, self.workdir)
        )

        settings = mod.DemoSettings(
            broker_url=self.endpoint.broker_url(),
            queue_name_prefix=prefix,
            result_dir=self.result_dir,
            stats_dir=self.stats_dir,
            parent_pid=os.getpid(),
        )
        mod.configure(settings)
        baseline_requests = mod.GLOBAL_STATS.http_requests()
        baseline_published = dict(mod.counters.published)

        worker_env = {**env, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
        worker_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_package_root(), env.get("PYTHONPATH", "")) if p
        )
        self.worker = worker = _Worker(
            self.concurrency,
            worker_env,
            self.workdir / "worker.log",
            self.stats_dir / mod.READY_FILE,
        )
        worker.start()
        ready_after = worker.wait_ready(WORKER_START_TIMEOUT)
        _say(
            f"  worker     celery -A sqsbus.demo_app worker -c {self.concurrency} "
            f"(pid {worker.pid}), consuming after {ready_after:.1f} s"
        )
        _say(f"  queue      {prefix}{mod.QUEUE} (SQS), results in Celery's filesystem backend")
        _say(f"  tasks      {self.plan.describe(mod.FLAKY_FAILURES, mod.FLAKY_RETRY_COUNTDOWN)}")
        _say()

        collector = _Collector(self.result_dir)
        self.publisher = threading.Thread(
            target=_publish,
            args=(mod, self.plan, collector, self.stop_publishing),
            name="sqsbus-demo-publisher",
            daemon=True,
        )
        progress = _Progress(self.plan.total, sys.stderr)
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
            code = worker.exit_code()
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
        producer_requests = _difference(mod.GLOBAL_STATS.http_requests(), baseline_requests)
        producer_published = _difference(dict(mod.counters.published), baseline_published)

        stop_started = time.monotonic()
        grace = WORKER_STOP_TIMEOUT if problem is None else FAILED_STOP_TIMEOUT
        stop_code = worker.stop(grace)
        stop_seconds = time.monotonic() - stop_started
        accounts, stats_problems = self._accounts(producer_requests, producer_published)
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

        self.summary = self._summary(
            collector, accounts, problems, time.monotonic() - wall_started, stop_seconds, prefix
        )
        self._print_summary(collector, accounts)
        if problems:
            raise DemoFailed("; ".join(problems))
        _say("\nOK: every task completed with the expected result.")
        return EXIT_OK

    def _accounts(
        self, producer_requests: dict[str, int], producer_published: dict[str, int]
    ) -> tuple[_Accounts, list[str]]:
        stats, problems = _read_worker_stats(self.stats_dir)
        worker_requests: dict[str, int] = {}
        worker_published: dict[str, int] = {}
        retried: dict[str, int] = {}
        failed: dict[str, int] = {}
        roles = [str(item.get("role")) for item in stats]
        for item in stats:
            _add_counts(worker_requests, item.get("http_requests", {}))
            _add_counts(worker_published, item.get("published", {}))
            _add_counts(retried, item.get("retried", {}))
            _add_counts(failed, item.get("failed", {}))
        if roles.count("worker") != 1:
            problems.append(
                f"expected stats of 1 main worker process, found {roles.count('worker')}"
            )
        if roles.count("pool") != self.concurrency:
            problems.append(
                f"expected stats of {self.concurrency} pool processes, found {roles.count('pool')}"
            )
        accounts = _Accounts(
            producer_requests=producer_requests,
            worker_requests=worker_requests,
            producer_published=producer_published,
            worker_published=worker_published,
            retried=retried,
            worker_failed=failed,
            worker_processes=len(stats),
            endpoint_requests=None,
        )
        return accounts, problems

    def _endpoint_requests(self, counted: int) -> int | None:
        """The requests the endpoint logged, once those still in flight have been answered.

        A long poll the worker had started when it exited is answered (and logged) when its
        wait time is up; then the endpoint is stopped.
        """
        deadline = time.monotonic() + self.mod.WAIT_TIME_SECONDS + 1.0
        while time.monotonic() < deadline:
            logged = _count_endpoint_requests(self.endpoint_log)
            if logged is None or logged >= counted:
                break
            time.sleep(POLL_SECONDS)
        self.endpoint.stop()
        return _count_endpoint_requests(self.endpoint_log)

    def _summary(
        self,
        collector: _Collector,
        accounts: _Accounts,
        problems: list[str],
        wall_seconds: float,
        stop_seconds: float,
        prefix: str,
    ) -> dict[str, Any]:
        mod = self.mod
        elapsed = _elapsed(collector)
        flaky_retries = accounts.retried.get(mod.flaky.name, 0)
        return {
            "ok": not problems,
            "problems": problems,
            "tasks": {
                "requested": self.plan.total,
                "completed": collector.completed,
                "failed": len(collector.failures),
                "unfinished": len(collector.pending),
                "failures": collector.failures[:20],
                "mix": {
                    "single": self.plan.singles,
                    "group": self.plan.group,
                    "chord_header": self.plan.chord_header,
                    "chord_callback": 1,
                    "flaky": self.plan.flaky,
                },
            },
            "retries": {
                "observed": flaky_retries,
                "expected": self.plan.flaky * mod.FLAKY_FAILURES,
                "flaky_attempts": sorted(collector.flaky_attempts),
                "chord_unlock": accounts.retried.get("celery.chord_unlock", 0),
                "by_task": accounts.retried,
            },
            "elapsed_seconds": round(elapsed, 3),
            "tasks_per_second": round(collector.completed / elapsed, 2) if elapsed else 0.0,
            "wall_seconds": round(wall_seconds, 3),
            "worker_stop_seconds": round(stop_seconds, 3),
            "messages": {
                "published": accounts.messages,
                "by_producer": sum(accounts.producer_published.values()),
                "by_worker": sum(accounts.worker_published.values()),
                "by_task": _merged(accounts.producer_published, accounts.worker_published),
            },
            "aws_requests": {
                "total": accounts.total_requests,
                "producer": sum(accounts.producer_requests.values()),
                "worker": sum(accounts.worker_requests.values()),
                "per_message": round(accounts.per_message, 3),
                "by_operation": {
                    name: {"producer": producer, "worker": worker, "total": total}
                    for name, producer, worker, total in accounts.operations()
                },
                "worker_processes": accounts.worker_processes,
                "endpoint_log": accounts.endpoint_requests,
            },
            "setup": {
                "endpoint": self.endpoint.url,
                "queue": f"{prefix}{mod.QUEUE}",
                "concurrency": self.concurrency,
                "worker_pid": None if self.worker is None else self.worker.pid,
            },
        }

    def _print_summary(self, collector: _Collector, accounts: _Accounts) -> None:
        assert self.summary is not None
        summary = self.summary
        retries = summary["retries"]
        messages = summary["messages"]
        elapsed = summary["elapsed_seconds"]
        lines = [
            "",
            "Results",
            f"  tasks completed     {collector.completed} / {self.plan.total}",
            f"  failures            {len(collector.failures)}",
            f"  retries observed    {retries['observed']} (expected {retries['expected']}: "
            f"{self.plan.flaky} flaky x {self.mod.FLAKY_FAILURES}); "
            f"chord_unlock polls: {retries['chord_unlock']}",
            f"  elapsed             {elapsed:.1f} s (first publish to last result); "
            f"whole run {summary['wall_seconds']:.1f} s",
            f"  throughput          {summary['tasks_per_second']:.1f} tasks/s",
        ]
        for failure in collector.failures[:10]:
            lines.append(f"    failed: {failure}")
        lines += [
            "",
            f"AWS requests, counted by sqsbus (GLOBAL_STATS) in the producer and "
            f"{accounts.worker_processes} worker processes",
        ]
        rows = accounts.operations()
        width = max([len("operation"), *(len(row[0]) for row in rows)])
        lines.append(f"  {'operation':<{width}}  {'producer':>8}  {'worker':>8}  {'total':>8}")
        for name, producer, worker, total in rows:
            lines.append(f"  {name:<{width}}  {producer:>8}  {worker:>8}  {total:>8}")
        producer_total = sum(accounts.producer_requests.values())
        worker_total = sum(accounts.worker_requests.values())
        lines.append(
            f"  {'total':<{width}}  {producer_total:>8}  {worker_total:>8}  "
            f"{accounts.total_requests:>8}"
        )
        if accounts.endpoint_requests is not None:
            verdict = (
                "matches"
                if accounts.endpoint_requests == accounts.total_requests
                else f"differs by {accounts.endpoint_requests - accounts.total_requests:+d}"
            )
            lines.append(
                f"  the endpoint's own log shows {accounts.endpoint_requests} requests ({verdict})"
            )
        lines += [
            "",
            f"  task messages published   {messages['published']} "
            f"({messages['by_producer']} by the producer, {messages['by_worker']} by the worker: "
            "retries, chord callback, chord_unlock polls)",
            f"  AWS requests per message  {accounts.per_message:.2f}",
        ]
        _say("\n".join(lines))

    def cleanup(self, *, interrupted: bool) -> None:
        """Stop everything this run started; safe to call at any point, and twice."""
        self.stop_publishing.set()
        worker = self.worker
        try:
            if worker is not None and worker.exit_code() is None:
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


def _elapsed(collector: _Collector) -> float:
    if collector.first_publish is None:
        return 0.0
    end = collector.last_result if collector.last_result is not None else time.monotonic()
    return max(0.0, end - collector.first_publish)


def _merged(first: Mapping[str, int], second: Mapping[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    _add_counts(merged, first)
    _add_counts(merged, second)
    return dict(sorted(merged.items()))
