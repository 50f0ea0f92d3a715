"""What every scenario shares: the two transports, the endpoint and its request count.

Requests are counted at the endpoint, the same way for both transports: the endpoint logs one
line per HTTP request it answered, and :class:`EndpointLog` counts those lines (moto's own
``/moto-api`` health checks excluded; LocalStack's lines, :mod:`bench.localstack`, also name the
operation). Requests the harness makes itself (filling queues,
checking that they are empty) go through :class:`HarnessSQS`, which counts them exactly, and
are subtracted. sqsbus's own count (:data:`sqsbus.aws.GLOBAL_STATS`) is reported beside the
endpoint's as a cross-check.
"""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self

import boto3

from sqsbus.local import LocalEndpoint
from sqsbus.testing.children import first_line

__all__ = [
    "ACCESS_KEY",
    "ENDPOINT_KINDS",
    "LABELS",
    "REGION",
    "SECRET_KEY",
    "TRANSPORTS",
    "BenchEndpoint",
    "Endpoint",
    "EndpointKind",
    "EndpointLog",
    "HarnessSQS",
    "Measured",
    "PhaseCounter",
    "Transport",
    "bench_environment",
    "broker_url",
    "cpu_seconds",
    "kombu_wire_body",
    "make_payload",
    "moto_request",
    "open_endpoint",
    "peak_rss_mb",
    "percentile",
    "process_cpu_seconds",
    "rss_mb",
    "sqsbus_requests",
    "transport_options",
]

Transport = Literal["sqsbus", "kombu"]
EndpointKind = Literal["moto", "localstack"]
ENDPOINT_KINDS: Final[tuple[EndpointKind, ...]] = ("moto", "localstack")
TRANSPORTS: Final[tuple[Transport, ...]] = ("sqsbus", "kombu")
LABELS: Final[Mapping[str, str]] = {"sqsbus": "sqsbus", "kombu": "Kombu SQS"}

REGION: Final = "us-east-1"
ACCESS_KEY: Final = "testing"
SECRET_KEY: Final = "testing"
ROOT: Final = Path(__file__).resolve().parent.parent

#: Seconds the latency proxy gets to print its URL.
_PROXY_START_TIMEOUT: Final = 30.0
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")
_REQUEST: Final = re.compile(r'"(?:GET|POST|PUT|DELETE|HEAD|PATCH|OPTIONS) (\S+) HTTP/[0-9.]+"')


# -- environment -------------------------------------------------------------------------------


def bench_environment(scratch: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for scenario processes: dummy credentials, no AWS config, no proxy.

    Nothing from the user's AWS setup can leak in, loopback never goes through a proxy, and
    moto lets the harness purge a queue more than once a minute (it keeps publish scenarios'
    queues shallow; moto 5.2 enforces AWS's 60-second rule unless told not to).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(scratch / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(scratch / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR="false",
        PYTHONUNBUFFERED="1",
    )
    no_proxy = [p for p in env.get("NO_PROXY", "").split(",") if p]
    no_proxy += ["127.0.0.1", "localhost", "::1"]
    env["NO_PROXY"] = env["no_proxy"] = ",".join(dict.fromkeys(no_proxy))
    path = [str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return env


# -- transports --------------------------------------------------------------------------------


def broker_url(transport: Transport, port: int) -> str:
    """The Kombu/Celery URL of ``transport`` for the local endpoint on ``port``."""
    scheme = "sqsbus" if transport == "sqsbus" else "sqs"
    return f"{scheme}://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:{port}"


def transport_options(transport: Transport, **extra: Any) -> dict[str, Any]:
    """Transport options given to both transports: plain HTTP, the region, then ``extra``.

    Kombu's SQS transport builds ``http://127.0.0.1:PORT`` from the URL only when
    ``is_secure`` is false; sqsbus uses plain HTTP for loopback hosts anyway.
    """
    del transport  # the same options for both
    return {"region": REGION, "is_secure": False, **extra}


def kombu_wire_body(payload: Mapping[str, Any], routing_key: str) -> str:
    """An SQS message body as Kombu's SQS transport writes it (both transports read it).

    Kombu's virtual message envelope, with the JSON payload base64-encoded inside, and the
    whole envelope base64-encoded again (``sqs_base64_encoding``, on by default).
    """
    inner = base64.b64encode(json.dumps(payload).encode()).decode()
    envelope = {
        "body": inner,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {},
        "properties": {
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": routing_key},
            "delivery_mode": 2,
            "delivery_tag": str(uuid.uuid4()),
            "priority": 0,
        },
    }
    return base64.b64encode(json.dumps(envelope).encode()).decode()


def make_payload(number: int, pad: int) -> dict[str, Any]:
    """A message payload: its number, the time it was made, and ``pad`` bytes of padding."""
    return {"i": number, "t": time.monotonic(), "pad": "x" * pad}


def sqsbus_requests() -> int:
    """HTTP requests sqsbus made in this process so far (all its connections)."""
    from sqsbus.aws import GLOBAL_STATS

    return GLOBAL_STATS.total_http_requests


def sqsbus_requests_by_operation() -> dict[str, int]:
    from sqsbus.aws import GLOBAL_STATS

    return GLOBAL_STATS.http_requests()


# -- the endpoint ------------------------------------------------------------------------------


def moto_request(line: str) -> str | None:
    """``""`` (operation unknown) for a request line of moto's log, None for other lines.

    moto logs ``"POST / HTTP/1.1" 200 -``: the operation is in a header, not in the line.
    """
    match = _REQUEST.search(line)
    if match is None or match.group(1).startswith("/moto-api"):
        return None
    return ""


class EndpointLog:
    """Counts the requests an endpoint logged, reading its log file incrementally.

    ``parse`` tells a request line from the others and names its operation (``""`` when
    the line does not say); it is :func:`moto_request` for moto's log. Only complete lines
    count; the endpoint writes a line once it has answered the request. With ``arrivals``
    on, :meth:`poll` also records when it first saw each request line (the caller polls
    often enough for that to be the time of the answer, give or take).
    """

    def __init__(self, path: Path, parse: Callable[[str], str | None] = moto_request) -> None:
        self.path = path
        self.parse = parse
        self._offset = 0
        self._partial = b""
        self._count = 0
        self._lock = threading.Lock()
        self.arrivals: list[float] = []
        #: Requests by operation (``sqs.SendMessageBatch``), when the log names them.
        self.by_operation: Counter[str] = Counter()

    def poll(self) -> int:
        """Read what was appended since the last call; return the total request count."""
        with self._lock:
            try:
                with self.path.open("rb") as log:
                    log.seek(self._offset)
                    data = log.read()
            except FileNotFoundError:
                return self._count
            now = time.monotonic()
            self._offset += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            for raw in lines:
                operation = self.parse(_ANSI.sub("", raw.decode("utf-8", errors="replace")))
                if operation is not None:
                    self._count += 1
                    self.arrivals.append(now)
                    if operation:
                        self.by_operation[operation] += 1
            return self._count

    def operations(self) -> dict[str, int]:
        """A copy of :attr:`by_operation` (after the last :meth:`poll`)."""
        with self._lock:
            return dict(self.by_operation)


class BenchEndpoint(Protocol):
    """What the scenarios use of an endpoint: where it is, its request log, start/stop."""

    log: EndpointLog

    @property
    def port(self) -> int: ...

    @property
    def url(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    def start(self) -> Self: ...

    def stop(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Managed:
    """``with`` for an endpoint: :meth:`start` on entry, :meth:`stop` on exit."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Endpoint(Managed):
    """A fresh moto server (:class:`sqsbus.local.LocalEndpoint`) logging to ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"moto-{uuid.uuid4().hex[:8]}.log"
        self.local = LocalEndpoint(log_file=self.log_path)
        self.log = EndpointLog(self.log_path)

    @property
    def port(self) -> int:
        return self.local.port

    @property
    def url(self) -> str:
        return self.local.url

    @property
    def pid(self) -> int | None:
        return self.local.pid

    def start(self) -> Self:
        self.local.start()
        return self

    def stop(self) -> None:
        self.local.stop()


class DelayedEndpoint(Managed):
    """``inner`` behind sqsbus's fault proxy adding ``latency_ms`` to every request.

    Local endpoints answer in about a millisecond, AWS in several: this shows what
    round trips cost each transport.  The proxy runs in its own process, so its CPU is
    not counted as the client's; requests are still counted at ``inner``'s log.
    """

    def __init__(self, inner: BenchEndpoint, latency_ms: float) -> None:
        self.inner = inner
        self.latency_ms = latency_ms
        self.log = inner.log
        self._proxy: subprocess.Popen[str] | None = None
        self._url = ""

    @property
    def port(self) -> int:
        return int(self._url.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return self._url

    @property
    def pid(self) -> int | None:
        return self.inner.pid

    def start(self) -> Self:
        self.inner.start()
        self._proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sqsbus.testing.proxy",
                "--upstream",
                self.inner.url,
                "--latency-ms",
                f"{self.latency_ms:g}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            line = first_line(self._proxy, what="the latency proxy", timeout=_PROXY_START_TIMEOUT)
            if not line.startswith("http://"):
                raise RuntimeError(f"the latency proxy did not start (it printed {line!r})")
        except BaseException:
            self.stop()
            raise
        self._url = line
        return self

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.terminate()
            try:
                self._proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proxy.kill()
            self._proxy = None
        self.inner.stop()


def open_endpoint(kind: EndpointKind, workdir: Path, latency_ms: float = 0.0) -> BenchEndpoint:
    """A new (not yet started) endpoint of ``kind``: moto's server or LocalStack, behind a
    proxy adding ``latency_ms`` to every request if that is not 0."""
    inner: BenchEndpoint
    if kind == "moto":
        inner = Endpoint(workdir)
    elif kind == "localstack":
        from bench.localstack import LocalStackEndpoint

        inner = LocalStackEndpoint(workdir)
    else:
        raise ValueError(f"unknown endpoint {kind!r}; use one of {', '.join(ENDPOINT_KINDS)}")
    return DelayedEndpoint(inner, latency_ms) if latency_ms else inner


class HarnessSQS:
    """The harness's own boto3 SQS client; counts its HTTP requests (retries included)."""

    def __init__(self, endpoint_url: str) -> None:
        self.client: Any = boto3.session.Session().client(
            "sqs",
            endpoint_url=endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        self._lock = threading.Lock()
        self._requests = 0
        self._by_operation: Counter[str] = Counter()
        #: Held during the harness's background calls (the purger), so that a phase never
        #: starts or ends with one in flight (counted here but not yet logged, or the reverse).
        self.busy = threading.Lock()
        self.client.meta.events.register("before-send.sqs", self._count)

    def _count(self, event_name: str = "", **_: Any) -> None:
        operation = event_name.removeprefix("before-send.")  # sqs.SendMessageBatch
        with self._lock:
            self._requests += 1
            self._by_operation[operation] += 1

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    def operations(self) -> dict[str, int]:
        """Requests so far by operation, named as LocalStack logs them (``sqs.GetQueueUrl``)."""
        with self._lock:
            return dict(self._by_operation)

    def create_queue(self, name: str) -> str:
        return str(self.client.create_queue(QueueName=name)["QueueUrl"])

    def fill(self, url: str, bodies: Sequence[str]) -> None:
        """Send ``bodies`` to ``url`` with SendMessageBatch, 10 at a time."""
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            answer = self.client.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)],
            )
            if answer.get("Failed"):
                raise RuntimeError(f"filling {url}: {answer['Failed']}")

    def depth(self, url: str) -> int:
        """Messages in ``url``, visible or in flight."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def wait_empty(self, urls: Sequence[str], timeout: float, interval: float = 0.02) -> None:
        """Wait until every queue in ``urls`` holds no message (all deleted)."""
        deadline = time.monotonic() + timeout
        pending = list(urls)
        while pending:
            pending = [url for url in pending if self.depth(url)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"queues still hold messages after {timeout:g} s: {pending}")
            time.sleep(interval)

    def purge(self, url: str) -> None:
        with self.busy:
            self.client.purge_queue(QueueUrl=url)


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Measured:
    """What happened between :meth:`PhaseCounter.start` and :meth:`PhaseCounter.stop`."""

    seconds: float = 0.0
    endpoint_requests: int = 0
    harness_requests: int = 0
    sqsbus_requests: int | None = None
    sqsbus_by_operation: dict[str, int] = field(default_factory=dict)
    #: The transport's requests by operation as the endpoint logged them (the harness's own
    #: subtracted); empty when the endpoint's log does not name operations (moto).
    endpoint_by_operation: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    #: CPU time the endpoint's server process used meanwhile (None if it could not be read):
    #: near ``seconds`` means the endpoint, one Python process, was the bottleneck.
    endpoint_cpu_seconds: float | None = None

    @property
    def transport_requests(self) -> int:
        """Requests the transport made: the endpoint's count less the harness's own."""
        return self.endpoint_requests - self.harness_requests

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 4),
            "endpoint_requests": self.endpoint_requests,
            "harness_requests": self.harness_requests,
            "transport_requests": self.transport_requests,
            "sqsbus_requests": self.sqsbus_requests,
            "sqsbus_by_operation": self.sqsbus_by_operation,
            "endpoint_by_operation": self.endpoint_by_operation,
            "cpu_seconds": round(self.cpu_seconds, 4),
            "endpoint_cpu_seconds": None
            if self.endpoint_cpu_seconds is None
            else round(self.endpoint_cpu_seconds, 4),
        }


@dataclass(frozen=True)
class _Snapshot:
    at: float
    logged: int
    logged_ops: dict[str, int]
    harness: int
    harness_ops: dict[str, int]
    sqsbus: int
    sqsbus_ops: dict[str, int]
    cpu: float
    endpoint_cpu: float | None


def _difference(now: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {
        name: count - before.get(name, 0)
        for name, count in sorted(now.items())
        if count - before.get(name, 0)
    }


class PhaseCounter:
    """Counts requests (endpoint, harness, sqsbus) and time over one measured phase."""

    def __init__(self, endpoint: BenchEndpoint, harness: HarnessSQS, transport: Transport) -> None:
        self.endpoint = endpoint
        self.harness = harness
        self.transport = transport
        self._start: _Snapshot | None = None

    def _snapshot(self, logged: int) -> _Snapshot:
        own = self.transport == "sqsbus"
        return _Snapshot(
            at=time.monotonic(),
            logged=logged,
            logged_ops=self.endpoint.log.operations(),
            harness=self.harness.requests,
            harness_ops=self.harness.operations(),
            sqsbus=sqsbus_requests() if own else 0,
            sqsbus_ops=sqsbus_requests_by_operation() if own else {},
            cpu=cpu_seconds(),
            endpoint_cpu=process_cpu_seconds(self.endpoint.pid),
        )

    def start(self, settle: float = 0.02) -> None:
        with self.harness.busy:
            time.sleep(settle)  # the endpoint logs a request just after answering it
            self._start = self._snapshot(self.endpoint.log.poll())

    def stop(self, settle: float = 0.05) -> Measured:
        """End the phase; ``settle`` lets the endpoint log the answers it just sent."""
        assert self._start is not None, "start() first"
        first = self._start
        with self.harness.busy:
            last = self._snapshot(0)
            time.sleep(settle)
            logged = self.endpoint.log.poll()
            logged_ops = self.endpoint.log.operations()
        measured = Measured(
            seconds=last.at - first.at,
            endpoint_requests=logged - first.logged,
            harness_requests=last.harness - first.harness,
            cpu_seconds=last.cpu - first.cpu,
        )
        if last.endpoint_cpu is not None and first.endpoint_cpu is not None:
            measured.endpoint_cpu_seconds = last.endpoint_cpu - first.endpoint_cpu
        if logged_ops:
            endpoint_ops = _difference(logged_ops, first.logged_ops)
            for name, count in _difference(last.harness_ops, first.harness_ops).items():
                endpoint_ops[name] = endpoint_ops.get(name, 0) - count
            measured.endpoint_by_operation = {n: c for n, c in endpoint_ops.items() if c}
        if self.transport == "sqsbus":
            measured.sqsbus_requests = last.sqsbus - first.sqsbus
            measured.sqsbus_by_operation = _difference(last.sqsbus_ops, first.sqsbus_ops)
        return measured


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, linearly interpolated."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cpu_seconds() -> float:
    """User + system CPU time of this process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of process ``pid`` (Linux /proc), None if unknown."""
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's current resident set size, in MiB."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()
