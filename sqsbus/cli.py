"""The ``sqsbus`` command line.

Subcommands:

* ``sqsbus local`` runs the embedded SQS + SNS + S3 endpoint in the foreground and prints how
  to point Celery/Kombu at it.
* ``sqsbus demo [ARGS...]`` runs :func:`sqsbus.demo.main` with ``ARGS`` untouched (including
  ``--help``), so the demo owns its own options.
* ``sqsbus queues|peek|purge|move|redrive`` operate queues; their work is done by
  :mod:`sqsbus.admin` (``commands.py`` for each command's output).

Each subcommand is a ``_add_<name>`` function that registers its parser and a
``_run_<name>(args, extra) -> int`` handler; add new ones to :data:`_SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from types import FrameType
from typing import TypeAlias

from sqsbus.local import LocalEndpoint, LocalEndpointError
from sqsbus.local.record import clear_record, write_record

__all__ = ["build_parser", "main"]

# A subcommand handler gets the parsed options and, for pass-through commands, the raw rest.
_Handler: TypeAlias = Callable[[argparse.Namespace, list[str]], int]
_Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

_POLL_SECONDS = 0.5


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not args.passthrough:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handler: _Handler = args.handler
    return handler(args, extra)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``sqsbus`` and all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="sqsbus", description="A Kombu/Celery transport for Amazon SQS."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_subcommand in _SUBCOMMANDS:
        add_subcommand(subcommands)
    return parser


def _version() -> str:
    try:
        return version("sqsbus")
    except PackageNotFoundError:
        return "(not installed)"


# -- sqsbus local ------------------------------------------------------------------------------


def _add_local(subcommands: _Subparsers) -> None:
    parser = subcommands.add_parser(
        "local",
        help="run an embedded SQS+SNS+S3 endpoint (moto, in memory) in the foreground",
        description=(
            "Run an SQS + SNS + S3 compatible endpoint (moto's server) until Ctrl-C. "
            "Its data lives in memory only and is lost when it stops."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port to bind (default: pick a free one)"
    )
    parser.add_argument(
        "--log-file", metavar="PATH", help="append moto's request log to PATH (default: discard)"
    )
    parser.set_defaults(handler=_run_local, passthrough=False)


def _run_local(args: argparse.Namespace, extra: list[str]) -> int:
    endpoint = LocalEndpoint(args.host, args.port, log_file=args.log_file)
    # Ctrl-C and SIGTERM both unwind through KeyboardInterrupt, even where SIGINT was ignored.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        endpoint.start()
        _record_endpoint(endpoint)
        print(_local_instructions(endpoint), flush=True)
        while endpoint.running:
            time.sleep(_POLL_SECONDS)
        print("sqsbus local: the endpoint exited unexpectedly", file=sys.stderr)
        return 1
    except LocalEndpointError as exc:
        print(f"sqsbus local: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping the endpoint.", flush=True)
        return 0
    finally:
        clear_record()
        endpoint.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _record_endpoint(endpoint: LocalEndpoint) -> None:
    """Let the operator commands find this endpoint when no broker URL is given."""
    try:
        write_record(endpoint.url, endpoint.broker_url())
    except OSError as exc:
        print(f"sqsbus local: could not record the endpoint ({exc})", file=sys.stderr)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn SIGINT/SIGTERM into KeyboardInterrupt so the endpoint shuts down cleanly."""
    raise KeyboardInterrupt


def _local_instructions(endpoint: LocalEndpoint) -> str:
    broker_url = endpoint.broker_url()
    exports = "\n".join(f"    export {name}={value}" for name, value in endpoint.env().items())
    return f"""\
sqsbus local endpoint (moto) listening on {endpoint.url}
It serves SQS, SNS and S3. Data is kept in memory only: it is lost when this process stops.

Point Celery at it (import sqsbus first: it registers the sqsbus:// scheme):
    import sqsbus
    app.conf.broker_url = "{broker_url}"
or Kombu:
    import sqsbus
    kombu.Connection("{broker_url}")

Environment for workers and other processes (dummy credentials; the endpoint accepts any):
{exports}
Plain boto3 or the AWS CLI: endpoint_url="{endpoint.url}" (or export AWS_ENDPOINT_URL).
While it runs, 'sqsbus queues', 'peek', 'purge', 'move' and 'redrive' use it by default.

Press Ctrl-C to stop."""


# -- sqsbus demo -------------------------------------------------------------------------------


def _add_demo(subcommands: _Subparsers) -> None:
    parser = subcommands.add_parser(
        "demo",
        add_help=False,  # `sqsbus demo --help` is the demo's own help
        help="run the sqsbus demo (see 'sqsbus demo --help')",
    )
    parser.set_defaults(handler=_run_demo, passthrough=True)


def _run_demo(args: argparse.Namespace, extra: list[str]) -> int:
    # Imported lazily: the demo pulls in Celery, which the other commands don't need.
    try:
        demo = importlib.import_module("sqsbus.demo")
    except ModuleNotFoundError as exc:
        if exc.name != "sqsbus.demo":
            raise
        print("sqsbus demo: this version of sqsbus has no demo", file=sys.stderr)
        return 1
    result = demo.main(extra)
    return 0 if result is None else int(result)


# -- operator commands: sqsbus queues / peek / purge / move / redrive --------------------------


def _connection_options() -> argparse.ArgumentParser:
    """Options every operator command shares: where the broker is and its transport options."""
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
    return parent


def _progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: only when stderr is a terminal)",
    )


def _limit_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit", type=_positive_int, metavar="N", help="move at most N messages (default: all)"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _add_operator_commands(subcommands: _Subparsers) -> None:
    connection = _connection_options()
    queue_help = "queue name as Kombu/Celery knows it (the prefix is added)"

    queues = subcommands.add_parser(
        "queues",
        parents=[connection],
        help="list queues with message counts and dead-letter settings",
        description=(
            "List every queue under the queue name prefix (or every predefined queue): "
            "visible, in-flight and delayed messages, FIFO, and where dead letters go."
        ),
    )
    queues.add_argument("--json", action="store_true", help="print JSON instead of a table")
    queues.set_defaults(handler=_admin("run_queues"), passthrough=False)

    peek = subcommands.add_parser(
        "peek",
        parents=[connection],
        help="show messages of a queue without consuming them",
        description=(
            "Receive up to N messages with a short visibility timeout and make them visible "
            "again at once. Each message shown counts one receive; on a queue with a redrive "
            "policy that brings it closer to the dead-letter queue (see README)."
        ),
    )
    peek.add_argument("queue", metavar="QUEUE", help=queue_help)
    peek.add_argument(
        "-n",
        "--count",
        type=_positive_int,
        default=10,
        metavar="N",
        help="how many messages (%(default)s)",
    )
    peek.add_argument("--json", action="store_true", help="print JSON instead of a table")
    peek.add_argument(
        "--allow-dead-letter",
        action="store_true",
        help="peek even if that uses up the last receive of messages (maxReceiveCount)",
    )
    peek.set_defaults(handler=_admin("run_peek"), passthrough=False)

    purge = subcommands.add_parser(
        "purge",
        parents=[connection],
        help="delete every message of a queue (asks first)",
        description="Delete every message of QUEUE with SQS's PurgeQueue, after confirmation.",
    )
    purge.add_argument("queue", metavar="QUEUE", help=queue_help)
    purge.add_argument(
        "-y", "--yes", "-f", "--force", action="store_true", help="do not ask for confirmation"
    )
    purge.set_defaults(handler=_admin("run_purge"), passthrough=False)

    move = subcommands.add_parser(
        "move",
        parents=[connection],
        help="move messages from one queue to another",
        description=(
            "Move messages from SOURCE to DESTINATION: receive, send (body and message "
            "attributes unchanged), then delete from SOURCE only what DESTINATION accepted."
        ),
    )
    move.add_argument("source", metavar="SOURCE", help=queue_help)
    move.add_argument("destination", metavar="DESTINATION", help=queue_help)
    _limit_option(move)
    _progress_option(move)
    move.set_defaults(handler=_admin("run_move"), passthrough=False)

    redrive = subcommands.add_parser(
        "redrive",
        parents=[connection],
        help="move a dead-letter queue's messages back to their source queue",
        description=(
            "Move the messages of the dead-letter queue DLQ back to the queue whose "
            "RedrivePolicy points at it (or to --to QUEUE). Uses SQS's StartMessageMoveTask "
            "when the endpoint offers it and no --limit is given, else moves client-side."
        ),
    )
    redrive.add_argument("queue", metavar="DLQ", help="the dead-letter queue")
    redrive.add_argument(
        "--to", metavar="QUEUE", help="destination (default: the DLQ's source queue)"
    )
    _limit_option(redrive)
    redrive.add_argument(
        "--client-side",
        action="store_true",
        help="never use StartMessageMoveTask; receive, send and delete from here",
    )
    _progress_option(redrive)
    redrive.set_defaults(handler=_admin("run_redrive"), passthrough=False)

    sweep = subcommands.add_parser(
        "sweep",
        parents=[connection],
        help="delete the temporary queues left by processes that died",
        description=(
            "Delete the temporary queues (Celery's pidbox, reply and event queues, sqsbus "
            "parking queues) whose owner stopped keeping them alive longer ago than their "
            "expiry; parked messages are sent home first. Workers do this by themselves "
            "every orphan_sweep_interval; this checks every candidate now."
        ),
    )
    sweep.set_defaults(handler=_admin("run_sweep"), passthrough=False)


def _admin(name: str) -> _Handler:
    """A handler running ``sqsbus.admin.commands.<name>`` (imported when used)."""

    def handler(args: argparse.Namespace, extra: list[str]) -> int:
        commands = importlib.import_module("sqsbus.admin.commands")
        result: int = getattr(commands, name)(args)
        return result

    return handler


# -- registry ----------------------------------------------------------------------------------

_SUBCOMMANDS: tuple[Callable[[_Subparsers], None], ...] = (
    _add_local,
    _add_demo,
    _add_operator_commands,
)


if __name__ == "__main__":
    raise SystemExit(main())
