"""Operating queues: list, peek at, purge, move and redrive messages.

The Python API behind ``sqsbus queues``, ``peek``, ``purge``, ``move`` and ``redrive``.
Connect with :meth:`AdminSession.connect` (same URL and transport options as a Kombu
connection), then::

    session = AdminSession.connect(BrokerChoice("sqsbus://", "code"), {"region": "eu-west-1"})
    for info in list_queues(session):
        print(info.name, info.visible)
    redrive(session, session.queue("celery-dlq"))
"""

from sqsbus.admin.describe import MessageSummary, summarize
from sqsbus.admin.inventory import DeadLetterPolicy, QueueInfo, list_queues, queue_info
from sqsbus.admin.peek import PeekedMessage, PeekResult, peek
from sqsbus.admin.redrive import dead_letter_sources, redrive
from sqsbus.admin.session import AdminSession, BrokerChoice, choose_broker
from sqsbus.admin.transfer import TransferResult, move
from sqsbus.errors import PeekRefused, UnknownQueueError

__all__ = [
    "AdminSession",
    "BrokerChoice",
    "DeadLetterPolicy",
    "MessageSummary",
    "PeekRefused",
    "PeekResult",
    "PeekedMessage",
    "QueueInfo",
    "TransferResult",
    "UnknownQueueError",
    "choose_broker",
    "dead_letter_sources",
    "list_queues",
    "move",
    "peek",
    "queue_info",
    "redrive",
    "summarize",
]
