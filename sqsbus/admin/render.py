"""Plain-text rendering for the operator commands: aligned tables and a progress bar.

Text shown to the operator comes from messages and queues that anyone allowed to send to the
account controls, so it passes through :func:`terminal_safe` before reaching the terminal:
table cells in :func:`table`, whole lines in :func:`terminal_text`, JSON in :func:`to_json`.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Collection, Sequence
from typing import Any, Final, TextIO

__all__ = [
    "ProgressBar",
    "format_size",
    "format_time",
    "progress_wanted",
    "table",
    "terminal_safe",
    "terminal_text",
    "to_json",
    "truncate",
]

BAR_WIDTH: Final = 30
#: Seconds between two redraws of the progress bar.
REDRAW_SECONDS: Final = 0.1

#: Characters a terminal acts on or that reorder what it shows: C0 controls and DEL, C1
#: controls (U+0080-U+009F, e.g. U+009B, a one-character CSI), the bidirectional marks,
#: embeddings, overrides and isolates, and the Unicode line and paragraph separators.
_UNSAFE: Final = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def terminal_safe(text: str) -> str:
    """``text`` as one line a terminal only displays: unsafe characters escaped visibly.

    Each character of :data:`_UNSAFE` becomes its Python escape (``\\x1b``, ``\\x9b``,
    ``\\u202e``; ``\\n``, ``\\r``, ``\\t``), so the operator sees that it was there. Other
    text, non-ASCII included, is unchanged.
    """
    return _UNSAFE.sub(_visible, text)


def terminal_text(text: str) -> str:
    """Lines of free text made safe by :func:`terminal_safe`; the line breaks are kept."""
    return "\n".join(terminal_safe(line) for line in text.split("\n"))


def to_json(value: Any, *, indent: int | None = 2) -> str:
    """Indented JSON (one line with ``indent=None``) that is safe on a terminal and keeps
    non-ASCII text readable.

    ``json.dumps`` escapes the C0 controls inside strings; the line breaks of the indentation
    are the only ones left outside. The other characters of :data:`_UNSAFE` can only be inside
    strings, where they are written as JSON ``\\uXXXX`` escapes (the value decodes unchanged).
    """
    separators = None if indent is not None else (",", ":")
    text = json.dumps(value, indent=indent, ensure_ascii=False, separators=separators)
    return _UNSAFE.sub(_json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    return char if char == "\n" else f"\\u{ord(char):04x}"


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
    """An aligned table; columns in ``right`` are right-aligned, ``widths`` caps columns.

    Every header and cell goes through :func:`terminal_safe` (so each is one line) before it
    is measured and cut.
    """
    caps = widths or {}
    headers = [terminal_safe(header) for header in headers]
    cells = [
        [
            truncate(safe, caps[i]) if i in caps else safe
            for i, safe in enumerate(map(terminal_safe, row))
        ]
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
        self.label = terminal_safe(label)
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
