"""Where a running ``sqsbus local`` tells other commands its broker URL.

Each ``sqsbus local`` writes its own small JSON file, ``local-endpoint-<pid>.json`` (process
id, what identifies that process beyond its id, endpoint and broker URL), while it runs and
removes it when it stops; the operator commands (``sqsbus queues`` ...) use the newest live one
when no broker URL is given. The files live in ``$SQSBUS_STATE_DIR``, else
``$XDG_STATE_HOME/sqsbus``, else ``~/.local/state/sqsbus``. They hold only the endpoint's dummy
credentials.

Trust: a record is written mode 0600 (its directory, when created here, 0700); one not owned by
the current user, group- or world-writable, or not a regular file is ignored with a warning,
so another local user cannot redirect this user's commands. A record whose process is gone, or
whose pid now belongs to another process (its start time differs, on Linux; elsewhere the
endpoint must answer), is treated as absent.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import stat
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

__all__ = [
    "RecordedEndpoint",
    "clear_record",
    "read_record",
    "read_records",
    "record_dir",
    "record_path",
    "write_record",
]

STATE_DIR_ENV: Final = "SQSBUS_STATE_DIR"
RECORD_PREFIX: Final = "local-endpoint-"
RECORD_SUFFIX: Final = ".json"
#: How long the liveness probe of a recorded endpoint waits (where process identity is unknown).
PROBE_TIMEOUT: Final = 1.0


@dataclass(frozen=True)
class RecordedEndpoint:
    """A running ``sqsbus local``: its process id, endpoint URL, broker URL, when it was
    recorded (epoch seconds) and its process identity (None where it cannot be read)."""

    pid: int
    url: str
    broker_url: str
    started: float = 0.0
    identity: str | None = None


def record_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The directory the running ``sqsbus local`` endpoints are recorded in."""
    env = os.environ if environ is None else environ
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV])
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "sqsbus"


def record_path(environ: Mapping[str, str] | None = None, pid: int | None = None) -> Path:
    """The file the ``sqsbus local`` of process ``pid`` (default: this one) is recorded in."""
    return record_dir(environ) / f"{RECORD_PREFIX}{os.getpid() if pid is None else pid}.json"


def write_record(url: str, broker_url: str, environ: Mapping[str, str] | None = None) -> Path:
    """Record this process as a running local endpoint; returns the path.

    The file is created 0600 under a fresh name and renamed into place, so it is never readable
    by others, not even briefly."""
    path = record_path(environ)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid = os.getpid()
    data = {
        "pid": pid,
        "url": url,
        "broker_url": broker_url,
        "started": time.time(),
        "identity": _process_identity(pid),
    }
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return path


def clear_record(environ: Mapping[str, str] | None = None) -> None:
    """Remove this process's record (no other endpoint's)."""
    path = record_path(environ)
    found = _load(path, warn=False)
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def read_records(environ: Mapping[str, str] | None = None) -> list[RecordedEndpoint]:
    """The recorded local endpoints that are still running, the most recently started first.

    Records of processes that are gone (or whose pid was reused) are removed."""
    try:
        paths = sorted(record_dir(environ).glob(f"{RECORD_PREFIX}*{RECORD_SUFFIX}"))
    except OSError:
        return []
    live: list[RecordedEndpoint] = []
    for path in paths:
        found = _load(path, warn=True)
        if found is None:
            continue
        state = _liveness(found)
        if state == "live":
            live.append(found)
        elif state == "stale":
            with contextlib.suppress(OSError):
                path.unlink()
    live.sort(key=lambda found: (found.started, found.pid), reverse=True)
    return live


def read_record(environ: Mapping[str, str] | None = None) -> RecordedEndpoint | None:
    """The most recently started recorded local endpoint that is still running, else None."""
    live = read_records(environ)
    return live[0] if live else None


def _load(path: Path, *, warn: bool) -> RecordedEndpoint | None:
    """The record in ``path`` if it is a regular file this user owns and only they can write."""
    try:
        fd = os.open(
            path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
    except OSError as exc:
        if warn and exc.errno == errno.ELOOP:
            print(f"sqsbus: ignoring {path}: a symbolic link", file=sys.stderr)
        return None
    with os.fdopen(fd, "rb") as file:
        problem = _untrusted(os.fstat(file.fileno()))
        if problem:
            if warn:
                print(f"sqsbus: ignoring {path}: {problem}", file=sys.stderr)
            return None
        try:
            data = json.loads(file.read(64 * 1024))
            identity = data.get("identity")
            return RecordedEndpoint(
                int(data["pid"]),
                str(data["url"]),
                str(data["broker_url"]),
                float(data.get("started", 0.0)),
                None if identity is None else str(identity),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


def _untrusted(info: os.stat_result) -> str | None:
    """Why a record file with this status must not be trusted, or None."""
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_uid != _current_uid():
        return f"owned by uid {info.st_uid}, not by you (uid {_current_uid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"group- or world-writable (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _current_uid() -> int:
    return os.getuid()


def _liveness(found: RecordedEndpoint) -> Literal["live", "stale", "unknown"]:
    """``live``; ``stale`` (the process is gone or its pid is another process's: the record can
    go); or ``unknown`` (alive but its endpoint does not answer: ignore, keep the record)."""
    if found.pid <= 0:
        return "stale"  # kill() would probe a process group
    try:
        os.kill(found.pid, 0)
    except (OverflowError, OSError):  # gone, or another user's (PermissionError): not ours
        return "stale"
    current = _process_identity(found.pid)
    if found.identity is not None and current is not None:
        return "live" if current == found.identity else "stale"
    return "live" if _answers(found.url) else "unknown"


def _process_identity(pid: int) -> str | None:
    """What tells process ``pid`` apart from a later one with the same pid: the boot id and its
    start time in clock ticks (``/proc/<pid>/stat`` field 22); None without Linux's /proc."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return None
    after_name = status[status.rfind(")") + 1 :].split()  # the name may hold spaces and ')'
    try:
        return f"{boot_id}:{int(after_name[19])}"  # fields 3, 4, ... so field 22 is index 19
    except (IndexError, ValueError):
        return None


def _answers(url: str) -> bool:
    """Whether something accepts TCP connections at the endpoint URL."""
    try:
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            return False
        with socket.create_connection((parts.hostname, parts.port), timeout=PROBE_TIMEOUT):
            return True
    except (OSError, ValueError):
        return False
