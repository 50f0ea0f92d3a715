"""Plain-text rendering for the operator commands: aligned tables and a progress bar."""

from __future__ import annotations

import datetime
import time
from collections.abc import Collection, Sequence
from typing import Final, TextIO

__all__ = ["ProgressBar", "format_size", "format_time", "progress_wanted", "table", "truncate"]

BAR_WIDTH: Final = 30
#: Seconds between two redraws of the progress bar.
REDRAW_SECONDS: Final = 0.1


def truncate(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(0, width - 3)] + "..."


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    widths: dict[int, int] | None = None,
) -> str:
    """An aligned table; columns in ``right`` are right-aligned, ``widths`` caps columns."""
    caps = widths or {}
    cells = [
        [truncate(cell, caps[i]) if i in caps else cell for i, cell in enumerate(row)]
        for row in rows
    ]
    sizes = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            sizes[i] = max(sizes[i], len(cell))

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(sizes[i]) if i in right else value.ljust(sizes[i])
            for i, value in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def format_size(size: int) -> str:
    """Bytes as ``512 B``, ``1.5 KiB``, ``2.0 MiB``."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def format_time(moment: datetime.datetime | None) -> str:
    """A UTC timestamp to the second, or ``-``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def progress_wanted(choice: bool | None, stream: TextIO) -> bool:
    """``--progress``/``--no-progress`` if given, else only when ``stream`` is a terminal."""
    if choice is not None:
        return choice
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ProgressBar:
    """A one-line bar redrawn in place on ``stream`` (a no-op when disabled)."""

    def __init__(self, stream: TextIO, label: str, *, enabled: bool) -> None:
        self.stream = stream
        self.label = label
        self.enabled = enabled
        self._drawn = False
        self._last = 0.0

    def update(self, done: int, total: int | None, failed: int = 0, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < REDRAW_SECONDS:
            return
        self._last = now
        if total:
            total = max(total, done)  # counts are approximate
            filled = BAR_WIDTH * done // total
            bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total}"
        else:
            bar = f"{done}"
        failures = f", {failed} failed" if failed else ""
        self.stream.write(f"\r{self.label} {bar} moved{failures}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
