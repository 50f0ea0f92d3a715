"""Waiting until a child process (a server, a worker) is ready, or failing with why not.

:func:`wait_for_child` polls a readiness check (the server answers, a ready file exists, a
task came back) while watching that the child is still alive; :func:`first_line` reads the
line a child server prints when it listens (its URL). Both raise :class:`ChildFailed`, whose
message says which child, what happened, and whatever ``context`` adds (a log tail).
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

__all__ = ["ChildFailed", "first_line", "wait_for_child"]

T = TypeVar("T")

#: Seconds between two readiness checks.
POLL_INTERVAL: Final = 0.05
#: Seconds a child that closed its output gets to exit, so that its exit code can be told.
_EXIT_GRACE: Final = 5.0


class ChildFailed(RuntimeError):
    """A child process exited, or was not ready in time."""


def _no_context() -> str:
    return ""


def wait_for_child(
    process: subprocess.Popen[Any],
    ready: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    interval: float = POLL_INTERVAL,
    context: Callable[[], str] = _no_context,
) -> T:
    """Call ``ready`` until it returns something other than None or False; return that.

    Raises :class:`ChildFailed` as soon as ``process`` exits, or once ``timeout`` seconds
    have passed; ``what`` names the child in the message, ``context()`` is appended to it.
    """
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise ChildFailed(f"{what} exited with code {code} before it was ready{context()}")
        value = ready()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise ChildFailed(f"{what} was not ready within {timeout:g} s{context()}")
        time.sleep(interval)


def first_line(
    process: subprocess.Popen[Any],
    *,
    what: str,
    timeout: float,
    context: Callable[[], str] = _no_context,
) -> str:
    """The first line ``process`` writes to its ``stdout`` pipe, without its line ending.

    Raises :class:`ChildFailed` if the child closes its output (exits) before writing a line,
    or writes none within ``timeout`` seconds.
    """
    stream = process.stdout
    if stream is None:
        raise ValueError("the child's stdout is not a pipe (stdout=subprocess.PIPE)")
    lines: queue.Queue[str | bytes] = queue.Queue(maxsize=1)
    reader = threading.Thread(
        target=lambda: lines.put(stream.readline()), name="first-line-reader", daemon=True
    )
    reader.start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise ChildFailed(f"{what} printed nothing within {timeout:g} s{context()}") from None
    text = line.decode(errors="replace") if isinstance(line, bytes) else line
    if not text:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(_EXIT_GRACE)
        code = process.poll()
        if code is None:
            raise ChildFailed(f"{what} closed its output before it was ready{context()}")
        raise ChildFailed(f"{what} exited with code {code} before it was ready{context()}")
    return text.rstrip("\r\n")
