"""A fault-injecting HTTP proxy between botocore and a local SQS/SNS/S3 endpoint.

:class:`FaultProxy` forwards every request to an upstream endpoint (e.g. a
:class:`~sqsbus.local.LocalEndpoint`) and can, per request: add latency, reset the
connection before or after forwarding, answer a 5xx error or a throttling error in AWS's
own wire shape, or fail some entries of an SQS batch. A full outage resets every
connection until it ends. Optionally it checks temporary credentials as AWS does: sessions
handed out by STS through it (shortened on request) end, and requests signed with an
expired one get AWS's ``ExpiredToken`` answer. It counts requests per operation at the
wire (what AWS would bill, botocore's retries included) and the faults it injected.

It runs on its own thread and event loop, so tests and benchmarks drive it from ordinary
code; faults can be changed at any time with :attr:`FaultProxy.faults`::

    with LocalEndpoint() as endpoint, FaultProxy(endpoint.url, seed=1) as proxy:
        proxy.faults = Faults(latency_ms=20, throttle=0.05)
        client = boto3.client("sqs", endpoint_url=proxy.url, ...)

From a shell: ``python -m sqsbus.testing.proxy --upstream URL --latency-ms 20 --throttle 0.02``.

Partial batch failures rewrite the request body, which invalidates its SigV4 signature:
use them only with an upstream that does not check signatures (moto does not). Request
bodies and headers are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

from sqsbus.local._ports import connect_host
from sqsbus.testing._aws_wire import (
    Operation,
    add_failed_entries,
    batch_entry_ids,
    error_answer,
    expired_token_answer,
    failed_batch_answer,
    identify,
    throttle_answer,
    without_entries,
)
from sqsbus.testing._http import (
    MAX_HEAD_BYTES,
    HttpError,
    Request,
    Response,
    read_request,
    read_response,
    reset,
    write_request,
    write_response,
)
from sqsbus.testing._sessions import SessionBook

__all__ = ["FAULT_KINDS", "FaultProxy", "Faults", "main"]

logger = logging.getLogger(__name__)

#: The keys of :meth:`FaultProxy.fault_counts`.
FAULT_KINDS: Final = (
    "reset_before",  # connection reset without forwarding the request
    "reset_after",  # request forwarded and done upstream, connection reset instead of answering
    "error",  # 500 InternalError or 503 ServiceUnavailable answered, request not forwarded
    "throttle",  # throttling error answered, request not forwarded
    "partial",  # batch requests with some entries failed by the proxy
    "partial_entries",  # entries failed by the proxy (not forwarded, reported in Failed)
    "outage",  # connections reset and requests refused during an outage
    "expired_token",  # requests signed with expired temporary credentials, answered ExpiredToken
)
#: Seconds to wait for the upstream's answer (long polls last up to 20 s).
UPSTREAM_TIMEOUT: Final = 120.0
#: Idle upstream connections kept for reuse.
MAX_IDLE_UPSTREAM: Final = 32
_START_TIMEOUT: Final = 10.0
_STOP_TIMEOUT: Final = 10.0


def _probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Faults.{name} must be a number between 0 and 1, not {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Faults.{name} must be a probability between 0 and 1, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Faults:
    """What the proxy does to each request. The default does nothing (a plain proxy).

    Per request (of the chosen ``operations``), the proxy first waits ``latency_ms`` plus a
    uniform jitter of up to ±``jitter_ms`` (never below zero), then picks at most one of
    these with the given probabilities (their sum is at most 1):

    * ``reset_before``: reset the connection without forwarding: the request was not done.
    * ``throttle``: answer the service's throttling error without forwarding (SQS:
      ``RequestThrottled``, SNS: ``Throttling``, S3: ``SlowDown``); botocore retries it.
    * ``error``: answer 500 ``InternalError`` or 503 ``ServiceUnavailable`` (half each)
      without forwarding; botocore retries it.
    * ``reset_after``: forward, then reset the connection instead of answering: the request
      was done but its answer is lost (a retry may then duplicate it).

    ``partial``: probability that an SQS ``SendMessageBatch``, ``DeleteMessageBatch`` or
    ``ChangeMessageVisibilityBatch`` that is forwarded fails some of its entries. Each entry
    then fails with probability 1/2 (at least one): failed entries are removed from the
    request before it is forwarded and reported in the answer's ``Failed`` list with
    ``SenderFault: false`` and code ``InternalError``, so an entry reported failed was never
    done.

    ``operations``: if not empty, only these operations get faults (latency included).
    Name them as counted (``sqs.SendMessageBatch``, ``sns.Publish``, ``s3.PUT``) or by the
    bare operation name (``SendMessageBatch``). An outage (:meth:`FaultProxy.start_outage`)
    hits every request.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    error: float = 0.0
    throttle: float = 0.0
    partial: float = 0.0
    operations: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Faults.{name} must be a number of milliseconds, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Faults.{name} must be zero or more milliseconds, not {value}")
        for name in ("reset_before", "reset_after", "error", "throttle", "partial"):
            _probability(name, getattr(self, name))
        exclusive = self.reset_before + self.reset_after + self.error + self.throttle
        if exclusive > 1.0 + 1e-9:
            raise ValueError(
                "Faults.reset_before + reset_after + error + throttle must be at most 1 "
                f"(at most one of them happens to a request), not {exclusive:g}"
            )
        operations: Any = self.operations  # callers may pass any iterable
        if isinstance(operations, str):
            raise TypeError(
                "Faults.operations must be a collection of operation names, not a string: "
                f"use frozenset({{{operations!r}}})"
            )
        object.__setattr__(self, "operations", frozenset(str(name) for name in operations))

    def applies_to(self, operation: Operation) -> bool:
        """Whether requests of ``operation`` get these faults."""
        return (
            not self.operations
            or operation.key in self.operations
            or operation.name in self.operations
        )

    def describe(self) -> str:
        """A one-line summary for people, e.g. ``latency 20±5 ms, throttle 2%``."""
        parts = []
        if self.latency_ms or self.jitter_ms:
            parts.append(f"latency {self.latency_ms:g}±{self.jitter_ms:g} ms")
        for name in ("reset_before", "reset_after", "error", "throttle", "partial"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name.replace('_', ' ')} {value * 100:g}%")
        if self.operations:
            parts.append("only " + ", ".join(sorted(self.operations)))
        return ", ".join(parts) or "none"


class FaultProxy:
    """An HTTP/1.1 proxy on its own thread that forwards to ``upstream_url`` with faults.

    Args:
        upstream_url: the endpoint to forward to, ``http://host:port``.
        host: address to listen on (loopback by default).
        port: port to listen on; 0 picks a free one at :meth:`start`.
        faults: initial faults; change them any time through :attr:`faults`.
        seed: seed of the random generator behind every fault decision, for reproducible
            runs (the order of concurrent requests can still vary).
        check_credentials: play AWS's credential check (off by default; moto checks
            nothing): note the temporary credentials STS answers hand out through the proxy
            (``AssumeRole``, ``GetSessionToken``, ...) and answer ``ExpiredToken``, without
            forwarding, to any later request signed with one whose session has ended.
            Static keys pass.
        session_seconds: with ``check_credentials``, hand out sessions of at most this
            many seconds (the STS answer's ``Expiration`` is rewritten), so that
            credentials expire many times during a run. Giving it turns the check on.

    Clients connect to :attr:`url` (use it as boto3's ``endpoint_url`` or sqsbus's
    ``endpoint_url`` transport option). The ``Host`` header is forwarded unchanged, so
    queue URLs the endpoint builds from it point at the proxy too.
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        seed: int | None = None,
        check_credentials: bool = False,
        session_seconds: float | None = None,
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"upstream_url must look like http://host:port, not {upstream_url!r} "
                "(the proxy talks plain HTTP to a local endpoint)"
            )
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"upstream_url must have no path or query: {upstream_url!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port}")
        self._upstream = (parts.hostname, parts.port or 80)
        self._upstream_url = f"http://{parts.netloc}"
        self._host = host
        self._port = port
        self._faults = faults or Faults()
        self._sessions = (
            SessionBook(session_seconds)
            if check_credentials or session_seconds is not None
            else None
        )
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._injected_by_operation: dict[str, Counter[str]] = {}
        self._expired: Counter[str] = Counter()
        self._upstream_errors = 0
        self._outage_until: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    # -- properties ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL clients use, e.g. ``http://127.0.0.1:54321`` (known once started)."""
        if not self._port:
            raise RuntimeError("the proxy has no port yet: call start() first")
        host = connect_host(self._host)
        return f"http://[{host}]:{self._port}" if ":" in host else f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        """The listening port (0 before :meth:`start` if none was given)."""
        return self._port

    @property
    def upstream_url(self) -> str:
        return self._upstream_url

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def faults(self) -> Faults:
        """The faults applied to requests from now on (settable from any thread)."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults instance, not {type(faults).__name__}")
        with self._lock:
            self._faults = faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change some fields of :attr:`faults` (e.g. ``throttle=0.1``); returns the new ones."""
        with self._lock:
            self._faults = dataclasses.replace(self._faults, **changes)
            return self._faults

    def clear_faults(self) -> None:
        """Forward everything untouched from now on, and end any outage."""
        self.faults = Faults()
        self.end_outage()

    # -- outage ----------------------------------------------------------------------------

    def start_outage(self, seconds: float | None = None) -> None:
        """Reset every open connection, and every new one, for ``seconds`` (None: until
        :meth:`end_outage`)."""
        if seconds is not None and not seconds > 0:
            raise ValueError(f"outage seconds must be positive (or None), not {seconds!r}")
        with self._lock:
            self._outage_until = math.inf if seconds is None else time.monotonic() + seconds
        loop = self._loop
        if loop is not None and self.running:
            loop.call_soon_threadsafe(self._reset_clients)

    def end_outage(self) -> None:
        """End the outage: connections are accepted and served again."""
        with self._lock:
            self._outage_until = None

    @property
    def in_outage(self) -> bool:
        with self._lock:
            until = self._outage_until
        return until is not None and time.monotonic() < until

    # -- counts ----------------------------------------------------------------------------

    def request_counts(self) -> dict[str, int]:
        """Requests received per operation (``sqs.ReceiveMessage``, ``sns.Publish``,
        ``s3.GET``, ...), every attempt counted, faulted ones included."""
        with self._lock:
            return dict(self._requests)

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self._requests.values())

    def fault_counts(self) -> dict[str, int]:
        """Faults injected so far, per kind (every key of :data:`FAULT_KINDS`)."""
        with self._lock:
            return {kind: self._injected[kind] for kind in FAULT_KINDS}

    def fault_counts_by_operation(self) -> dict[str, dict[str, int]]:
        """Faults injected so far per operation (``sqs.SendMessageBatch``, ...) and kind;
        only kinds that happened. Lost answers to sends, for one, are the duplicates SQS
        cannot avoid: the message was stored, the sender never heard, and sent it again."""
        with self._lock:
            return {key: dict(kinds) for key, kinds in self._injected_by_operation.items()}

    def expired_token_counts(self) -> dict[str, int]:
        """Requests answered ``ExpiredToken``, per operation (``sqs.ReceiveMessage``, ...)."""
        with self._lock:
            return dict(self._expired)

    @property
    def checks_credentials(self) -> bool:
        """Whether the proxy enforces the expiry of temporary credentials."""
        return self._sessions is not None

    @property
    def sessions_granted(self) -> int:
        """Temporary credentials STS handed out through the proxy (0 if not checking)."""
        return self._sessions.granted if self._sessions is not None else 0

    def expire_credentials(self) -> int:
        """End every session handed out so far, as a revoked role or a client clock running
        late would; returns how many were still valid. Needs ``check_credentials``."""
        if self._sessions is None:
            raise RuntimeError(
                "the proxy does not check credentials: create it with check_credentials=True"
            )
        return self._sessions.expire_all()

    @property
    def upstream_errors(self) -> int:
        """Requests the upstream could not answer (answered 502/504 to the client)."""
        with self._lock:
            return self._upstream_errors

    def reset_counts(self) -> None:
        """Set every request and fault count to zero."""
        with self._lock:
            self._requests.clear()
            self._injected.clear()
            self._injected_by_operation.clear()
            self._expired.clear()
            self._upstream_errors = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start listening; returns once :attr:`url` accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"the proxy is already started on {self.url}")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready, failure), name="sqsbus-fault-proxy", daemon=True
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"the proxy did not start within {_START_TIMEOUT:g} s")
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise OSError(f"cannot listen on {self._host} port {self._port}: {failure[0]}")
        return self

    def stop(self) -> None:
        """Close every connection and stop the thread. Safe to call again."""
        thread, loop = self._thread, self._loop
        self._thread = self._loop = None
        if thread is None or loop is None:
            return
        if thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_STOP_TIMEOUT)
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port else f"{self._host}:<unassigned>"
        return f"<FaultProxy {where} -> {self._upstream_url} faults: {self._faults.describe()}>"

    # -- the event loop thread -------------------------------------------------------------

    def _run(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(
                        self._serve_client, self._host, self._port, limit=MAX_HEAD_BYTES
                    )
                )
            except OSError as exc:
                failure.append(exc)
                return
            self._port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
        finally:
            ready.set()
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, writer in self._idle:
            writer.transport.abort()
        self._idle.clear()

    def _reset_clients(self) -> None:
        for writer in list(self._clients):
            self._count_fault("outage")
            reset(writer)

    def _outage_now(self) -> bool:
        with self._lock:
            until = self._outage_until
        return until is not None and time.monotonic() < until

    def _count_fault(self, kind: str, amount: int = 1, operation: Operation | None = None) -> None:
        with self._lock:
            self._injected[kind] += amount
            if operation is not None:
                by_kind = self._injected_by_operation.setdefault(operation.key, Counter())
                by_kind[kind] += amount

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self._outage_now():
                self._count_fault("outage")
                reset(writer)
                return
            self._clients.add(writer)
            while True:
                try:
                    request = await read_request(reader, writer)
                except HttpError as exc:
                    logger.warning("fault proxy: unreadable request from a client: %s", exc)
                    answer = Response(400, [("Content-Type", "text/plain")], str(exc).encode())
                    write_response(writer, answer, method="POST", keep_alive=False)
                    await writer.drain()
                    return
                if request is None or not await self._answer(request, writer):
                    return
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away (or we reset it)
        except asyncio.CancelledError:
            # The proxy stops. End normally: asyncio's stream server logs cancelled handlers.
            if writer in self._clients:
                writer.transport.abort()
        finally:
            self._clients.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _answer(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; True if the connection stays open for the next one."""
        operation = identify(request)
        with self._lock:
            self._requests[operation.key] += 1
        if self._outage_now():
            self._count_fault("outage", operation=operation)
            reset(writer)
            return False
        sessions = self._sessions
        if sessions is not None and sessions.expired(request):
            with self._lock:
                self._injected["expired_token"] += 1
                self._expired[operation.key] += 1
            return await self._reply(request, writer, expired_token_answer(operation))
        faults = self._faults
        kind: str | None = None
        failed: list[str] = []
        if faults.applies_to(operation):
            await self._delay(faults)
            kind = self._choose(faults)
            if kind in (None, "reset_after") and operation.is_sqs_batch:
                failed = self._choose_failed(faults, request)
        if kind == "reset_before":
            self._count_fault(kind, operation=operation)
            reset(writer)
            return False
        if kind == "throttle":
            self._count_fault(kind, operation=operation)
            response = throttle_answer(operation)
        elif kind == "error":
            self._count_fault(kind, operation=operation)
            response = error_answer(operation, 503 if self._rng.random() < 0.5 else 500)
        else:
            if failed:
                response = await self._forward_batch(request, failed, operation)
            else:
                response = await self._forward(request)
            if sessions is not None:
                response = sessions.observe(operation, response)
            if kind == "reset_after":
                self._count_fault(kind, operation=operation)
                if operation.is_sqs_batch:  # every entry's outcome is unknown to the sender
                    entries = len(batch_entry_ids(request))
                    self._count_fault("reset_after_entries", entries, operation=operation)
                reset(writer)
                return False
        return await self._reply(request, writer, response)

    async def _reply(
        self, request: Request, writer: asyncio.StreamWriter, response: Response
    ) -> bool:
        """Send ``response``; True if the connection stays open for the next request."""
        keep_alive = request.keep_alive
        write_response(writer, response, method=request.method, keep_alive=keep_alive)
        await writer.drain()
        return keep_alive

    async def _delay(self, faults: Faults) -> None:
        delay_ms = faults.latency_ms
        if faults.jitter_ms:
            delay_ms += self._rng.uniform(-faults.jitter_ms, faults.jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)

    def _choose(self, faults: Faults) -> str | None:
        """At most one exclusive fault for a request, from a single roll."""
        roll = self._rng.random()
        for kind in ("reset_before", "throttle", "error", "reset_after"):
            chance: float = getattr(faults, kind)
            if roll < chance:
                return kind
            roll -= chance
        return None

    def _choose_failed(self, faults: Faults, request: Request) -> list[str]:
        """The ``Id`` of the entries of a batch request the proxy fails (often none)."""
        if not faults.partial or self._rng.random() >= faults.partial:
            return []
        ids = batch_entry_ids(request)
        if not ids or len(set(ids)) != len(ids):
            return []  # nothing to fail, or a batch the endpoint refuses as a whole
        failed = [entry_id for entry_id in ids if self._rng.random() < 0.5]
        return failed or [ids[self._rng.randrange(len(ids))]]

    async def _forward_batch(
        self, request: Request, failed: Sequence[str], operation: Operation
    ) -> Response:
        self._count_fault("partial", operation=operation)
        self._count_fault("partial_entries", len(failed), operation=operation)
        if len(failed) == len(batch_entry_ids(request)):
            return failed_batch_answer(failed)
        response = await self._forward(without_entries(request, failed))
        return add_failed_entries(response, failed)

    async def _forward(self, request: Request) -> Response:
        """The upstream's answer to ``request`` (502/504 if it cannot give one)."""
        for attempt in range(2):
            try:
                (reader, writer), reused = await self._connection()
            except OSError as exc:
                return self._upstream_failed(502, exc)
            try:
                write_request(writer, request)
                await writer.drain()
                response = await asyncio.wait_for(
                    read_response(reader, request.method), UPSTREAM_TIMEOUT
                )
            except TimeoutError as exc:
                writer.transport.abort()
                return self._upstream_failed(504, exc)
            except (OSError, HttpError, asyncio.IncompleteReadError) as exc:
                writer.transport.abort()
                if reused and attempt == 0:
                    continue  # the upstream closed an idle connection: use a new one
                return self._upstream_failed(502, exc)
            if response.reusable and len(self._idle) < MAX_IDLE_UPSTREAM:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connection(
        self,
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bool]:
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return (reader, writer), True
            writer.transport.abort()
        host, port = self._upstream
        opened = await asyncio.open_connection(host, port, limit=MAX_HEAD_BYTES)
        return opened, False

    def _upstream_failed(self, status: int, exc: BaseException) -> Response:
        with self._lock:
            self._upstream_errors += 1
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        logger.warning("fault proxy: upstream %s failed: %s", self._upstream_url, reason)
        text = f"sqsbus fault proxy: the upstream {self._upstream_url} failed ({reason})"
        return Response(status, [("Content-Type", "text/plain")], text.encode())


# -- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sqsbus.testing.proxy",
        description="Forward HTTP requests to a local SQS/SNS/S3 endpoint, injecting faults. "
        "Point clients at the printed URL (boto3 endpoint_url, sqsbus transport option "
        "endpoint_url). Ctrl-C stops it and prints the requests per operation.",
    )
    parser.add_argument(
        "--upstream", required=True, help="endpoint to forward to, http://HOST:PORT"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added per request")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="± uniform jitter")
    parser.add_argument(
        "--reset",
        type=float,
        default=0.0,
        metavar="P",
        help="probability of a connection reset, half before forwarding, half after",
    )
    parser.add_argument(
        "--reset-before", type=float, default=0.0, metavar="P", help="reset, not forwarded"
    )
    parser.add_argument(
        "--reset-after",
        type=float,
        default=0.0,
        metavar="P",
        help="forward, then reset instead of answering (the answer is lost)",
    )
    parser.add_argument("--error", type=float, default=0.0, metavar="P", help="500/503 answers")
    parser.add_argument(
        "--throttle", type=float, default=0.0, metavar="P", help="throttling answers"
    )
    parser.add_argument(
        "--partial", type=float, default=0.0, metavar="P", help="SQS batches failing some entries"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="OPERATION",
        help="fault only this operation (repeatable), e.g. SendMessageBatch or sns.Publish",
    )
    parser.add_argument(
        "--check-credentials",
        action="store_true",
        help="answer ExpiredToken to requests signed with temporary credentials (from STS "
        "through the proxy) whose session has ended, as AWS does",
    )
    parser.add_argument(
        "--session-seconds",
        type=float,
        default=None,
        metavar="S",
        help="hand out STS sessions of at most S seconds (implies --check-credentials)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible runs)")
    return parser


def _faults_from(args: argparse.Namespace) -> Faults:
    """The faults the flags ask for; ValueError naming the flag when they are impossible."""
    for flag in ("reset", "reset_before", "reset_after", "error", "throttle", "partial"):
        value = getattr(args, flag)
        if not 0.0 <= value <= 1.0:
            name = "--" + flag.replace("_", "-")
            raise ValueError(f"{name} must be a probability between 0 and 1, not {value:g}")
    for flag in ("latency_ms", "jitter_ms"):
        if not getattr(args, flag) >= 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be zero or more")
    exclusive = args.reset + args.reset_before + args.reset_after + args.error + args.throttle
    if exclusive > 1.0:
        raise ValueError(
            "--reset + --reset-before + --reset-after + --error + --throttle must be at most 1 "
            f"(at most one of them happens to a request), not {exclusive:g}"
        )
    return Faults(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        reset_before=args.reset_before + args.reset / 2,
        reset_after=args.reset_after + args.reset / 2,
        error=args.error,
        throttle=args.throttle,
        partial=args.partial,
        operations=frozenset(args.only),
    )


def _print_counts(proxy: FaultProxy) -> None:
    counts = proxy.request_counts()
    print(f"requests: {proxy.total_requests}", flush=True)
    for operation, count in sorted(counts.items()):
        print(f"  {operation:<40} {count}")
    injected = {kind: n for kind, n in proxy.fault_counts().items() if n}
    print("faults injected: " + (", ".join(f"{k} {n}" for k, n in injected.items()) or "none"))
    if proxy.checks_credentials:
        expired = proxy.expired_token_counts()
        print(
            f"sessions handed out: {proxy.sessions_granted}; ExpiredToken answers: "
            + (", ".join(f"{op} {n}" for op, n in sorted(expired.items())) or "none")
        )
    if proxy.upstream_errors:
        print(f"upstream errors: {proxy.upstream_errors}")


def _credential_mode(args: argparse.Namespace) -> str:
    if args.session_seconds is None:
        return "; credentials checked"
    return f"; credentials checked, sessions of at most {args.session_seconds:g} s"


def main(argv: Iterable[str] | None = None) -> int:
    """Run the proxy until interrupted; print its URL first and the counts at the end."""
    parser = _parser()
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        faults = _faults_from(args)
        proxy = FaultProxy(
            args.upstream,
            host=args.host,
            port=args.port,
            faults=faults,
            seed=args.seed,
            check_credentials=args.check_credentials,
            session_seconds=args.session_seconds,
        )
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        proxy.start()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(proxy.url, flush=True)
        print(
            f"forwarding to {proxy.upstream_url}; faults: {faults.describe()}"
            + (f"; seed {args.seed}" if args.seed is not None else "")
            + (_credential_mode(args) if proxy.checks_credentials else ""),
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        proxy.stop()
        _print_counts(proxy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
