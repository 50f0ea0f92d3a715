"""sqsbus: a fast, drop-in Kombu/Celery transport for Amazon SQS.

``import sqsbus`` registers the ``sqsbus://`` URL scheme with Kombu, so
``kombu.Connection("sqsbus://")`` and Celery's ``broker_url = "sqsbus://"`` work.
Alternatively set ``broker_transport = "sqsbus.kombu:Transport"``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqsbus.engine.publish_batch import PublishBatch

#: Written only here: pyproject.toml reads it, `sqsbus --version` prints it, CHANGELOG.md names it.
__version__ = "0.1.0"

TRANSPORT = "sqsbus.kombu:Transport"


def register() -> None:
    """Register the ``sqsbus`` transport alias with Kombu (idempotent)."""
    try:
        from kombu.transport import TRANSPORT_ALIASES
    except ImportError:  # Kombu is optional for the engine
        return
    TRANSPORT_ALIASES.setdefault("sqsbus", TRANSPORT)


def batched_publishing(timeout: float = 60.0) -> AbstractContextManager[PublishBatch]:
    """Publish from this thread without waiting for each message; confirm them all when
    the ``with`` block ends (see :mod:`sqsbus.engine.publish_batch`)::

        with sqsbus.batched_publishing():
            group(add.s(i, i) for i in range(5000)).apply_async()
    """
    from sqsbus.engine.publish_batch import batched_publishing as batched

    return batched(timeout)


register()

__all__ = ["TRANSPORT", "__version__", "batched_publishing", "register"]
