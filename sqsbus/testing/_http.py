"""Just enough HTTP/1.1 for the fault proxy: read and write whole messages on asyncio streams.

Requests are read with their bodies framed by ``Content-Length`` or by chunked transfer
coding (kept byte for byte, so a signed body is forwarded unchanged); ``Expect:
100-continue`` is answered before the body is read. Responses are read whole (fixed length,
chunked, or until the upstream closes) and written back with a ``Content-Length``, so the
proxy can change them and keep the client's connection alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "HttpError",
    "Request",
    "Response",
    "read_request",
    "read_response",
    "reset",
    "write_request",
    "write_response",
]

#: Largest request or response head (start line and headers) accepted.
MAX_HEAD_BYTES: Final = 64 * 1024
#: Headers that describe one hop, not the message: never forwarded as they are.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)

_REASONS: Final = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """A peer sent something that is not HTTP/1.x this module can frame."""


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",") if token.strip()}


@dataclass
class Request:
    """One request as received: ``raw_body`` is the body exactly as framed on the wire."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw_body: bytes = b""
    chunked: bool = False

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return _header(self.headers, name)

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants to send more requests on this connection."""
        connection = _tokens(self.header("connection"))
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def with_body(self, body: bytes) -> Request:
        """A copy with a new (Content-Length framed) body."""
        return Request(self.method, self.target, self.version, self.headers, body, body, False)


@dataclass
class Response:
    """A whole response; ``reusable`` tells whether its connection may serve another request."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    reason: str = ""
    reusable: bool = False

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return _header(self.headers, name)


async def _read_head(reader: asyncio.StreamReader) -> list[str] | None:
    """Start line and header lines of the next message; None on a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HttpError("the connection closed in the middle of a message head") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpError(f"message head longer than {MAX_HEAD_BYTES} bytes") from exc
    if len(head) > MAX_HEAD_BYTES:
        raise HttpError(f"message head longer than {MAX_HEAD_BYTES} bytes")
    lines = head.decode("latin-1").split("\r\n")
    while lines and not lines[0]:  # tolerate empty lines between messages
        lines.pop(0)
    return [line for line in lines if line] or None


def _parse_headers(lines: list[str]) -> list[tuple[str, str]]:
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            # Never echo the line: it may hold credentials (Authorization).
            raise HttpError("malformed header line")
        headers.append((name, value.strip()))
    return headers


async def _read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """A chunked body: (decoded payload, the exact bytes on the wire)."""
    raw = bytearray()
    payload = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        raw += size_line
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise HttpError("bad chunk size line") from exc
        if size == 0:
            while True:  # trailer fields, then an empty line
                line = await reader.readuntil(b"\r\n")
                raw += line
                if line == b"\r\n":
                    return bytes(payload), bytes(raw)
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise HttpError("chunk not followed by CRLF")
        raw += chunk
        payload += chunk[:-2]


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    value = _header(headers, "content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError as exc:
        raise HttpError(f"bad Content-Length {value[:20]!r}") from exc
    if length < 0:
        raise HttpError(f"bad Content-Length {value[:20]!r}")
    return length


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """Read the next request of a client connection; None when the client closed it."""
    lines = await _read_head(reader)
    if lines is None:
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError("not an HTTP/1.x request line")
    method, target, version = parts
    headers = _parse_headers(lines[1:])
    request = Request(method, target, version, headers)
    chunked = "chunked" in _tokens(request.header("transfer-encoding"))
    length = None if chunked else _content_length(headers)
    has_body = chunked or bool(length)
    if has_body and "100-continue" in _tokens(request.header("expect")):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if chunked:
        request.body, request.raw_body = await _read_chunked(reader)
        request.chunked = True
    elif length:
        request.body = request.raw_body = await reader.readexactly(length)
    return request


def write_request(writer: asyncio.StreamWriter, request: Request) -> None:
    """Send ``request`` upstream: hop-by-hop headers dropped, body framed as received."""
    lines = [f"{request.method} {request.target} HTTP/1.1"]
    for name, value in request.headers:
        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
            lines.append(f"{name}: {value}")
    if request.chunked:
        lines.append("Transfer-Encoding: chunked")
    elif request.raw_body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(request.raw_body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.raw_body)


async def read_response(reader: asyncio.StreamReader, method: str) -> Response:
    """Read a whole response to a ``method`` request (interim 1xx answers are skipped)."""
    while True:
        lines = await _read_head(reader)
        if lines is None:
            raise HttpError("the upstream closed the connection without answering")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
        status = int(parts[1])
        if not 100 <= status < 200:
            break
    headers = _parse_headers(lines[1:])
    response = Response(status, headers, reason=parts[2] if len(parts) > 2 else "")
    reusable = parts[0] == "HTTP/1.1" and "close" not in _tokens(response.header("connection"))
    if method == "HEAD" or status in (204, 304):
        pass
    elif "chunked" in _tokens(response.header("transfer-encoding")):
        response.body, _ = await _read_chunked(reader)
    else:
        length = _content_length(headers)
        if length is None:
            response.body = await reader.read()
            reusable = False
        else:
            response.body = await reader.readexactly(length)
    response.reusable = reusable
    return response


def write_response(
    writer: asyncio.StreamWriter, response: Response, *, method: str, keep_alive: bool
) -> None:
    """Send ``response`` to a client, framed by ``Content-Length``."""
    reason = response.reason or _REASONS.get(response.status, "Unknown")
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    for name, value in response.headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP or (lowered == "content-length" and method != "HEAD"):
            continue
        lines.append(f"{name}: {value}")
    if method != "HEAD" and response.status not in (204, 304):
        lines.append(f"Content-Length: {len(response.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    body = b"" if method == "HEAD" else response.body
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def reset(writer: asyncio.StreamWriter) -> None:
    """Drop a connection at once with a TCP reset, answering nothing."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
