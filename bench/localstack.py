"""LocalStack as the benchmark's endpoint: a cached Python 3.13 venv, a fresh server per run.

LocalStack (``localstack-core``, no Docker) serves SQS, SNS and S3 on one port, 4 to 30 times
faster than moto's server, so transports get closer to their own limits. It needs Python 3.13,
which the benchmark itself does not: :func:`ensure_venv` finds a 3.13 interpreter
(:func:`find_python`) and installs :data:`PINS` into a virtual environment under the user's
cache directory, once; every later run reuses it.

:class:`LocalStackEndpoint` starts ``localstack.runtime.main`` from that venv on a free
loopback port with its own temporary ``FILESYSTEM_ROOT``, waits until its health check shows
SQS, SNS and S3 running, and stops it at the end. It has the interface of
:class:`bench.common.Endpoint` (``port``, ``url``, ``pid``, ``log``, ``start``, ``stop``).

Loopback only: LocalStack's default gateway server (Twisted) listens on every interface
whatever ``GATEWAY_LISTEN`` says, so the server is started through :data:`BOOT`, which makes
Twisted's TCP server endpoints bind ``GATEWAY_LISTEN``'s address; after start-up the launcher
checks that every socket the server listens on is a loopback one, and stops it otherwise.

Requests are counted from LocalStack's own log: it writes one INFO line per AWS request it
answered, ``localstack.request.aws : AWS sqs.SendMessageBatch => 200`` (see
:data:`REQUEST_LINE`); requests LocalStack makes to itself (SNS delivering to SQS) go to
another logger and are not counted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final, Self

from bench import interpreters
from bench.common import Managed
from bench.interpreters import python_version
from sqsbus.local._ports import pick_free_port
from sqsbus.testing.children import ChildFailed, wait_for_child

__all__ = [
    "BOOT",
    "HOST",
    "HTTP_LINE",
    "LOCALSTACK_VERSION",
    "PINS",
    "PYTHON_ENV",
    "REQUEST_LINE",
    "REQUIRED_PYTHON",
    "LocalStackEndpoint",
    "LocalStackError",
    "cache_root",
    "ensure_venv",
    "find_python",
    "listening_sockets",
    "parse_request_line",
    "server_command",
    "server_environment",
    "venv_dir",
]

LOCALSTACK_VERSION: Final = "2026.3.0"
#: What goes into the venv: LocalStack core with its runtime, plus the pins it needs to start
#: on Python 3.13 (found by trying); ``service_identity`` is missing from its metadata.
PINS: Final[tuple[str, ...]] = (
    f"localstack-core[runtime]=={LOCALSTACK_VERSION}",
    "cbor2<6",
    "pyopenssl<26",
    "cryptography>=45.0.7,<47",
    "service_identity",
)
REQUIRED_PYTHON: Final = (3, 13)
#: An environment variable naming the Python 3.13 interpreter to build the venv with.
PYTHON_ENV: Final = "SQSBUS_LOCALSTACK_PYTHON"
HOST: Final = "127.0.0.1"
SERVICES: Final = ("sqs", "sns", "s3")

#: One line per AWS request LocalStack answered (the ``localstack.request.aws`` logger, INFO).
REQUEST_LINE: Final = re.compile(r"localstack\.request\.aws\s*: AWS ([\w-]+)\.(\w+) => \d+")
#: One line per other HTTP request (one it could not parse as an AWS call, for instance).
HTTP_LINE: Final = re.compile(r"localstack\.request\.http\s*: ([A-Z]+) (\S+) => \d+")

#: Runs LocalStack with Twisted's TCP server endpoints bound to GATEWAY_LISTEN's address:
#: LocalStack 2026.3's Twisted gateway leaves the interface out and listens on 0.0.0.0.
BOOT: Final = """\
import os, runpy
from twisted.internet import endpoints
_HOST = os.environ["GATEWAY_LISTEN"].rpartition(":")[0]
class _BoundTCP4ServerEndpoint(endpoints.TCP4ServerEndpoint):
    def __init__(self, reactor, port, backlog=50, interface=""):
        super().__init__(reactor, port, backlog, interface or _HOST)
endpoints.TCP4ServerEndpoint = _BoundTCP4ServerEndpoint
runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
"""

_READY_STAMP: Final = "sqsbus-bench-ready.json"
_STARTUP_TIMEOUT: Final = 90.0
_STOP_TIMEOUT: Final = 8.0
_POLL_INTERVAL: Final = 0.05
_INSTALL_TIMEOUT: Final = 1800.0
_LOG_TAIL_LINES: Final = 25
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})


class LocalStackError(RuntimeError):
    """LocalStack could not be installed, started or trusted (it listened beyond loopback)."""


# -- the interpreter ---------------------------------------------------------------------------


def find_python(
    env: Mapping[str, str] | None = None,
    *,
    which: Callable[[str], str | None] = shutil.which,
    version_of: Callable[[str], tuple[int, int] | None] = python_version,
    roots: Sequence[Path] | None = None,
) -> str:
    """A Python 3.13 interpreter to build LocalStack's venv with.

    Looks at ``$SQSBUS_LOCALSTACK_PYTHON`` (which must then be a working 3.13), then
    ``python3.13`` on ``PATH``, then pyenv's ``versions/3.13*`` and uv's ``cpython-3.13*``
    directories (:mod:`bench.interpreters`).

    Raises:
        LocalStackError: none found, or the one named by the variable is not a working 3.13.
    """
    env = os.environ if env is None else env
    wanted = ".".join(map(str, REQUIRED_PYTHON))
    named = env.get(PYTHON_ENV, "").strip()
    if named:
        version = version_of(named)
        if version != REQUIRED_PYTHON:
            what = "does not run" if version is None else f"is Python {version[0]}.{version[1]}"
            raise LocalStackError(
                f"{PYTHON_ENV}={named} {what}; LocalStack {LOCALSTACK_VERSION} needs Python "
                f"{wanted}: point {PYTHON_ENV} at a python{wanted}, or unset it to search"
            )
        return named
    found, tried = interpreters.find(wanted, env, which=which, version_of=version_of, roots=roots)
    if found:
        return found
    looked = f" (tried, not working: {', '.join(tried)})" if tried else ""
    raise LocalStackError(
        f"the LocalStack endpoint needs a Python {wanted} interpreter and none was found"
        f"{looked}: install one (pyenv install {wanted}, uv python install {wanted}, or your "
        f"system's python{wanted} package) and put python{wanted} on PATH, or set "
        f"{PYTHON_ENV}=/path/to/python{wanted}"
    )


# -- the venv ----------------------------------------------------------------------------------


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/sqsbus-bench`` (``~/.cache/sqsbus-bench`` by default)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "sqsbus-bench"


def venv_dir(root: Path | None = None, pins: Sequence[str] = PINS) -> Path:
    """Where the venv for ``pins`` lives: one directory per set of pins."""
    key = hashlib.sha256(
        "\n".join([*pins, "python" + ".".join(map(str, REQUIRED_PYTHON))]).encode()
    )
    return (root or cache_root()) / f"localstack-venv-{key.hexdigest()[:12]}"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(root: Path | None = None, *, say: Callable[[str], None] | None = None) -> Path:
    """The venv's Python, after creating the venv with :data:`PINS` if it is not there yet.

    A venv counts as there once its ready stamp is written, after a successful install, and
    while the interpreter it was made from still exists; a half-made one (an interrupted
    install) is removed and made again. A lock file keeps two benchmark runs from building it
    at once. ``say`` gets progress messages.
    """
    venv = venv_dir(root)
    stamp = venv / _READY_STAMP

    def ready() -> bool:
        return stamp.is_file() and _venv_python(venv).resolve().is_file()

    if ready():
        return _venv_python(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():  # made by another run meanwhile
            return _venv_python(venv)
        python = find_python()
        if say is not None:
            say(f"creating LocalStack's venv in {venv} with {python} (once; a few minutes)")
        shutil.rmtree(venv, ignore_errors=True)
        log = venv.parent / f"{venv.name}-install.log"
        with log.open("w") as output:
            for step in (
                [python, "-m", "venv", str(venv)],
                [
                    str(_venv_python(venv)),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                    *PINS,
                ],
            ):
                code: int | str
                try:
                    code = subprocess.call(
                        step,
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        timeout=_INSTALL_TIMEOUT,
                    )
                except subprocess.TimeoutExpired:
                    code = f"no end after {_INSTALL_TIMEOUT:g} s"
                if code != 0:
                    shutil.rmtree(venv, ignore_errors=True)
                    raise LocalStackError(
                        f"could not create LocalStack's venv ({' '.join(step[:4])} ... exited "
                        f"with {code}); see {log}:\n{_tail(log)}"
                    )
        stamp.write_text(
            json.dumps({"pins": list(PINS), "python": python}, indent=1) + "\n",
            encoding="utf-8",
        )
    return _venv_python(venv)


# -- the server --------------------------------------------------------------------------------


def server_command(venv_python: Path | str) -> list[str]:
    """The command that runs LocalStack (bound as :data:`BOOT` says) with ``venv_python``."""
    return [str(venv_python), "-c", BOOT]


def server_environment(
    base: Mapping[str, str], port: int, filesystem_root: Path, host: str = HOST
) -> dict[str, str]:
    """LocalStack's environment: loopback, offline, SQS + SNS + S3, path-style queue URLs.

    ``base`` minus what would point LocalStack's Python at another environment
    (``PYTHONPATH``, ``VIRTUAL_ENV``) or change its logging (the request lines are counted).
    """
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LOG_LEVEL_OVERRIDES", "LOG", "LS_LOG"}
    env = {k: v for k, v in base.items() if k not in dropped}
    address = f"{host}:{port}"
    env.update(
        OVERRIDE_IN_DOCKER="0",  # this machine looks like a container to LocalStack
        FILESYSTEM_ROOT=str(filesystem_root),
        GATEWAY_LISTEN=address,
        LOCALSTACK_HOST=address,
        GATEWAY_SERVER="twisted",
        SERVICES=",".join(SERVICES),
        EAGER_SERVICE_LOADING="1",
        DISABLE_EVENTS="1",  # no analytics over the internet
        SKIP_SSL_CERT_DOWNLOAD="1",
        DNS_ADDRESS="0",  # no DNS server on port 53
        SQS_ENDPOINT_STRATEGY="path",
        SQS_DISABLE_CLOUDWATCH_METRICS="1",
        PERSISTENCE="0",
        DEBUG="0",
        LS_LOG="info",
        PYTHONUNBUFFERED="1",
    )
    return env


def parse_request_line(line: str) -> str | None:
    """The operation of a request LocalStack logged, else None.

    ``"sqs.SendMessageBatch"`` for an AWS request; ``"http.POST /path"`` for an HTTP request it
    did not take for an AWS call; its own ``/_localstack`` API (health checks) is not counted.
    """
    match = REQUEST_LINE.search(line)
    if match is not None:
        return f"{match.group(1)}.{match.group(2)}"
    match = HTTP_LINE.search(line)
    if match is not None and not match.group(2).startswith("/_localstack"):
        return f"http.{match.group(1)} {match.group(2).partition('?')[0]}"
    return None


def listening_sockets(pids: Iterable[int], proc: Path = Path("/proc")) -> list[tuple[str, int]]:
    """``(address, port)`` of every TCP socket the processes ``pids`` listen on (Linux)."""
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in (proc / str(pid) / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = []
    for table, width in (("tcp", 4), ("tcp6", 16)):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    address, port = fields[1].split(":")
                    found.append((_proc_address(address, width), int(port, 16)))
    return found


def _proc_address(hex_address: str, width: int) -> str:
    """An address from /proc/net/tcp{,6} (32-bit words in host byte order) as text."""
    import ipaddress

    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words) if width == 4 else ipaddress.IPv6Address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def _process_group(pgid: int, proc: Path = Path("/proc")) -> list[int]:
    members = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                    members.append(int(entry.name))
    return members


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(could not read it: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class LocalStackEndpoint(Managed):
    """A fresh LocalStack server on a free loopback port, its log in ``workdir``.

    Its request log is ``log`` (a :class:`bench.common.EndpointLog` reading LocalStack's
    request lines). The server runs in its own process group, stopped as a whole by
    :meth:`stop` (SIGTERM, then SIGKILL after a few seconds).
    """

    def __init__(self, workdir: Path, venv_python: Path | None = None) -> None:
        from bench.common import EndpointLog

        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.venv_python = venv_python
        self.log_path = workdir / f"localstack-{os.getpid()}-{time.monotonic_ns() % 10**8}.log"
        self.log = EndpointLog(self.log_path, parse_request_line)
        self._port = 0
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> Self:
        """Start the server and wait until SQS, SNS and S3 are running."""
        if self._process is not None:
            raise LocalStackError(f"LocalStack is already started on {self.url}")
        python = self.venv_python or ensure_venv()
        self._port = pick_free_port(HOST)
        self._root = Path(tempfile.mkdtemp(prefix="localstack-root-", dir=self.workdir))
        env = server_environment(os.environ, self._port, self._root)
        with self.log_path.open("ab") as output:
            self._process = subprocess.Popen(
                server_command(python),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self._root),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_until_ready(self._process)
            self._check_loopback(self._process.pid)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        try:
            wait_for_child(
                process,
                self._services_running,
                what=f"LocalStack on {self.url}",
                timeout=_STARTUP_TIMEOUT,
                interval=_POLL_INTERVAL,
                context=lambda: f"; last lines of {self.log_path}:\n{_tail(self.log_path)}",
            )
        except ChildFailed as exc:
            raise LocalStackError(str(exc)) from None

    def _services_running(self) -> bool:
        try:
            with _OPENER.open(f"{self.url}/_localstack/health", timeout=2.0) as response:
                health = json.loads(response.read())
        except (OSError, ValueError):
            return False
        services = health.get("services", {}) if isinstance(health, dict) else {}
        return all(services.get(name) == "running" for name in SERVICES)

    def _check_loopback(self, pgid: int) -> None:
        sockets = listening_sockets(_process_group(pgid))
        if not any(port == self._port for _, port in sockets):
            raise LocalStackError(
                f"LocalStack answers on {self.url} but no socket of its process group listens "
                f"on port {self._port} (found {sockets}); cannot check it binds loopback only"
            )
        exposed = [(a, p) for a, p in sockets if a not in _LOOPBACK]
        if exposed:
            raise LocalStackError(
                f"LocalStack listens beyond loopback on {exposed}: stopped. The benchmark "
                "binds it to 127.0.0.1 through its Twisted gateway; a LocalStack version "
                "that changed how the gateway listens needs bench/localstack.py's BOOT updated"
            )

    def stop(self) -> None:
        """Stop the server and everything in its process group; safe to call again."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(_STOP_TIMEOUT)
        if process is not None:
            _signal_group(process.pid, signal.SIGKILL)  # stragglers of the group, if any
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies.

    The server has its own process group (so that :meth:`LocalStackEndpoint.stop` can stop it
    whole), so killing the scenario's group would not reach it; this does (Linux prctl).
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
