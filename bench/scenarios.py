"""The benchmark's scenarios; each runs in its own process against its own fresh endpoint.

``python -m bench.scenarios --scenario NAME --transport T --params JSON --workdir DIR --out F``
runs one scenario for one transport and writes its result (figures and details) as JSON to F.
:mod:`bench.runner` starts one such process per scenario, variant and transport, so that every
measurement starts from an empty moto server, an unpolluted process (CPU, memory, sqsbus's
process-wide request counts) and no thread left over from a previous scenario.

Scenarios (``NAME``):

``ceiling``    the endpoint alone: raw boto3 SendMessageBatch(10), Receive(10) +
               DeleteMessageBatch (transport ``endpoint``)
``e2e``        requests per message end to end: producers publish while a consumer consumes
               and acks
``publish``    publish throughput with ``threads`` producer threads, each with its own
               Connection and Producer
``consume``    consume + ack throughput of one consumer over ``queues`` pre-filled queues
``celery``     a Celery worker subprocess runs a ``group`` of trivial tasks
``latency``    publish-to-handler latency of a consumer listening on 10 empty queues
``idle``       requests per idle queue per hour of a consumer on 10 empty queues
``footprint``  client CPU per 10,000 messages consumed and peak RSS, in a child process
``metrics``    that CPU with sqsbus's metrics off, API only, and SDK recording (sqsbus only)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final, cast

from bench.common import (
    ENDPOINT_KINDS,
    BenchEndpoint,
    EndpointKind,
    HarnessSQS,
    Measured,
    PhaseCounter,
    Transport,
    broker_url,
    cpu_seconds,
    kombu_wire_body,
    make_payload,
    open_endpoint,
    peak_rss_mb,
    percentile,
    process_cpu_seconds,
    rss_mb,
    transport_options,
)
from sqsbus.testing.worker import CeleryWorker

__all__ = ["SCENARIOS", "main"]

Params = dict[str, Any]
Result = dict[str, Any]

#: Seconds a consumer may take to finish before the scenario is declared failed.
CONSUME_TIMEOUT: Final = 240.0
#: Seconds closing connections may take at the end of a scenario before the process exits
#: anyway (sqsbus waits for in-flight long polls at close; that is not what is measured).
CLOSE_TIMEOUT: Final = 1.0
PUBLISH_QUEUE: Final = "bench-publish"
#: Seconds the Celery worker gets for its warm shutdown before its process group is killed.
WORKER_STOP_TIMEOUT: Final = 20.0


class ScenarioError(RuntimeError):
    """A scenario could not produce its figures."""


def _kombu(module: str = "kombu") -> Any:
    """A Kombu module, used as ``Any``: Kombu's own functions carry no annotations."""
    return importlib.import_module(module)


# -- helpers -----------------------------------------------------------------------------------


def _endpoint(kind: EndpointKind, workdir: Path, params: Params) -> BenchEndpoint:
    """A fresh endpoint of ``kind``, behind a proxy adding ``params["latency_ms"]`` to each
    request (``--latency-ms``) when that is set."""
    return open_endpoint(kind, workdir, float(params.get("latency_ms", 0)))


def _connection(transport: Transport, endpoint: BenchEndpoint, **options: Any) -> Any:
    """A connected Kombu Connection of ``transport`` to ``endpoint``."""
    if transport == "sqsbus":
        import sqsbus  # noqa: F401  (registers sqsbus://)
    conn = _kombu().Connection(
        broker_url(transport, endpoint.port),
        transport_options=transport_options(transport, **options),
    )
    conn.connect()
    return conn


def _producer_options(transport: Transport, params: Params) -> dict[str, Any]:
    """``publish_linger_ms`` for sqsbus producers of a ``linger_ms`` variant (Kombu has none)."""
    linger = int(params.get("linger_ms", 0))
    return {"publish_linger_ms": linger} if transport == "sqsbus" and linger else {}


def _publishing(transport: Transport, params: Params) -> contextlib.AbstractContextManager[Any]:
    """``sqsbus.batched_publishing()`` around the publishes of a ``batched`` variant (for
    sqsbus: Kombu has none, and publishes as usual)."""
    if transport == "sqsbus" and params.get("batched"):
        import sqsbus

        return sqsbus.batched_publishing()
    return contextlib.nullcontext()


def _flush_lingering(transport: Transport, params: Params) -> None:
    """Wait until lingering sqsbus messages are sent (part of the measured publish)."""
    if _producer_options(transport, params):
        from sqsbus.engine.group_commit import GROUP_COMMIT

        if not GROUP_COMMIT.flush() or GROUP_COMMIT.lost:
            raise ScenarioError(f"lingering publishes failed ({GROUP_COMMIT.lost} lost)")


def _endpoint_of(transport: Transport, conn: Any) -> str:
    """Where ``conn`` sends its requests, as the transport itself says (checked: http)."""
    channel = conn.default_channel
    if transport == "kombu":
        url = str(channel.sqs().meta.endpoint_url)
    else:
        url = str(conn.transport.options.endpoint_url)
    return url


def _queue(name: str) -> Any:
    """A queue on Kombu's default exchange: no binding, no SNS, the same for both."""
    return _kombu().Queue(name, routing_key=name)


def _drain(conn: Any, done: Callable[[], bool], timeout: float = CONSUME_TIMEOUT) -> None:
    """Call ``conn.drain_events`` until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise ScenarioError(f"consumer did not finish within {timeout:g} s")
        with contextlib.suppress(TimeoutError, socket.timeout):
            conn.drain_events(timeout=0.5)


def _close_quietly(*closers: Callable[[], object], timeout: float = CLOSE_TIMEOUT) -> None:
    """Run ``closers`` in a daemon thread; give up waiting after ``timeout`` seconds."""

    def close_all() -> None:
        for close in closers:
            with contextlib.suppress(Exception):
                close()

    thread = threading.Thread(target=close_all, name="bench-close", daemon=True)
    thread.start()
    thread.join(timeout)


class Counter:
    """A thread-safe count, with a condition to wait for a target."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.value = 0

    def add(self, amount: int = 1) -> None:
        with self._cond:
            self.value += amount
            self._cond.notify_all()

    def wait_for(self, target: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.value >= target, timeout)

    def ack_and_count(self, body: Any, message: Any) -> None:
        """A Kombu consumer callback: ack the message, count it."""
        message.ack()
        self.add()


def _requests_figures(measured: Measured, messages: int) -> Params:
    per = measured.transport_requests / messages if messages else None
    own = (
        measured.sqsbus_requests / messages
        if measured.sqsbus_requests is not None and messages
        else None
    )
    return {"requests_per_message": per, "sqsbus_requests_per_message": own}


def _fill(harness: HarnessSQS, names: Sequence[str], per_queue: int, pad: int) -> list[str]:
    """Create ``names`` and put ``per_queue`` Kombu-format messages in each; return URLs."""
    urls = []
    for name in names:
        url = harness.create_queue(name)
        harness.fill(url, [kombu_wire_body(make_payload(i, pad), name) for i in range(per_queue)])
        urls.append(url)
    return urls


@contextlib.contextmanager
def _purging(harness: HarnessSQS, url: str, interval: float) -> Iterator[None]:
    """Purge ``url`` every ``interval`` seconds meanwhile: publish targets stay shallow.

    moto's every call on a queue costs time in proportion to the messages it holds, so a
    queue only published to would slow each publish down as it grows.
    """
    stop = threading.Event()

    def purge() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):
                harness.purge(url)

    thread = threading.Thread(target=purge, name="bench-purger", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class DepthSampler:
    """Samples a queue's depth every ``interval`` seconds meanwhile (harness requests).

    moto slows down in proportion to queue depth, so a run whose queue grew deep is slower
    for that reason alone; the deepest sample tells the reader when that happened.
    """

    def __init__(self, harness: HarnessSQS, url: str, interval: float = 0.5) -> None:
        self.harness = harness
        self.url = url
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-depth", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception), self.harness.busy:
                self.samples.append(self.harness.depth(self.url))

    def __enter__(self) -> DepthSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def max(self) -> int | None:
        return max(self.samples) if self.samples else None


# -- the endpoint's ceiling --------------------------------------------------------------------


def run_ceiling(
    transport: Transport, params: Params, workdir: Path, kind: EndpointKind = "moto"
) -> Result:
    """Raw boto3 batched calls: what the endpoint can do at best, serially and concurrently.

    One thread: ``SendMessageBatch`` of 10 into one queue; ``ReceiveMessage`` of 10 +
    ``DeleteMessageBatch`` over 1 and over ``queues`` queues. Then the same with ``threads``
    threads sending (each its own client) and one thread per queue receiving: a serial client
    waits for every answer, so on a fast endpoint only concurrency shows what the server can do.
    """
    messages = int(params["publish_messages"])
    per_queue = int(params["per_queue"])
    queues = int(params["queues"])
    threads = int(params.get("threads", 8))
    pad = int(params["pad"])
    figures: Params = {}
    details: Params = {}
    with _endpoint(kind, workdir, params) as endpoint:
        harness = HarnessSQS(endpoint.url)
        url = harness.create_queue(PUBLISH_QUEUE)
        bodies = [kombu_wire_body(make_payload(i, pad), PUBLISH_QUEUE) for i in range(messages)]
        senders = [HarnessSQS(endpoint.url) for _ in range(threads)]
        for sender in [harness, *senders]:
            sender.fill(url, bodies[:10])  # warm the clients up
        for name, clients in (("send_batch", [harness]), ("send_batch_concurrent", senders)):
            shares = [bodies[i :: len(clients)] for i in range(len(clients))]
            with _purging(harness, url, float(params["purge_interval"])):
                started = time.monotonic()
                server_cpu = process_cpu_seconds(endpoint.pid)
                _concurrently(
                    [lambda c=c, b=b: c.fill(url, b) for c, b in zip(clients, shares, strict=True)]
                )
                seconds = time.monotonic() - started
                details[f"{name}_endpoint_cpu_share"] = _share(endpoint, server_cpu, seconds)
            figures[f"{name}_msgs_per_s"] = messages / seconds
            details[f"{name}_seconds"] = seconds

        runs = [("1q", 1, False), ("nq", queues, False), ("nq_concurrent", queues, True)]
        for label, count, parallel in runs:
            names = [f"bench-ceiling-{label.replace('_', '-')}-{i}" for i in range(count)]
            urls = _fill(harness, names, per_queue, pad)
            clients = [HarnessSQS(endpoint.url).client for _ in urls] if parallel else []
            received: list[int] = []
            started = time.monotonic()
            server_cpu = process_cpu_seconds(endpoint.pid)
            if parallel:
                _concurrently(
                    [
                        lambda c=c, u=u, r=received: r.append(_receive_delete(c, [u]))
                        for c, u in zip(clients, urls, strict=True)
                    ]
                )
            else:
                received.append(_receive_delete(harness.client, urls))
            seconds = time.monotonic() - started
            if sum(received) != count * per_queue:
                raise ScenarioError(f"ceiling: received {sum(received)} of {count * per_queue}")
            figures[f"receive_delete_msgs_per_s_{label}"] = sum(received) / seconds
            details[f"receive_delete_seconds_{label}"] = seconds
            details[f"receive_delete_endpoint_cpu_share_{label}"] = _share(
                endpoint, server_cpu, seconds
            )
    return {"figures": figures, "details": details}


def _concurrently(calls: Sequence[Callable[[], object]]) -> None:
    """Run ``calls`` (one in this thread if there is only one) and raise the first error."""
    if len(calls) == 1:
        calls[0]()
        return
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            call()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(c,), daemon=True) for c in calls]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise ScenarioError(f"ceiling: {errors[0]!r}") from errors[0]


def _receive_delete(client: Any, urls: Sequence[str]) -> int:
    """Receive (10) and batch-delete from ``urls`` in turn until each is empty; return count."""
    received = 0
    pending = list(urls)
    while pending:
        for queue_url in list(pending):
            answer = client.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            batch = answer.get("Messages") or []
            if not batch:
                pending.remove(queue_url)
                continue
            client.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
            received += len(batch)
    return received


def _share(endpoint: BenchEndpoint, cpu_before: float | None, seconds: float) -> float | None:
    """The endpoint process's CPU time since ``cpu_before`` over ``seconds`` of wall time."""
    cpu_after = process_cpu_seconds(endpoint.pid)
    if cpu_before is None or cpu_after is None or seconds <= 0:
        return None
    return (cpu_after - cpu_before) / seconds


# -- requests per message end to end ------------------------------------------------------------


def run_e2e(
    transport: Transport, params: Params, workdir: Path, kind: EndpointKind = "moto"
) -> Result:
    """``producers`` threads publish N messages while one consumer consumes and acks them."""
    kombu = _kombu()
    total = int(params["messages"])
    producers = int(params["producers"])
    pad = int(params["pad"])
    name = "bench-e2e"
    with _endpoint(kind, workdir, params) as endpoint:
        harness = HarnessSQS(endpoint.url)
        url = harness.create_queue(name)
        queue = _queue(name)
        handled = Counter()

        consumer_conn = _connection(transport, endpoint)
        consumer = kombu.Consumer(
            consumer_conn.default_channel,
            [queue],
            callbacks=[handled.ack_and_count],
            accept=["json"],
            prefetch_count=int(params["prefetch"]),
        )
        consumer.declare()
        lingering = _producer_options(transport, params)
        conns = [_connection(transport, endpoint, **lingering) for _ in range(producers)]
        producer_objs = [kombu.Producer(c.default_channel, serializer="json") for c in conns]
        for producer in producer_objs:
            queue(producer.channel).declare()
        shares = [
            total // producers + (1 if i < total % producers else 0) for i in range(producers)
        ]
        barrier = threading.Barrier(producers + 1)
        errors: list[BaseException] = []

        def publish(producer: Any, share: int, offset: int) -> None:
            try:
                barrier.wait()
                for i in range(share):
                    producer.publish(make_payload(offset + i, pad), routing_key=name)
            except BaseException as exc:
                errors.append(exc)

        def consume() -> None:
            try:
                _drain(consumer_conn, lambda: handled.value >= total)
            except BaseException as exc:
                errors.append(exc)

        counter = PhaseCounter(endpoint, harness, transport)
        counter.start()
        consumer.consume()
        threads = [
            threading.Thread(target=publish, args=(p, s, sum(shares[:i])), daemon=True)
            for i, (p, s) in enumerate(zip(producer_objs, shares, strict=True))
        ]
        consume_thread = threading.Thread(target=consume, daemon=True)
        consume_thread.start()
        for thread in threads:
            thread.start()
        with DepthSampler(harness, url) as depth:
            barrier.wait()
            for thread in threads:
                thread.join()
            consume_thread.join()
        if errors:
            raise ScenarioError(f"e2e: {errors[0]!r}") from errors[0]
        harness.wait_empty([url], timeout=60)
        measured = counter.stop()
        endpoint_url = _endpoint_of(transport, consumer_conn)
        _close_quietly(consumer_conn.release, *(c.release for c in conns))
    return {
        "figures": {
            **_requests_figures(measured, total),
            "msgs_per_s": total / measured.seconds,
        },
        "details": {
            "measured": measured.as_dict(),
            "endpoint_url": endpoint_url,
            "max_queue_depth": depth.max,
        },
    }


# -- publish throughput -------------------------------------------------------------------------


def run_publish(
    transport: Transport, params: Params, workdir: Path, kind: EndpointKind = "moto"
) -> Result:
    """``threads`` producer threads, each with its own Connection/Producer, publish N."""
    kombu = _kombu()
    total = int(params["messages"])
    threads_count = int(params["threads"])
    pad = int(params["pad"])
    with _endpoint(kind, workdir, params) as endpoint:
        harness = HarnessSQS(endpoint.url)
        url = harness.create_queue(PUBLISH_QUEUE)
        queue = _queue(PUBLISH_QUEUE)
        lingering = _producer_options(transport, params)
        conns = [_connection(transport, endpoint, **lingering) for _ in range(threads_count)]
        producers = [kombu.Producer(c.default_channel, serializer="json") for c in conns]
        for producer in producers:
            queue(producer.channel).declare()
        shares = [
            total // threads_count + (1 if i < total % threads_count else 0)
            for i in range(threads_count)
        ]
        barrier = threading.Barrier(threads_count + 1)
        errors: list[BaseException] = []

        def publish(producer: Any, share: int) -> None:
            try:
                barrier.wait()
                with _publishing(transport, params):  # a batched variant: confirmed at its end
                    for i in range(share):
                        producer.publish(make_payload(i, pad), routing_key=PUBLISH_QUEUE)
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=publish, args=(p, s), daemon=True)
            for p, s in zip(producers, shares, strict=True)
        ]
        for thread in threads:
            thread.start()
        with _purging(harness, url, float(params["purge_interval"])):
            counter = PhaseCounter(endpoint, harness, transport)
            counter.start()
            barrier.wait()
            for thread in threads:
                thread.join()
            _flush_lingering(transport, params)
            measured = counter.stop()
        if errors:
            raise ScenarioError(f"publish: {errors[0]!r}") from errors[0]
        _close_quietly(*(c.release for c in conns))
    return {
        "figures": {**_requests_figures(measured, total), "msgs_per_s": total / measured.seconds},
        "details": {"measured": measured.as_dict()},
    }


# -- consume + ack throughput -------------------------------------------------------------------


def run_consume(
    transport: Transport, params: Params, workdir: Path, kind: EndpointKind = "moto"
) -> Result:
    """One consumer (drain_events) over ``queues`` queues of ``per_queue`` messages each."""
    kombu = _kombu()
    queues = int(params["queues"])
    per_queue = int(params["per_queue"])
    total = queues * per_queue
    with _endpoint(kind, workdir, params) as endpoint:
        harness = HarnessSQS(endpoint.url)
        names = [f"bench-consume-{i}" for i in range(queues)]
        urls = _fill(harness, names, per_queue, int(params["pad"]))
        handled = Counter()

        conn = _connection(transport, endpoint)
        consumer = kombu.Consumer(
            conn.default_channel,
            [_queue(n) for n in names],
            callbacks=[handled.ack_and_count],
            accept=["json"],
            prefetch_count=int(params["prefetch"]),
        )
        consumer.declare()
        counter = PhaseCounter(endpoint, harness, transport)
        counter.start()
        consumer.consume()
        _drain(conn, lambda: handled.value >= total)
        harness.wait_empty(urls, timeout=60)
        measured = counter.stop()
        _close_quietly(conn.release)
    return {
        "figures": {
            **_requests_figures(measured, total),
            "msgs_per_s": total / measured.seconds,
            "cpu_s_per_10k": measured.cpu_seconds / total * 10_000,
        },
        "details": {"measured": measured.as_dict(), "messages": total},
    }


# -- Celery end to end --------------------------------------------------------------------------


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and all its descendants (Linux /proc)."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    total = 0.0
    family = {pid}
    for _ in range(8):  # worker -> pool processes, and anything below them
        family |= {child for child, (parent, _cpu) in stats.items() if parent in family}
    for member in family:
        if member in stats:
            total += stats[member][1]
    return total


def _read_worker_requests(path: Path) -> dict[str, int] | None:
    """sqsbus's request counts by operation in the worker's main process, if it said."""
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("sqsbus_requests")
    except (OSError, ValueError):
        return None
    return None if value is None else {str(k): int(v) for k, v in value.items()}


def _celery_worker(
    transport: Transport, env: dict[str, str], concurrency: int, log_path: Path
) -> CeleryWorker:
    """The scenario's worker on :mod:`bench.celery_app`, started, ready once it consumes."""
    worker = CeleryWorker(
        "bench.celery_app",
        log_path,
        name=f"bench-{transport}",
        concurrency=concurrency,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return worker.start()


def _wait_done(done: Callable[[], int], target: int, worker: CeleryWorker) -> float:
    """Wait until ``target`` tasks ran; return the monotonic time it happened."""
    deadline = time.monotonic() + CONSUME_TIMEOUT
    while (count := done()) < target:
        if time.monotonic() > deadline:
            raise ScenarioError(f"only {count} of {target} tasks ran within {CONSUME_TIMEOUT:g} s")
        if not worker.running:
            raise ScenarioError(f"the worker exited; see {worker.log_file}")
        time.sleep(0.005)
    return time.monotonic()


def run_celery(
    transport: Transport, params: Params, workdir: Path, kind: EndpointKind = "moto"
) -> Result:
    """A worker (prefork, ``concurrency``) runs ``tasks`` trivial tasks published by a group.

    By default the group is published while the worker runs (end to end: the one-thread
    publish of a group bounds both transports).  With ``backlog`` the group is published
    first and the worker started afterwards: tasks/s is then the worker's own rate, from its
    first task run to its last.
    """
    # A Celery worker consumes from Kombu's SQS through pycurl (its asynchronous client).
    if transport == "kombu" and importlib.util.find_spec("pycurl") is None:
        return {
            "figures": {
                "tasks_per_s": None,
                "requests_per_task": None,
                "worker_cpu_s_per_10k": None,
            },
            "details": {"unavailable": "Kombu's SQS worker needs pycurl, not installed"},
        }
    from celery import group

    from bench import celery_app

    tasks = int(params["tasks"])
    concurrency = int(params["concurrency"])
    backlog = bool(params.get("backlog"))
    done_file = workdir / "celery-done"
    ready_file = workdir / "celery-ready"
    stats_file = workdir / "celery-stats"
    done_file.write_bytes(b"")
    for stale in (ready_file, stats_file):
        stale.unlink(missing_ok=True)

    def done() -> int:
        return done_file.stat().st_size

    with _endpoint(kind, workdir, params) as endpoint:
        harness = HarnessSQS(endpoint.url)
        url = broker_url(transport, endpoint.port)
        options = transport_options(transport)
        env = {
            **os.environ,
            **celery_app.settings_env(
                broker_url=url,
                transport_options=options,
                done_file=done_file,
                ready_file=ready_file,
                stats_file=stats_file,
            ),
        }
        worker_log = workdir / f"celery-worker-{transport}.log"
        celery_app.configure(url, {**options, **_producer_options(transport, params)})
        worker: CeleryWorker | None = None
        see_log = f"; see {worker_log}"
        try:
            if backlog:
                publish_started = time.monotonic()
                with _publishing(transport, params):
                    group(celery_app.noop.s(i) for i in range(tasks)).apply_async()
                publish_seconds = time.monotonic() - publish_started
                queue_url = harness.client.get_queue_url(QueueName=celery_app.QUEUE)["QueueUrl"]
                worker = _celery_worker(transport, env, concurrency, worker_log)
                ready_after = worker.wait_ready(ready_file.exists, context=lambda: see_log)
                first = _wait_done(done, 1, worker)
                cpu_before = _tree_cpu(worker.pid)
                worker_before = _read_worker_requests(stats_file)
                counter = PhaseCounter(endpoint, harness, transport)
                counter.start()
                with DepthSampler(harness, queue_url) as depth:
                    last = _wait_done(done, tasks, worker)
                harness.wait_empty([queue_url], timeout=60)
                measured = counter.stop(settle=0.15)
                measured_tasks = tasks - 1
                rate = measured_tasks / (last - first)
            else:
                worker = _celery_worker(transport, env, concurrency, worker_log)
                ready_after = worker.wait_ready(ready_file.exists, context=lambda: see_log)
                # One task first: the producer's connection and queue are set up, the path works.
                celery_app.noop.delay(-1)
                _wait_done(done, 1, worker)
                queue_url = harness.client.get_queue_url(QueueName=celery_app.QUEUE)["QueueUrl"]
                harness.wait_empty([queue_url], timeout=30)
                time.sleep(0.2)

                cpu_before = _tree_cpu(worker.pid)
                worker_before = _read_worker_requests(stats_file)
                counter = PhaseCounter(endpoint, harness, transport)
                counter.start()
                with DepthSampler(harness, queue_url) as depth:
                    publish_started = time.monotonic()
                    with _publishing(transport, params):
                        group(celery_app.noop.s(i) for i in range(tasks)).apply_async()
                    publish_seconds = time.monotonic() - publish_started
                    _wait_done(done, tasks + 1, worker)
                harness.wait_empty([queue_url], timeout=60)
                measured = counter.stop(settle=0.15)
                measured_tasks = tasks
                rate = tasks / measured.seconds
            worker_cpu = _tree_cpu(worker.pid) - cpu_before
            worker_after = _read_worker_requests(stats_file)
        finally:
            _close_quietly(celery_app.app.close)
            if worker is not None:
                worker.stop(WORKER_STOP_TIMEOUT)
    worker_ops: dict[str, int] | None = None
    if worker_after is not None and worker_before is not None:
        worker_ops = {
            name: count - worker_before.get(name, 0)
            for name, count in sorted(worker_after.items())
            if count - worker_before.get(name, 0)
        }
    worker_requests = None if worker_ops is None else sum(worker_ops.values())
    own = (
        measured.sqsbus_requests + worker_requests
        if measured.sqsbus_requests is not None and worker_requests is not None
        else None
    )
    return {
        "figures": {
            "tasks_per_s": rate,
            "requests_per_task": measured.transport_requests / measured_tasks,
            "sqsbus_requests_per_task": None if own is None else own / measured_tasks,
            "worker_cpu_s_per_10k": worker_cpu / measured_tasks * 10_000,
        },
        "details": {
            "measured": measured.as_dict(),
            "sqsbus_requests_worker": worker_requests,
            "sqsbus_worker_by_operation": worker_ops,
            "sqsbus_requests_total": own,
            "publish_seconds": publish_seconds,
            "max_queue_depth": depth.max,
            "worker_ready_after_s": ready_after,
            "worker_cpu_seconds": worker_cpu,
        },
    }


# -- idle consumers: latency and cost -----------------------------------------------------------


class _IdleConsumer:
    """A consumer on ``names``, driven by a drain_events loop or by a Kombu Hub."""

    def __init__(
        self,
        transport: Transport,
        endpoint: BenchEndpoint,
        names: Sequence[str],
        mode: str,
        on_message: Callable[[Any, Any], None],
        **options: Any,
    ) -> None:
        kombu = _kombu()
        self.mode = mode
        self.hub: Any = None
        if mode == "hub":
            asynchronous = _kombu("kombu.asynchronous")
            self.hub = asynchronous.Hub()
            asynchronous.set_event_loop(self.hub)  # Kombu's SQS channels take the loop when created
        elif mode != "drain":
            raise ValueError(f"unknown consumer mode {mode!r}")
        self.conn = _connection(transport, endpoint, **options)
        if self.hub is not None:
            self.conn.register_with_event_loop(self.hub)
        self.consumer = kombu.Consumer(
            self.conn.default_channel,
            [_queue(n) for n in names],
            callbacks=[on_message],
            accept=["json"],
            prefetch_count=10,
        )
        self.consumer.declare()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self.consumer.consume()
        target = self._run_hub if self.hub is not None else self._run_drain
        self._thread = threading.Thread(target=target, name="bench-consumer", daemon=True)
        self._thread.start()

    def _run_hub(self) -> None:
        try:
            self.hub.run_forever()
        except BaseException as exc:
            self.error = exc

    def _run_drain(self) -> None:
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError, socket.timeout):
                    self.conn.drain_events(timeout=1.0)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        if self.hub is not None:
            self.hub.stop()
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT)
        _close_quietly(self.conn.release)


def run_latency(
    transport: Transport, params: Params, workdir: Path, kind: EndpointKind = "moto"
) -> Result:
    """Publish-to-handler latency: one message at a time to the last of 10 empty queues.

    Messages are published at stratified random times (one in each ``spacing``-second slot),
    so they sample every phase of the consumer's polling cycle; each carries the time just
    before its publish call, and the handler takes the difference.
    """
    kombu = _kombu()
    queues = int(params["queues"])
    trials = int(params["trials"])
    spacing = float(params["spacing"])
    options = {
        "wait_time_seconds": int(params["wait_time_seconds"]),
        "polling_interval": float(params["polling_interval"]),
    }
    names = [f"bench-latency-{i}" for i in range(queues)]
    target = names[-1]
    latencies: dict[int, float] = {}
    lock = threading.Lock()
    with _endpoint(kind, workdir, params) as endpoint:
        harness = HarnessSQS(endpoint.url)
        for name in names:
            harness.create_queue(name)

        def on_message(body: Any, message: Any) -> None:
            now = time.monotonic()
            with lock:
                latencies[int(body["i"])] = now - float(body["t"])
            message.ack()

        consumer = _IdleConsumer(
            transport, endpoint, names, str(params["mode"]), on_message, **options
        )
        publisher = _connection(transport, endpoint, **options)
        producer = kombu.Producer(publisher.default_channel, serializer="json")
        _queue(target)(producer.channel).declare()
        consumer.start()
        time.sleep(float(params["settle"]))
        rng = random.Random(int(params.get("seed", 4)))
        started = time.monotonic()
        for i in range(trials):
            at = started + (i + rng.random()) * spacing
            time.sleep(max(0.0, at - time.monotonic()))
            producer.publish({"i": i, "t": time.monotonic()}, routing_key=target)
        deadline = time.monotonic() + float(params["tail_timeout"])
        while len(latencies) < trials and time.monotonic() < deadline:
            if consumer.error is not None:
                raise ScenarioError(f"consumer failed: {consumer.error!r}")
            time.sleep(0.01)
        consumer.stop()
        _close_quietly(publisher.release)
    values = [latencies[i] * 1000 for i in sorted(latencies)]
    if len(values) < trials:
        raise ScenarioError(f"latency: {trials - len(values)} of {trials} messages never arrived")
    return {
        "figures": {"p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)},
        "details": {
            "latencies_ms": [round(v, 2) for v in values],
            "mean_ms": sum(values) / len(values),
            "max_ms": max(values),
            "options": options,
            "mode": params["mode"],
        },
    }


def steady_rate(arrivals: Sequence[float], gap: float = 0.5) -> tuple[float | None, int]:
    """Requests per second of an idle consumer's polling, and how many cycles it saw.

    ``arrivals`` are the times its requests were answered, from the moment it started
    consuming. The first answers (those within ``gap`` seconds of the very first) are one per
    queue polled at once: ``n`` long polls (10 when every queue has its own, 1 when queues
    are polled one after another). After that, every ``n`` answers make one more cycle; the
    rate is the answers of the whole cycles after the first over the time they took. This is
    exact for a pattern that repeats, and is not thrown off by a window that ends in the
    middle of a cycle or by queues whose polls drift apart. None if no cycle completed.
    """
    times = sorted(arrivals)
    if not times:
        return None, 0
    first = [t for t in times if t - times[0] < gap]
    per_cycle = len(first)
    cycles = len(times) // per_cycle
    if cycles < 2:
        return None, cycles
    end = times[cycles * per_cycle - 1]
    span = end - first[-1]
    if span <= 0:
        return None, cycles
    return (cycles - 1) * per_cycle / span, cycles


def run_idle(
    transport: Transport, params: Params, workdir: Path, kind: EndpointKind = "moto"
) -> Result:
    """Requests per idle queue per hour of a consumer on ``queues`` empty queues.

    Counted at the endpoint over ``window`` seconds from the start of consuming; the hourly
    figure is extrapolated from the steady request rate (see :func:`steady_rate`).
    """
    queues = int(params["queues"])
    window = float(params["window"])
    options: Params = {}
    if params.get("wait_time_seconds") is not None:  # else: the transport's default
        options["wait_time_seconds"] = int(params["wait_time_seconds"])
    if params.get("polling_interval") is not None:
        options["polling_interval"] = float(params["polling_interval"])
    names = [f"bench-idle-{i}" for i in range(queues)]
    with _endpoint(kind, workdir, params) as endpoint:
        harness = HarnessSQS(endpoint.url)
        for name in names:
            harness.create_queue(name)

        def on_message(body: Any, message: Any) -> None:
            message.ack()

        consumer = _IdleConsumer(
            transport, endpoint, names, str(params["mode"]), on_message, **options
        )
        counter = PhaseCounter(endpoint, harness, transport)
        counter.start()
        before = len(endpoint.log.arrivals)
        consumer.start()
        started = time.monotonic()
        while time.monotonic() - started < window:
            endpoint.log.poll()
            time.sleep(0.02)
        measured = counter.stop(settle=0.0)
        arrivals = [at - started for at in endpoint.log.arrivals[before:]]
        in_effect = _wait_time_in_effect(transport, consumer.conn)
        if consumer.error is not None:
            raise ScenarioError(f"consumer failed: {consumer.error!r}")
        consumer.stop()
    rate, cycles = steady_rate(arrivals)
    in_window = measured.transport_requests
    naive = in_window / queues / window * 3600
    return {
        "figures": {
            "requests_per_queue_hour": None if rate is None else rate / queues * 3600,
        },
        "details": {
            "window_s": window,
            "requests_in_window": in_window,
            "naive_requests_per_queue_hour": naive,
            "cycles": cycles,
            "answer_times_s": [round(a, 3) for a in arrivals],
            "sqsbus_requests_in_window": measured.sqsbus_requests,
            "options": options,
            "wait_time_seconds_in_effect": in_effect,
            "mode": params["mode"],
        },
    }


def _wait_time_in_effect(transport: Transport, conn: Any) -> int:
    if transport == "kombu":
        return int(conn.default_channel.wait_time_seconds)
    return int(conn.transport.options.wait_time_seconds)


# -- client CPU and memory ----------------------------------------------------------------------


def run_footprint(
    transport: Transport, params: Params, workdir: Path, kind: EndpointKind = "moto"
) -> Result:
    """CPU per 10,000 messages and peak RSS of a consuming process with ``prefetch``.

    This process fills the queues; a child process (nothing in it but the consumer) consumes
    and acks them all, and reports its CPU time over the consuming phase and its peak RSS.
    """
    queues = int(params["queues"])
    per_queue = int(params["per_queue"])
    total = queues * per_queue
    with _endpoint(kind, workdir, params) as endpoint:
        harness = HarnessSQS(endpoint.url)
        names = [f"bench-footprint-{i}" for i in range(queues)]
        urls = _fill(harness, names, per_queue, int(params["pad"]))
        ready, handled, final, measured = _consume_in_child(
            endpoint,
            harness,
            transport,
            names,
            urls,
            total=total,
            prefetch=int(params["prefetch"]),
            log=workdir / f"footprint-child-{transport}.log",
        )
    cpu = float(final["cpu_seconds"])
    return {
        "figures": {
            "cpu_s_per_10k": cpu / total * 10_000,
            "peak_rss_mb": float(final["peak_rss_mb"]),
        },
        "details": {
            "messages": total,
            "cpu_seconds": cpu,
            "cpu_seconds_at_last_handled": float(handled["cpu_seconds"]),
            "rss_mb_before_consuming": float(ready["rss_mb"]),
            "peak_rss_mb_before_consuming": float(ready["peak_rss_mb"]),
            "peak_rss_mb": float(final["peak_rss_mb"]),
            "consume_seconds": float(handled["seconds"]),
            "measured": measured.as_dict(),
        },
    }


def _consume_in_child(
    endpoint: BenchEndpoint,
    harness: HarnessSQS,
    transport: Transport,
    names: Sequence[str],
    urls: Sequence[str],
    *,
    total: int,
    prefetch: int,
    log: Path,
    metrics: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Measured]:
    """Consume and ack the ``total`` messages of the filled queues ``names`` in a child
    process (with sqsbus's ``metrics`` mode, see :mod:`bench.metrics_overhead`); return what it
    said when ready, when it had handled them all and once every delete was done, and the
    counts."""
    spec = {
        "transport": transport,
        "port": endpoint.port,
        "queues": list(names),
        "total": total,
        "prefetch": prefetch,
        "metrics": metrics,
    }
    command = [sys.executable, "-m", "bench.scenarios", "--child-consume", json.dumps(spec)]
    counter = PhaseCounter(endpoint, harness, transport)
    child = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        ready = _read_line(child.stdout)  # connected, about to consume
        counter.start()
        _write_line(child.stdin, "go")
        handled = _read_line(child.stdout)
        harness.wait_empty(urls, timeout=60)
        measured = counter.stop()
        _write_line(child.stdin, "empty")
        final = _read_line(child.stdout)
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(CLOSE_TIMEOUT + 5)
        if child.poll() is None:
            child.kill()
            child.wait()
    return ready, handled, final, measured


# -- what sqsbus's metrics cost ------------------------------------------------------------------


def run_metrics(
    transport: Transport, params: Params, workdir: Path, kind: EndpointKind = "moto"
) -> Result:
    """Client CPU per 10,000 messages consumed with sqsbus's metrics off, with the
    OpenTelemetry API and no provider, and with the SDK recording (see
    :mod:`bench.metrics_overhead`): ``rounds`` consumes of the same pre-filled queues per
    mode, each in a fresh child process, the modes in a rotating order (so that a slow
    moment of the machine does not fall on one mode)."""
    if transport != "sqsbus":
        raise ScenarioError("the metrics scenario measures sqsbus only")
    from bench.metrics_overhead import MODES

    queues = int(params["queues"])
    per_queue = int(params["per_queue"])
    total = queues * per_queue
    rounds = int(params["rounds"])
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    reports: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with _endpoint(kind, workdir, params) as endpoint:
        harness = HarnessSQS(endpoint.url)
        for number in range(rounds):
            for offset in range(len(MODES)):
                mode = MODES[(number + offset) % len(MODES)]
                names = [f"bench-metrics-{number}-{mode}-{i}" for i in range(queues)]
                urls = _fill(harness, names, per_queue, int(params["pad"]))
                _, _, final, _ = _consume_in_child(
                    endpoint,
                    harness,
                    transport,
                    names,
                    urls,
                    total=total,
                    prefetch=int(params["prefetch"]),
                    log=workdir / f"metrics-child-{mode}.log",
                    metrics=mode,
                )
                cpu[mode].append(float(final["cpu_seconds"]) / total * 10_000)
                reports[mode].append(final.get("metrics") or {})
                if mode.startswith("sdk") and final["metrics"].get("recorded_acked") != total:
                    raise ScenarioError(
                        f"the SDK recorded {final['metrics'].get('recorded_acked')} acked "
                        f"messages of {total}"
                    )
    medians = {mode: statistics.median(values) for mode, values in cpu.items()}
    return {
        "figures": {
            **{f"cpu_s_per_10k_{mode}": medians[mode] for mode in MODES},
            "api_overhead": medians["api"] / medians["off"] - 1,
            "sdk_overhead": medians["sdk"] / medians["off"] - 1,
            "sdk_1s_overhead": medians["sdk_1s"] / medians["off"] - 1,
        },
        "details": {"messages": total, "cpu_s_per_10k": cpu, "child_reports": reports},
    }


def _read_line(stream: IO[bytes]) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise ScenarioError("the consuming child process exited early (see its log)")
    return cast(dict[str, Any], json.loads(line))


def _write_line(stream: IO[bytes], text: str) -> None:
    stream.write(text.encode() + b"\n")
    stream.flush()


def child_consume(spec: dict[str, Any]) -> int:
    """The consuming child of :func:`run_footprint`: talks JSON lines on stdin/stdout."""
    metrics_report: Callable[[], dict[str, Any]] | None = None
    if spec.get("metrics"):
        from bench.metrics_overhead import set_up

        metrics_report = set_up(str(spec["metrics"]))  # before sqsbus is imported
    kombu = _kombu()
    transport = cast(Transport, spec["transport"])
    if transport == "sqsbus":
        import sqsbus  # noqa: F401
    total = int(spec["total"])
    handled = Counter()

    conn = kombu.Connection(
        broker_url(transport, int(spec["port"])), transport_options=transport_options(transport)
    )
    conn.connect()
    consumer = kombu.Consumer(
        conn.default_channel,
        [_queue(n) for n in spec["queues"]],
        callbacks=[handled.ack_and_count],
        accept=["json"],
        prefetch_count=int(spec["prefetch"]),
    )
    consumer.declare()
    say = sys.stdout
    say.write(json.dumps({"rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}) + "\n")
    say.flush()
    sys.stdin.readline()
    cpu = cpu_seconds()
    started = time.monotonic()
    consumer.consume()
    _drain(conn, lambda: handled.value >= total)
    seconds = time.monotonic() - started
    say.write(json.dumps({"cpu_seconds": cpu_seconds() - cpu, "seconds": seconds}) + "\n")
    say.flush()
    sys.stdin.readline()  # the harness saw every message deleted (acks flushed)
    used = cpu_seconds() - cpu
    final: dict[str, Any] = {"cpu_seconds": used, "peak_rss_mb": peak_rss_mb()}
    if metrics_report is not None:
        final["metrics"] = metrics_report()
    say.write(json.dumps(final) + "\n")
    say.flush()
    _close_quietly(conn.release)
    return 0


# -- entry point --------------------------------------------------------------------------------

SCENARIOS: Final[dict[str, Callable[[Transport, Params, Path, EndpointKind], Result]]] = {
    "ceiling": run_ceiling,
    "e2e": run_e2e,
    "publish": run_publish,
    "consume": run_consume,
    "celery": run_celery,
    "latency": run_latency,
    "idle": run_idle,
    "footprint": run_footprint,
    "metrics": run_metrics,
}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scenarios", description=__doc__)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--transport", choices=["sqsbus", "kombu", "endpoint"])
    parser.add_argument("--params", default="{}", help="the scenario's parameters, as JSON")
    parser.add_argument(
        "--endpoint", choices=ENDPOINT_KINDS, default="moto", help="the local SQS endpoint"
    )
    parser.add_argument("--workdir", type=Path, help="where logs go")
    parser.add_argument("--out", type=Path, help="where the result JSON goes")
    parser.add_argument("--child-consume", metavar="JSON", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.child_consume:
        code = child_consume(json.loads(args.child_consume))
    else:
        if not (args.scenario and args.transport and args.workdir and args.out):
            print("--scenario, --transport, --workdir and --out are required", file=sys.stderr)
            return 2
        code = _run(args)
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave at once: a transport's background threads must not hold the process up.
    os._exit(code)


def _run(args: argparse.Namespace) -> int:
    params = json.loads(args.params)
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        result = SCENARIOS[args.scenario](args.transport, params, workdir, args.endpoint)
        result["ok"] = True
    except Exception as exc:
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "figures": {}}
    result["wall_seconds"] = time.monotonic() - started
    result["params"] = params
    args.out.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    main()
