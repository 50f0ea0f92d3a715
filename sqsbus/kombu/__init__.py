"""Kombu adapter: ``Transport`` and ``Channel`` over the sqsbus engine."""

from sqsbus.kombu.channel import Channel
from sqsbus.kombu.transport import Transport

__all__ = ["Channel", "Transport"]
