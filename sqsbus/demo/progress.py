"""The demo's progress display: a bar on a terminal, a line every few seconds otherwise."""

from __future__ import annotations

import time
from typing import IO, Final

__all__ = ["Progress"]

#: Seconds between two progress lines when the output is not a terminal.
PLAIN_PROGRESS_SECONDS: Final = 2.0
BAR_WIDTH: Final = 30


class Progress:
    """A ``\\r``-updated progress bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last_plain = self.started
        self._last_line = ""

    def update(self, finished: int, published: int, *, final: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        rate = finished / elapsed if elapsed > 0 else 0.0
        percent = 100 * finished // self.total if self.total else 100
        if self.tty:
            filled = BAR_WIDTH * finished // self.total if self.total else BAR_WIDTH
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            line = (
                f"  [{bar}] {finished:>{len(str(self.total))}}/{self.total} {percent:3d}%  "
                f"sent {published}  {rate:6.1f} tasks/s  {elapsed:5.1f} s"
            )
            padding = " " * max(0, len(self._last_line) - len(line))
            self.stream.write("\r" + line + padding + ("\n" if final else ""))
            self._last_line = line
            self.stream.flush()
        elif final or now - self._last_plain >= PLAIN_PROGRESS_SECONDS:
            self._last_plain = now
            self.stream.write(
                f"  progress: {finished}/{self.total} tasks done ({percent}%), {published} sent, "
                f"{rate:.1f} tasks/s, {elapsed:.1f} s\n"
            )
            self.stream.flush()
