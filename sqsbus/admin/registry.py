"""The operator commands, each declared once: ``sqsbus NAME``, its options, its function of
the :mod:`sqsbus.admin` API and how its result is printed.

``sqsbus --help``, the subcommands of :mod:`sqsbus.cli` and the list ``sqsbus local``
prints are built from :data:`COMMANDS`; tests check the README, the docs and
``sqsbus.admin.__all__`` against it. A new command is one more :class:`Command` here, with
its ``<name>_arguments`` in :mod:`sqsbus.admin.arguments`, its ``call_<name>`` and
``render_<name>`` in :mod:`sqsbus.admin.commands`, and its API function exported by
:mod:`sqsbus.admin`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from sqsbus.admin import arguments, commands
from sqsbus.admin.budget import PRICE_NOTE, RefreshPlan
from sqsbus.admin.inventory import list_queues
from sqsbus.admin.peek import peek
from sqsbus.admin.purge import purge
from sqsbus.admin.redrive import redrive
from sqsbus.admin.session import AdminSession
from sqsbus.admin.sweep import sweep
from sqsbus.admin.top import DEFAULT_INTERVAL, DEFAULT_MAX_REQUESTS_PER_SECOND, watch_queues
from sqsbus.admin.transfer import move

__all__ = ["COMMANDS", "Command"]

#: What a command's API function returns and its renderer prints.
R = TypeVar("R")


@dataclass(frozen=True)
class Command(Generic[R]):
    """One operator command; the types tie ``api``, ``call`` and ``render`` to one result."""

    #: The subcommand: ``sqsbus NAME``.
    name: str
    #: One line for ``sqsbus --help``.
    summary: str
    #: The paragraph of ``sqsbus NAME --help``.
    description: str
    #: Adds the command's own options (the connection options are every command's).
    add_arguments: Callable[[argparse.ArgumentParser], None]
    #: The public function of :mod:`sqsbus.admin` doing the work.
    api: Callable[..., R]
    #: Calls ``api`` with the parsed options (prompts, notes and progress on stderr).
    call: Callable[[argparse.Namespace, AdminSession], R]
    #: Prints the result; returns the exit status.
    render: Callable[[argparse.Namespace, AdminSession, R], int]

    def run(self, args: argparse.Namespace) -> int:
        """Connect, call and print, as ``sqsbus NAME`` does; the exit status."""
        return commands.execute(
            args, lambda session: self.render(args, session, self.call(args, session))
        )


def _top_description() -> str:
    """``sqsbus top --help``'s paragraph, its cost example computed by the budget itself."""
    example = RefreshPlan(
        queues=10,
        fifo_queues=0,
        requested_interval=DEFAULT_INTERVAL,
        max_requests_per_second=DEFAULT_MAX_REQUESTS_PER_SECOND,
        listing=True,
        cloudwatch=True,
    )
    return (
        "A live view of the queues, refreshed every few seconds: visible, in-flight and "
        "delayed messages, their net change per second, dead-letter queues marked, and with "
        "--cloudwatch the messages sent and deleted per second and the age of the oldest "
        "message. Cost per refresh: one GetQueueAttributes per queue; ListQueues once a "
        "minute (one per 1,000 queues); --cloudwatch adds one GetMetricData a minute (3 "
        "metrics per queue). Requests never exceed --max-requests-per-second: with many "
        "queues the refresh interval grows. Example: 10 queues every "
        f"{DEFAULT_INTERVAL:g} s make {example.sqs_requests_per_hour:,.0f} SQS requests an "
        f"hour, about ${example.sqs_cost_per_hour:.4f}; --cloudwatch adds "
        f"{example.cloudwatch_metrics_per_hour:,.0f} metrics an hour, about "
        f"${example.cloudwatch_cost_per_hour:.3f} ({PRICE_NOTE})."
    )


#: Every operator command, in the order ``sqsbus --help`` lists them. Deliberately not
#: annotated ``tuple[Command[Any], ...]``: that context would make mypy take ``R`` as ``Any``
#: and stop checking that each command's ``api``, ``call`` and ``render`` agree.
COMMANDS: Final = (
    Command(
        name="queues",
        summary="list queues with message counts and dead-letter settings",
        description=(
            "List every queue under the queue name prefix (or every predefined queue): "
            "visible, in-flight and delayed messages, FIFO, and where dead letters go."
        ),
        add_arguments=arguments.queues_arguments,
        api=list_queues,
        call=commands.call_queues,
        render=commands.render_queues,
    ),
    Command(
        name="top",
        summary="watch queue counts live, within a request budget (--once, --json)",
        description=_top_description(),
        add_arguments=arguments.top_arguments,
        api=watch_queues,
        call=commands.call_top,
        render=commands.render_top,
    ),
    Command(
        name="peek",
        summary="show messages of a queue without consuming them",
        description=(
            "Receive up to N messages with a short visibility timeout and make them visible "
            "again at once. Each message shown counts one receive; on a queue with a redrive "
            "policy that brings it closer to the dead-letter queue (see docs/operator-cli.md)."
        ),
        add_arguments=arguments.peek_arguments,
        api=peek,
        call=commands.call_peek,
        render=commands.render_peek,
    ),
    Command(
        name="purge",
        summary="delete every message of a queue (asks first)",
        description="Delete every message of QUEUE with SQS's PurgeQueue, after confirmation.",
        add_arguments=arguments.purge_arguments,
        api=purge,
        call=commands.call_purge,
        render=commands.render_purge,
    ),
    Command(
        name="move",
        summary="move messages from one queue to another",
        description=(
            "Move messages from SOURCE to DESTINATION: receive, send (body and message "
            "attributes unchanged), then delete from SOURCE only what DESTINATION accepted."
        ),
        add_arguments=arguments.move_arguments,
        api=move,
        call=commands.call_move,
        render=commands.render_move,
    ),
    Command(
        name="redrive",
        summary="move a dead-letter queue's messages back to their source queue",
        description=(
            "Move the messages of the dead-letter queue DLQ back to the queue whose "
            "RedrivePolicy points at it (or to --to QUEUE). Uses SQS's StartMessageMoveTask "
            "when the endpoint offers it and no --limit is given, else moves client-side."
        ),
        add_arguments=arguments.redrive_arguments,
        api=redrive,
        call=commands.call_redrive,
        render=commands.render_redrive,
    ),
    Command(
        name="sweep",
        summary="delete the temporary queues left by processes that died",
        description=(
            "Delete the temporary queues (Celery's pidbox, reply and event queues, sqsbus "
            "parking queues) whose owner stopped keeping them alive longer ago than their "
            "expiry; parked messages are sent home first. Workers do this by themselves "
            "every orphan_sweep_interval; this checks every candidate now."
        ),
        add_arguments=arguments.sweep_arguments,
        api=sweep,
        call=commands.call_sweep,
        render=commands.render_sweep,
    ),
)
