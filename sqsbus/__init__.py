"""sqsbus: a fast, drop-in Kombu/Celery transport for Amazon SQS.

``import sqsbus`` registers the ``sqsbus://`` URL scheme with Kombu, so
``kombu.Connection("sqsbus://")`` and Celery's ``broker_url = "sqsbus://"`` work.
Alternatively set ``broker_transport = "sqsbus.kombu:Transport"``.
"""

from __future__ import annotations

__version__ = "0.1.0"

TRANSPORT = "sqsbus.kombu:Transport"


def register() -> None:
    """Register the ``sqsbus`` transport alias with Kombu (idempotent)."""
    try:
        from kombu.transport import TRANSPORT_ALIASES
    except ImportError:  # Kombu is optional for the engine
        return
    TRANSPORT_ALIASES.setdefault("sqsbus", TRANSPORT)


register()

__all__ = ["TRANSPORT", "__version__", "register"]
