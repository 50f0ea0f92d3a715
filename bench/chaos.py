"""Chaos harness: Celery workers and producers through a fault-injecting proxy, losses counted.

``python -m bench.chaos [--messages N] [--scenarios steady,outage,kill-worker,kill-producer,
expiring-credentials]``

Each scenario gets a fresh local endpoint (moto's server) with a
:class:`~sqsbus.testing.proxy.FaultProxy` in front; every process talks to the proxy.
A producer process publishes ``N`` tasks numbered 0..N-1 (``chaos.record(n)``) and
writes each number to a file once its publish returned; two Celery workers
(prefork, ``acks_late``, short leases) run them, each run appending its number to a
shared file.  The checker then counts, for every scenario:

* *lost*: numbers whose publish returned but that never ran (must be 0);
* *duplicated*: extra runs (expected only around crashes and lost answers);
* *recovery*: after an outage, seconds from its end to the next task run;
* *renewals* and *expired answers*, with expiring credentials: how often the processes
  assumed their role again (``sts:AssumeRole`` requests at the proxy) and how many
  requests the proxy refused as signed with expired credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

from sqsbus.local import LocalEndpoint
from sqsbus.testing.proxy import FaultProxy, Faults
from sqsbus.testing.worker import CeleryWorker

ROOT: Final = Path(__file__).resolve().parent.parent
SCENARIOS: Final = ("steady", "outage", "kill-worker", "kill-producer", "expiring-credentials")
#: About 5 % of requests faulty (throttling, 5xx, lost answers, partial batches).
STEADY_FAULTS: Final = Faults(throttle=0.02, error=0.01, reset_after=0.01, partial=0.01)
LEASE_SECONDS: Final = 5
WORKERS: Final = 2
CONCURRENCY: Final = 4
#: The role workers and producers assume in the expiring-credentials scenario.
ROLE_ARN: Final = "arn:aws:iam::123456789012:role/sqsbus-chaos"
#: Length of the sessions the proxy hands out there: a scaled-down 15-minute session.
SESSION_SECONDS: Final = 20.0
#: There, every so many seconds every session is revoked early (as a late client clock
#: would see it), so that AWS's ExpiredToken answer meets requests under load.
REVOKE_EVERY: Final = 30.0


@dataclass
class Outcome:
    """What a scenario sent, delivered, lost and duplicated."""

    scenario: str
    published: int
    delivered: int
    lost: int
    duplicated: int
    seconds: float
    recovery_s: float | None = None
    worker_cpu_during_outage: float | None = None
    faults: dict[str, int] = field(default_factory=dict)
    renewals: int | None = None
    expired_answers: int | None = None
    #: Messages whose send was done by SQS but whose answer the proxy cut off: the sender
    #: cannot know, sends again, and each is a duplicate no standard queue can avoid.
    unanswered_sends: int = 0
    notes: str = ""


def unanswered_sends(by_operation: dict[str, dict[str, int]]) -> int:
    """Messages sent whose answer was lost, from the proxy's faults per operation."""
    single = by_operation.get("sqs.SendMessage", {}).get("reset_after", 0)
    batched = by_operation.get("sqs.SendMessageBatch", {}).get("reset_after_entries", 0)
    return single + batched


def count(published: Sequence[int], runs: Sequence[int]) -> tuple[int, int, int]:
    """(delivered, lost, duplicated) from published numbers and task runs."""
    seen = Counter(runs)
    lost = sum(1 for number in set(published) if number not in seen)
    duplicated = sum(times - 1 for times in seen.values())
    return len(seen), lost, duplicated


def _numbers(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split() if line.strip().isdigit()]


class Cluster:
    """An endpoint, its proxy, the workers and the files they write."""

    def __init__(self, workdir: Path, messages: int, session_seconds: float | None = None) -> None:
        self.workdir = workdir
        self.messages = messages
        self.endpoint = LocalEndpoint(log_file=workdir / "endpoint.log").start()
        self.proxy = FaultProxy(self.endpoint.url, session_seconds=session_seconds).start()
        self.done_file = workdir / "done"
        self.done_file.write_bytes(b"")
        self.published_file = workdir / "published"
        self.workers: list[CeleryWorker] = []
        self.options = {
            "endpoint_url": self.proxy.url,
            "queue_name_prefix": "chaos-",
            "wait_time_seconds": 2,
            "lease_seconds": LEASE_SECONDS,
            "region": "us-east-1",
        }
        if session_seconds is not None:
            self.options["sts_role_arn"] = ROLE_ARN
        self.env = {
            **os.environ,
            **self.endpoint.env(),
            "CHAOS_BROKER_URL": "sqsbus://",
            "CHAOS_TRANSPORT_OPTIONS": json.dumps(self.options),
            "CHAOS_DONE_FILE": str(self.done_file),
            "PYTHONPATH": str(ROOT),
        }

    def start_worker(self, number: int) -> None:
        worker = CeleryWorker(
            "bench.chaos_app",
            self.workdir / f"worker-{number}.log",
            name=f"chaos{number}",
            concurrency=CONCURRENCY,
            loglevel="WARNING",
            env=self.env,
            cwd=ROOT,
        )
        self.workers.append(worker.start())

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` with its whole process group (if it still runs)."""
        worker = self.workers[index]
        if worker.running:
            worker.kill()

    def producer(self, start: int, stop: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.chaos",
                "produce",
                str(start),
                str(stop),
                str(self.published_file),
            ],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "producer.log").open("ab"),
        )

    def runs(self) -> list[int]:
        return _numbers(self.done_file)

    def published(self) -> list[int]:
        return _numbers(self.published_file)

    def wait_for(self, numbers: set[int], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if numbers <= set(self.runs()):
                return True
            time.sleep(0.5)
        return False

    def workers_cpu(self) -> float:
        total = 0.0
        for worker in self.workers:
            total += _tree_cpu(worker.pid)
        return total

    def close(self) -> None:
        for index in range(len(self.workers)):
            self.kill_worker(index)
        self.proxy.stop()
        self.endpoint.stop()


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (from /proc; 0 if gone)."""
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total += (int(fields[11]) + int(fields[12])) / ticks
    return total + sum(_tree_cpu(int(child)) for child in children)


def run_scenario(
    name: str,
    messages: int,
    workdir: Path,
    outage_s: float,
    kill_every: float = 5.0,
    session_s: float = SESSION_SECONDS,
    revoke_every: float = REVOKE_EVERY,
) -> Outcome:
    """Run scenario ``name`` over ``messages`` tasks; ``kill_every``: seconds between kills;
    ``session_s``: length of the STS sessions with expiring credentials, revoked early every
    ``revoke_every`` seconds."""
    expiring = name == "expiring-credentials"
    cluster = Cluster(workdir, messages, session_seconds=session_s if expiring else None)
    started = time.monotonic()
    recovery: float | None = None
    outage_cpu: float | None = None
    revoked = 0
    notes = ""
    try:
        for number in range(WORKERS):
            cluster.start_worker(number)
        if name == "steady":
            cluster.proxy.faults = STEADY_FAULTS
        producer = cluster.producer(0, messages)
        if name == "outage":
            _wait(lambda: len(cluster.runs()) >= messages // 3, 600)
            cpu_before = cluster.workers_cpu()
            cluster.proxy.start_outage(outage_s)
            time.sleep(outage_s)
            outage_cpu = (cluster.workers_cpu() - cpu_before) / outage_s
            ended, ran = time.monotonic(), len(cluster.runs())
            _wait(lambda: len(cluster.runs()) > ran, 300)
            recovery = time.monotonic() - ended
        elif name == "kill-worker":
            killed = 0
            while producer.poll() is None or len(set(cluster.runs())) < messages:
                time.sleep(kill_every)
                if len(set(cluster.runs())) >= messages:
                    break
                index = killed % len(cluster.workers)
                cluster.kill_worker(index)
                cluster.workers.pop(index)
                cluster.start_worker(WORKERS + killed)
                killed += 1
                if killed > 200:
                    break
            notes = f"{killed} workers killed (SIGKILL) mid-run"
        elif name == "kill-producer":
            _wait(lambda: len(cluster.published()) >= messages // 2, 600)
            producer.send_signal(signal.SIGKILL)
            producer.wait()
            sent = cluster.published()
            notes = f"producer killed after {len(sent)} confirmed publishes"
            producer = cluster.producer(max(sent) + 1 if sent else 0, messages)
        elif expiring:
            next_revoke = time.monotonic() + revoke_every
            deadline = time.monotonic() + 1800
            while producer.poll() is None or len(set(cluster.runs())) < messages:
                if time.monotonic() > deadline:
                    break  # stalled: the checks below report what was lost
                time.sleep(0.5)
                if time.monotonic() >= next_revoke:
                    cluster.proxy.expire_credentials()
                    revoked += 1
                    next_revoke += revoke_every
        producer.wait()
        published = cluster.published()
        cluster.wait_for(set(published), 600)
        time.sleep(2 * LEASE_SECONDS)  # late duplicates, if any, arrive by now
        delivered, lost, duplicated = count(published, cluster.runs())
        renewals = expired = None
        if expiring:
            renewals = cluster.proxy.request_counts().get("sts.AssumeRole", 0)
            expired = sum(cluster.proxy.expired_token_counts().values())
            notes = (
                f"sessions of {session_s:g} s, all revoked {revoked} times: {renewals} "
                f"sts:AssumeRole, {expired} requests answered ExpiredToken"
            )
        return Outcome(
            scenario=name,
            published=len(set(published)),
            delivered=delivered,
            lost=lost,
            duplicated=duplicated,
            seconds=round(time.monotonic() - started, 1),
            recovery_s=None if recovery is None else round(recovery, 1),
            worker_cpu_during_outage=None if outage_cpu is None else round(outage_cpu, 3),
            faults=cluster.proxy.fault_counts(),
            unanswered_sends=unanswered_sends(cluster.proxy.fault_counts_by_operation()),
            renewals=renewals,
            expired_answers=expired,
            notes=notes,
        )
    finally:
        cluster.close()


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the chaos run stalled")
        time.sleep(0.2)


def produce(start: int, stop: int, published: Path) -> int:
    """Publish tasks ``start``..``stop - 1``; record each number once its publish returned."""
    from bench import chaos_app

    fd = os.open(published, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for number in range(start, stop):
        while True:
            try:
                chaos_app.record.delay(number)
                break
            except Exception as exc:  # a publish that raised was not confirmed: try again
                print(f"publish {number} failed, retrying: {exc}", file=sys.stderr)
                time.sleep(0.5)
        os.write(fd, f"{number}\n".encode())
    chaos_app.app.close()
    return 0


def format_table(outcomes: Sequence[Outcome]) -> str:
    header = (
        "scenario",
        "published",
        "delivered",
        "lost",
        "duplicated",
        "sends unanswered",
        "recovery s",
        "worker CPU in outage",
        "seconds",
        "notes",
    )
    rows = [
        (
            o.scenario,
            str(o.published),
            str(o.delivered),
            str(o.lost),
            str(o.duplicated),
            str(o.unanswered_sends),
            "-" if o.recovery_s is None else f"{o.recovery_s:g}",
            "-" if o.worker_cpu_during_outage is None else f"{o.worker_cpu_during_outage:.3f} s/s",
            f"{o.seconds:g}",
            o.notes,
        )
        for o in outcomes
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["produce"]:
        return produce(int(args[1]), int(args[2]), Path(args[3]))
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--outage", type=float, default=30.0, help="outage seconds")
    parser.add_argument(
        "--session",
        type=float,
        default=SESSION_SECONDS,
        help="STS session seconds with expiring-credentials",
    )
    parser.add_argument("--out", type=Path, help="JSON file (default: bench/results/chaos-*.json)")
    options = parser.parse_args(args)
    chosen = [s.strip() for s in options.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(sorted(unknown))}; use {', '.join(SCENARIOS)}"
        )
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    outcomes = []
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"sqsbus-chaos-{name}-") as workdir:
            print(f"chaos: {name}, {options.messages} messages ...", file=sys.stderr, flush=True)
            outcomes.append(
                run_scenario(
                    name, options.messages, Path(workdir), options.outage, session_s=options.session
                )
            )
    print(format_table(outcomes))
    out = options.out or ROOT / "bench" / "results" / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    print(f"JSON: {out}")
    return 0 if all(o.lost == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
