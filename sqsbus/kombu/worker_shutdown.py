"""Whether the Celery worker of this process is shutting down, for waits that should end early.

Celery's gevent and eventlet pools run the worker's consumer without Kombu's hub: a loop that
calls ``drain_events(timeout=2.0)`` and looks at the shutdown flag only between calls (and
calls it once more after it saw the flag), and their remote control runs a second such loop
(``timeout=1.0``) on a connection of its own. A drain that waits out its whole timeout makes
each warm shutdown seconds longer. Celery announces a shutdown with its public
``worker_shutting_down`` signal (SIGTERM, SIGINT, SIGQUIT); :func:`watch` connects to it in
a process where Celery is loaded, and :func:`shutting_down` then tells the transport to stop
waiting.

The receiver only sets a flag: Celery sends the signal from its signal handler, which may run
while the interrupted thread holds any lock.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["shutting_down", "watch"]

_state = {"connected": False, "stopping": False}


def _on_worker_shutting_down(*args: Any, **kwargs: Any) -> None:
    _state["stopping"] = True


def watch() -> None:
    """Listen for Celery's ``worker_shutting_down`` if Celery is loaded (once per process)."""
    if _state["connected"]:
        return
    signals = sys.modules.get("celery.signals")
    if signals is None:
        return  # no Celery worker in this process (Celery is never imported for this)
    signals.worker_shutting_down.connect(_on_worker_shutting_down, weak=False)
    _state["connected"] = True


def shutting_down() -> bool:
    """True once the Celery worker of this process started shutting down."""
    return _state["stopping"]
