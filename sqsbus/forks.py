"""Fork safety: what a forked child process (Celery's prefork pool) must not inherit.

Locks held by another thread at ``fork`` stay locked forever in the child, and threads do
not survive it; modules that keep such state reset it in the child through
:func:`reset_in_child`. Platforms without ``fork`` (Windows) never call it.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def reset_in_child(callback: Callable[[], None]) -> None:
    """Call ``callback`` in every child process right after ``fork``."""
    register = getattr(os, "register_at_fork", None)
    if register is not None:
        register(after_in_child=callback)
