"""Command-line options of the operator commands: the shared connection options, and one
``<name>_arguments(parser)`` per command adding its own (named in :mod:`sqsbus.admin.registry`).
"""

from __future__ import annotations

import argparse
import math
from typing import Final

from sqsbus.admin.peek import PEEK_WAIT_SECONDS
from sqsbus.admin.session import ATTEMPTS, DEFAULT_TIMEOUT
from sqsbus.admin.top import DEFAULT_INTERVAL, DEFAULT_MAX_REQUESTS_PER_SECOND
from sqsbus.admin.transfer import RECEIVE_WAIT_SECONDS

__all__ = [
    "connection_options",
    "move_arguments",
    "peek_arguments",
    "positive_float",
    "positive_int",
    "purge_arguments",
    "queues_arguments",
    "redrive_arguments",
    "sweep_arguments",
    "timeout_seconds",
    "top_arguments",
]

QUEUE_HELP: Final = "queue name as Kombu/Celery knows it (the prefix is added)"
#: Shortest ``--timeout``: a second more than the longest wait of a receive (peek, move).
MIN_TIMEOUT: Final = 1.0 + max(PEEK_WAIT_SECONDS, RECEIVE_WAIT_SECONDS)


def connection_options() -> argparse.ArgumentParser:
    """Options every operator command shares: where the broker is and its transport options
    (a parent parser for ``add_parser(parents=...)``)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection (as for the sqsbus transport)")
    group.add_argument(
        "-b",
        "--broker",
        metavar="URL",
        help=(
            "broker URL, sqsbus://[KEY:SECRET@][HOST[:PORT]] (default: $SQSBUS_BROKER_URL, "
            "$CELERY_BROKER_URL, a running 'sqsbus local', else AWS with the boto3 "
            "credential chain)"
        ),
    )
    group.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "a transport option as in broker_transport_options, e.g. -o queue_name_prefix=prod- "
            "-o region=eu-west-1; JSON values are parsed (numbers, dicts); repeatable"
        ),
    )
    group.add_argument(
        "--region", help="the AWS region, as -o region=REGION (default: the boto3 configuration)"
    )
    group.add_argument(
        "--timeout",
        type=timeout_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=(
            f"give up on a request after SECONDS to connect or to answer, and on an AWS call "
            f"after {ATTEMPTS} attempts (default: %(default)g)"
        ),
    )
    return parent


def timeout_seconds(text: str) -> float:
    """An argparse ``type``: seconds, at least :data:`MIN_TIMEOUT`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < MIN_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_TIMEOUT:g} seconds (peek and move wait up to "
            f"{MIN_TIMEOUT - 1:g} s for messages), not {text}"
        )
    return value


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type``: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _limit_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="move at most N messages (default: all)"
    )


def _progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: only when stderr is a terminal)",
    )


def queues_arguments(parser: argparse.ArgumentParser) -> None:
    """``sqsbus queues [--json]``."""
    _json_option(parser)


def peek_arguments(parser: argparse.ArgumentParser) -> None:
    """``sqsbus peek QUEUE [-n N] [--json] [--allow-dead-letter]``."""
    parser.add_argument("queue", metavar="QUEUE", help=QUEUE_HELP)
    parser.add_argument(
        "-n",
        "--count",
        type=positive_int,
        default=10,
        metavar="N",
        help="how many messages (%(default)s)",
    )
    _json_option(parser)
    parser.add_argument(
        "--allow-dead-letter",
        action="store_true",
        help="peek even if that uses up the last receive of messages (maxReceiveCount)",
    )


def purge_arguments(parser: argparse.ArgumentParser) -> None:
    """``sqsbus purge QUEUE [-y]``."""
    parser.add_argument("queue", metavar="QUEUE", help=QUEUE_HELP)
    parser.add_argument(
        "-y", "--yes", "-f", "--force", action="store_true", help="do not ask for confirmation"
    )


def move_arguments(parser: argparse.ArgumentParser) -> None:
    """``sqsbus move SOURCE DESTINATION [--limit N] [--progress]``."""
    parser.add_argument("source", metavar="SOURCE", help=QUEUE_HELP)
    parser.add_argument("destination", metavar="DESTINATION", help=QUEUE_HELP)
    _limit_option(parser)
    _progress_option(parser)


def redrive_arguments(parser: argparse.ArgumentParser) -> None:
    """``sqsbus redrive DLQ [--to QUEUE] [--limit N] [--client-side] [--progress]``."""
    parser.add_argument("queue", metavar="DLQ", help="the dead-letter queue")
    parser.add_argument(
        "--to", metavar="QUEUE", help="destination (default: the DLQ's source queue)"
    )
    _limit_option(parser)
    parser.add_argument(
        "--client-side",
        action="store_true",
        help="never use StartMessageMoveTask; receive, send and delete from here",
    )
    _progress_option(parser)


def sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """``sqsbus sweep``: no options but the connection's."""


def top_arguments(parser: argparse.ArgumentParser) -> None:
    """``sqsbus top [-i SECONDS] [--max-requests-per-second N] [--cloudwatch] [--once]
    [-n N] [--json]``."""
    parser.add_argument(
        "-i",
        "--interval",
        type=positive_float,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help="seconds between refreshes (%(default)g; longer when the request bound needs it)",
    )
    parser.add_argument(
        "--max-requests-per-second",
        type=positive_float,
        default=DEFAULT_MAX_REQUESTS_PER_SECOND,
        metavar="N",
        help="never send more AWS requests per second than this (%(default)g)",
    )
    parser.add_argument(
        "--cloudwatch",
        action="store_true",
        help=(
            "also read messages sent/deleted per second and the age of the oldest message "
            "from CloudWatch (cloudwatch:GetMetricData, once a minute)"
        ),
    )
    parser.add_argument("--once", action="store_true", help="print one refresh and exit")
    parser.add_argument(
        "-n",
        "--refreshes",
        type=positive_int,
        metavar="N",
        help="exit after N refreshes (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document (one line) per refresh"
    )
