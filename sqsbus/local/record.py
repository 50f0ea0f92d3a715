"""Where a running ``sqsbus local`` tells other commands its broker URL.

``sqsbus local`` writes a small JSON file (its process id and broker URL) while it runs and
removes it when it stops; the operator commands (``sqsbus queues`` ...) use it when no broker
URL is given. The file lives in ``$SQSBUS_STATE_DIR``, else ``$XDG_STATE_HOME/sqsbus``, else
``~/.local/state/sqsbus``. It holds only the endpoint's dummy credentials.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["RecordedEndpoint", "clear_record", "read_record", "record_path", "write_record"]

STATE_DIR_ENV: Final = "SQSBUS_STATE_DIR"
RECORD_NAME: Final = "local-endpoint.json"


@dataclass(frozen=True)
class RecordedEndpoint:
    """A running ``sqsbus local``: its process id, endpoint URL and broker URL."""

    pid: int
    url: str
    broker_url: str


def record_path(environ: Mapping[str, str] | None = None) -> Path:
    """The file a running ``sqsbus local`` is recorded in."""
    env = os.environ if environ is None else environ
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV]) / RECORD_NAME
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "sqsbus" / RECORD_NAME


def write_record(url: str, broker_url: str, environ: Mapping[str, str] | None = None) -> Path:
    """Record this process as the running local endpoint (best effort; returns the path)."""
    path = record_path(environ)
    data = {"pid": os.getpid(), "url": url, "broker_url": broker_url}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data), encoding="utf-8")
    temporary.replace(path)
    return path


def clear_record(environ: Mapping[str, str] | None = None) -> None:
    """Remove the record if it is this process's."""
    path = record_path(environ)
    found = _load(path)
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def read_record(environ: Mapping[str, str] | None = None) -> RecordedEndpoint | None:
    """The recorded local endpoint if its process is still alive, else None."""
    found = _load(record_path(environ))
    if found is None or not _alive(found.pid):
        return None
    return found


def _load(path: Path) -> RecordedEndpoint | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RecordedEndpoint(int(data["pid"]), str(data["url"]), str(data["broker_url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
