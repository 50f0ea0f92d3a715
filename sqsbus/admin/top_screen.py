"""How ``sqsbus top`` prints: a live screen on a terminal, frames appended otherwise, or JSON.

On a terminal the frame is redrawn in place with plain ANSI sequences (the alternate screen,
cursor home, erase to end of line), cut to the terminal's size, with dead-letter queues in
colour (unless ``NO_COLOR`` is set); a resize redraws at once; Ctrl-C leaves the alternate
screen and prints the last frame. Elsewhere each refresh appends a frame (or one JSON line)
to stdout. Every line goes through :func:`~sqsbus.admin.render.terminal_safe` before any
escape sequence of ours is added.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Final, TextIO

from sqsbus.admin.budget import PRICE_NOTE
from sqsbus.admin.cloudwatch import DENIED, ERROR, NO_DATA
from sqsbus.admin.render import table, terminal_safe, to_json
from sqsbus.admin.top import QueueSample, QueueWatcher, TopSnapshot
from sqsbus.errors import TransientError

__all__ = ["TopOutput", "format_age", "format_rate", "frame_lines", "show_top"]

_ENTER: Final = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
_LEAVE: Final = "\x1b[?25h\x1b[?1049l"
_HOME: Final = "\x1b[H"
_ERASE_LINE: Final = "\x1b[K"
_ERASE_BELOW: Final = "\x1b[J"
_DLQ_COLOUR: Final = "\x1b[33m"  # yellow
_DLQ_WITH_MESSAGES: Final = "\x1b[1;31m"  # bold red
_RESET: Final = "\x1b[0m"
#: Seconds between checks for a resize while waiting for the next refresh.
_TICK: Final = 0.1

_HEADERS: Final = ["QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "NET/s"]
_CLOUDWATCH_HEADERS: Final = ["SENT/s", "DELETED/s", "OLDEST"]
_TAIL_HEADERS: Final = ["DLQ", "DEAD LETTERS"]


@dataclass(frozen=True)
class TopOutput:
    """Where and how to print: the stream, and what the operator asked for."""

    stream: TextIO
    once: bool = False
    json: bool = False
    refreshes: int | None = None
    #: Notes for the operator (stderr), e.g. a CloudWatch notice in JSON mode.
    note: Callable[[str], None] = lambda text: None


def format_rate(value: float | None, *, signed: bool = False) -> str:
    """Messages per second: ``+3.2``, ``-0.4``, ``0``, or ``-`` when unknown."""
    if value is None:
        return "-"
    if abs(value) < 0.005:
        return "0"
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_age(seconds: float | None) -> str:
    """``42s``, ``5m12s``, ``3h04m``, ``2d03h``, or ``-``."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def frame_lines(
    snapshot: TopSnapshot, *, width: int | None = None, height: int | None = None
) -> tuple[list[str], dict[int, bool]]:
    """The frame's lines (each terminal-safe, cut to ``width``; at most ``height``), and the
    index of each dead-letter queue's row with whether that queue holds messages."""
    queues = snapshot.queues
    cloudwatch = snapshot.metrics is not None
    header = [
        f"sqsbus top  {snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC  {snapshot.where}  "
        f"every {snapshot.plan.interval:g} s",
        f"{len(queues)} queue(s): {sum(q.visible for q in queues)} visible, "
        f"{sum(q.in_flight for q in queues)} in flight, {sum(q.delayed for q in queues)} "
        f"delayed; {sum(q.dead_letter_queue for q in queues)} dead-letter queue(s) holding "
        f"{sum(q.total for q in queues if q.dead_letter_queue)} message(s)",
        snapshot.plan.describe(),
        f"this refresh: {sum(snapshot.requests.values())} request(s) in "
        f"{snapshot.duration:.2f} s ({_operations(snapshot.requests)}); "
        f"{snapshot.total_requests} since start",
        "",
    ]
    headers = _HEADERS + (_CLOUDWATCH_HEADERS if cloudwatch else []) + _TAIL_HEADERS
    names = {queue.sqs_name: queue.name for queue in queues}
    rows = [_row(snapshot, queue, names) for queue in queues]
    right = {1, 2, 3, 4} | ({5, 6, 7} if cloudwatch else set())
    grid = table(headers, rows, right=right).split("\n") if queues else ["(no queues)"]
    footer = ["", *_legend(snapshot), *snapshot.notices]
    room = None if height is None else height - len(header) - len(footer)
    shown = len(queues)
    if room is not None and len(grid) > room:
        keep = max(2, room - 1)  # the column headers and at least one queue
        shown = keep - 1
        more = f"... {len(queues) - shown} more queue(s): a taller terminal or a narrower prefix"
        grid = [*grid[:keep], more]
    first_row = len(header) + 1  # after the column headers
    marked = {
        first_row + i: queue.total > 0
        for i, queue in enumerate(queues[:shown])
        if queue.dead_letter_queue
    }
    lines = [terminal_safe(line) for line in [*header, *grid, *footer]]
    if width is not None:
        lines = [line[:width] for line in lines]
    if height is not None:
        lines = lines[:height]
    return lines, {i: full for i, full in marked.items() if i < len(lines)}


def _operations(requests: dict[str, int]) -> str:
    if not requests:
        return "none"
    return ", ".join(f"{name.split('.', 1)[-1]} {count}" for name, count in requests.items())


def _row(snapshot: TopSnapshot, queue: QueueSample, names: dict[str, str]) -> list[str]:
    row = [
        queue.name,
        str(queue.visible),
        str(queue.in_flight),
        str(queue.delayed),
        format_rate(queue.net_per_second, signed=True),
    ]
    if snapshot.metrics is not None:
        row += _metric_cells(snapshot, queue)
    row += ["DLQ" if queue.dead_letter_queue else "", _dead_letter_cell(queue, names)]
    return row


def _metric_cells(snapshot: TopSnapshot, queue: QueueSample) -> list[str]:
    assert snapshot.metrics is not None
    state = snapshot.metrics.state
    if state in (DENIED, ERROR):
        return [state] * 3
    metrics = queue.metrics
    if metrics is None or metrics.minute is None:
        return [NO_DATA] * 3
    return [
        format_rate(metrics.sent_per_second),
        format_rate(metrics.deleted_per_second),
        format_age(metrics.oldest_age_seconds),
    ]


def _dead_letter_cell(queue: QueueSample, names: dict[str, str]) -> str:
    parts = []
    if queue.dead_letters_to:
        parts.append(f"-> {names.get(queue.dead_letters_to, queue.dead_letters_to)}")
    if queue.dead_letter_for:
        parts.append("DLQ of " + ", ".join(names.get(n, n) for n in queue.dead_letter_for))
    return "; ".join(parts) or "-"


def _legend(snapshot: TopSnapshot) -> list[str]:
    lines = [
        "NET/s: change of VISIBLE + IN FLIGHT + DELAYED per second since the last refresh "
        "(messages in minus out; '-' on the first). Counts are SQS's approximations."
    ]
    if snapshot.metrics is None:
        lines.append(
            "Messages sent/deleted per second and the age of the oldest message come only "
            "from CloudWatch: --cloudwatch."
        )
    else:
        lines.append(
            f"SENT/s, DELETED/s: CloudWatch's newest complete minute / 60; OLDEST: "
            f"ApproximateAgeOfOldestMessage (CloudWatch {snapshot.metrics.state}, read "
            f"{snapshot.metrics.read_at:%H:%M:%S} UTC, once a minute)."
        )
    lines.append(f"Prices assumed: {PRICE_NOTE}.")
    return lines


# -- printing --------------------------------------------------------------------------------


def show_top(watcher: QueueWatcher, output: TopOutput) -> int:
    """Refresh and print until done (``once``, ``refreshes``) or Ctrl-C; the exit status."""
    try:
        with watcher:
            if output.json or output.once or not _is_terminal(output.stream):
                _append(watcher, output)
            else:
                _live(watcher, output)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # e.g. | head: the reader has what it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), output.stream.fileno())
    return 0


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _append(watcher: QueueWatcher, output: TopOutput) -> None:
    """One frame (or JSON line) per refresh, appended. A transient failure after the first
    refresh is noted on stderr and retried at the next interval."""
    count = 0
    noted: set[str] = set()
    while True:
        started = time.monotonic()
        try:
            snapshot = watcher.refresh()
        except TransientError as exc:
            if not count:
                raise  # nothing shown yet: the command fails with the one-line error
            output.note(f"refresh failed at {time.strftime('%H:%M:%S')}: {exc}; retrying")
            _sleep_until(started + watcher.interval)
            continue
        if output.json:
            for notice in snapshot.notices:
                if notice not in noted:
                    output.note(notice)
                    noted.add(notice)
            output.stream.write(to_json(snapshot.to_json(), indent=None) + "\n")
        else:
            lines, _ = frame_lines(snapshot)
            output.stream.write("\n".join(lines) + "\n\n")
        output.stream.flush()
        count += 1
        if output.once or (output.refreshes is not None and count >= output.refreshes):
            return
        _sleep_until(started + snapshot.plan.interval)


def _sleep_until(deadline: float, check: Callable[[], None] = lambda: None) -> None:
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, _TICK))
        check()


def _live(watcher: QueueWatcher, output: TopOutput) -> None:
    """Redraw in place on the terminal until Ctrl-C (or ``refreshes``)."""
    started = time.monotonic()
    screen = _LiveScreen(output.stream, watcher.refresh())  # fails before the screen changes
    previous = {
        signal.SIGWINCH: signal.signal(signal.SIGWINCH, screen.on_resize),
        # `kill` must not leave the terminal on the alternate screen with no cursor.
        signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt),
    }
    output.stream.write(_ENTER)
    count = 0
    try:
        while True:
            screen.draw()
            count += 1
            if output.refreshes is not None and count >= output.refreshes:
                return
            _sleep_until(started + screen.snapshot.plan.interval, screen.after_resize)
            started = time.monotonic()
            try:
                screen.snapshot, screen.problem = watcher.refresh(), None
            except TransientError as exc:
                screen.problem = f"refresh failed at {time.strftime('%H:%M:%S')}: {exc}; retrying"
    finally:
        output.stream.write(_LEAVE)
        for number, handler in previous.items():
            signal.signal(number, handler)
        lines, _ = frame_lines(screen.snapshot)
        output.stream.write("\n".join(lines) + "\n")
        output.stream.flush()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _LiveScreen:
    """The newest frame on the terminal, redrawn when it changes or the terminal resizes."""

    def __init__(self, stream: TextIO, snapshot: TopSnapshot) -> None:
        self.stream = stream
        self.snapshot = snapshot
        self.problem: str | None = None
        self.resized = False

    def on_resize(self, signum: int, frame: FrameType | None) -> None:
        self.resized = True  # redrawn by the main loop, not inside the signal handler

    def after_resize(self) -> None:
        if self.resized:
            self.resized = False
            self.draw()

    def draw(self) -> None:
        _draw(self.stream, self.snapshot, self.problem)


def _draw(stream: TextIO, snapshot: TopSnapshot, problem: str | None) -> None:
    size = shutil.get_terminal_size()
    lines, marked = frame_lines(snapshot, width=size.columns, height=size.lines - 1)
    if problem:
        lines = [terminal_safe(problem)[: size.columns], *lines[: size.lines - 2]]
        marked = {i + 1: full for i, full in marked.items() if i + 1 < len(lines)}
    if "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb":
        for i, full in marked.items():
            lines[i] = (_DLQ_WITH_MESSAGES if full else _DLQ_COLOUR) + lines[i] + _RESET
    stream.write(_HOME + "".join(line + _ERASE_LINE + "\n" for line in lines) + _ERASE_BELOW)
    stream.flush()
