"""Sweep now: delete the temporary queues of processes that died (see :mod:`sqsbus.expiry`).

Workers sweep by themselves every ``orphan_sweep_interval``, a few random candidates at a
time; :func:`sweep` checks every candidate under the session's prefix at once.
"""

from __future__ import annotations

from sqsbus.admin.session import AdminSession
from sqsbus.expiry import Sweeper, SweepReport

__all__ = ["SweepReport", "sweep"]


def sweep(session: AdminSession, *, limit: int | None = None) -> SweepReport:
    """Delete the expired temporary queues (parked messages sent home first); read the tags
    of at most ``limit`` candidates (default: all of them)."""
    return Sweeper(session.aws, session.options, session.directory).sweep(limit=limit)
