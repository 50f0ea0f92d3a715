"""Small helpers for choosing and checking TCP ports on this machine."""

from __future__ import annotations

import socket

__all__ = ["connect_host", "family_for", "pick_free_port", "port_is_free"]


def family_for(host: str) -> socket.AddressFamily:
    """Return the address family a server binding ``host`` uses (IPv6 when it has a colon)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def connect_host(host: str) -> str:
    """Return the address a client should connect to for a server bound to ``host``.

    A wildcard bind address (``0.0.0.0`` or ``::``) is reached through loopback.
    """
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _bound_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(family_for(host), socket.SOCK_STREAM)
    try:
        # Same option the server sets, so lingering TIME_WAIT sockets don't count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def pick_free_port(host: str) -> int:
    """Ask the kernel for a currently unused TCP port on ``host``.

    The port is released before returning, so another process could take it first; callers
    starting a server on it should be ready to retry.
    """
    with _bound_socket(host, 0) as sock:
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """Return True if a server could bind ``host:port`` right now."""
    try:
        with _bound_socket(host, port):
            return True
    except OSError:
        return False
