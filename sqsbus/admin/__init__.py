"""Operating queues: list, watch, peek at, purge, move and redrive messages, sweep dead
processes' temporary queues.

The Python API behind the operator commands: :data:`sqsbus.admin.registry.COMMANDS` maps
each ``sqsbus`` command to its function here (``sqsbus purge`` to :func:`purge` ...).
Connect with :meth:`AdminSession.connect` (same URL and transport options as a Kombu
connection), then::

    session = AdminSession.connect(BrokerChoice("sqsbus://", "code"), {"region": "eu-west-1"})
    for info in list_queues(session):
        print(info.name, info.visible)
    redrive(session, session.queue("celery-dlq"))
    with watch_queues(session, interval=5, max_requests_per_second=10) as watcher:
        print(watcher.refresh().queues)
    purge(session, "celery", confirm=lambda found: found.total < 100)
"""

from sqsbus.admin.describe import MessageSummary, summarize
from sqsbus.admin.inventory import DeadLetterPolicy, QueueInfo, list_queues, queue_info
from sqsbus.admin.peek import PeekedMessage, PeekResult, peek
from sqsbus.admin.purge import PurgeResult, purge
from sqsbus.admin.redrive import dead_letter_sources, redrive
from sqsbus.admin.session import AdminSession, BrokerChoice, choose_broker
from sqsbus.admin.sweep import SweepReport, sweep
from sqsbus.admin.top import QueueSample, QueueWatcher, TopSnapshot, watch_queues
from sqsbus.admin.transfer import TransferResult, move
from sqsbus.errors import PeekRefused, PurgeInProgress, UnknownQueueError

# A literal, as type checkers read it; tests check it holds every registered command's function.
__all__ = [
    "AdminSession",
    "BrokerChoice",
    "DeadLetterPolicy",
    "MessageSummary",
    "PeekRefused",
    "PeekResult",
    "PeekedMessage",
    "PurgeInProgress",
    "PurgeResult",
    "QueueInfo",
    "QueueSample",
    "QueueWatcher",
    "SweepReport",
    "TopSnapshot",
    "TransferResult",
    "UnknownQueueError",
    "choose_broker",
    "dead_letter_sources",
    "list_queues",
    "move",
    "peek",
    "purge",
    "queue_info",
    "redrive",
    "summarize",
    "sweep",
    "watch_queues",
]
