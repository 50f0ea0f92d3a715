"""Answers in markup where an AWS answer in JSON was expected, as one short line each, so
error messages never quote markup: an HTML page of a proxy or web server (``502 Bad
Gateway`` from nginx, a captive portal, a login page), or an error in AWS's XML shape (as
some AWS-compatible endpoints answer requests of the JSON protocol)."""

from __future__ import annotations

import html
import re
from typing import Final

__all__ = ["html_summary", "xml_error_message"]

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
_XML_ERROR: Final = re.compile(r"\s*(?:<\?xml[^>]*\?>\s*)?<(?:ErrorResponse|Error)\b")
_XML_MESSAGE: Final = re.compile(r"<Message>(.*?)</Message>", re.S)


def xml_error_message(text: str) -> str | None:
    """The ``<Message>`` of an AWS error in XML, as one printable line; None if ``text`` is
    not one (or has no message)."""
    if not _XML_ERROR.match(text):
        return None
    found = _XML_MESSAGE.search(text)
    return _one_line(found.group(1)) or None if found else None


def html_summary(text: str) -> str | None:
    """``None`` if ``text`` is not an HTML page, else its title (or first heading) as one
    printable line of at most :data:`MAX_SUMMARY` characters; ``""`` when it has neither."""
    if not _PAGE_MARKER.search(text[:_HEAD_CHARS]):
        return None
    for heading in _HEADINGS:
        found = heading.search(text)
        line = _one_line(found.group(1)) if found else ""
        if line:
            return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 3] + "..."
    return ""


def _one_line(markup: str) -> str:
    """The text of ``markup``: tags dropped, entities decoded, whitespace collapsed."""
    text = html.unescape(_TAG.sub(" ", markup))
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())
