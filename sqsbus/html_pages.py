"""One short line for an HTML page that a proxy or web server sent where an AWS answer was
expected (``502 Bad Gateway`` from nginx, a captive portal, a login page): error messages
name the page instead of quoting its markup."""

from __future__ import annotations

import html
import re
from typing import Final

__all__ = ["html_summary"]

#: Longest summary kept, in characters.
MAX_SUMMARY: Final = 80
#: How far into a text the markers of an HTML page are looked for.
_HEAD_CHARS: Final = 2048
_PAGE_MARKER: Final = re.compile(r"<\s*(?:!doctype\s+html|html|head|body|title)[\s>]", re.I)
_HEADINGS: Final = (
    re.compile(r"<title[^>]*>(.*?)</title\s*>", re.I | re.S),
    re.compile(r"<h1[^>]*>(.*?)</h1\s*>", re.I | re.S),
)
_TAG: Final = re.compile(r"<[^>]*>")


def html_summary(text: str) -> str | None:
    """``None`` if ``text`` is not an HTML page, else its title (or first heading) as one
    printable line of at most :data:`MAX_SUMMARY` characters; ``""`` when it has neither."""
    if not _PAGE_MARKER.search(text[:_HEAD_CHARS]):
        return None
    for heading in _HEADINGS:
        found = heading.search(text)
        if found:
            line = html.unescape(_TAG.sub(" ", found.group(1)))
            line = " ".join("".join(c if c.isprintable() else " " for c in line).split())
            if line:
                return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 3] + "..."
    return ""
