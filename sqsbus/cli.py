"""The ``sqsbus`` command line.

Subcommands:

* ``sqsbus local`` runs the embedded SQS + SNS + S3 endpoint in the foreground and prints how
  to point Celery/Kombu at it.
* ``sqsbus demo [ARGS...]`` runs :func:`sqsbus.demo.main` with ``ARGS`` untouched (including
  ``--help``), so the demo owns its own options.
* ``sqsbus completion bash|zsh`` prints a shell completion script made from this parser
  (:mod:`sqsbus.completion`).
* the operator commands (``sqsbus queues``, ``peek``, ``purge``, ...) operate queues: one
  subcommand per entry of :data:`sqsbus.admin.registry.COMMANDS`, which names each one's
  options, :mod:`sqsbus.admin` function and output.

``local``, ``demo`` and ``completion`` are each a ``_add_<name>`` function that registers its
parser and a ``_run_<name>(args, extra) -> int`` handler, listed in :data:`_SUBCOMMANDS`;
operator commands are added to the registry instead.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeAlias

from sqsbus import __version__
from sqsbus.admin.arguments import connection_options
from sqsbus.admin.registry import COMMANDS, Command
from sqsbus.completion import SCRIPTS, describe
from sqsbus.config import KNOWN_OPTIONS
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_subcommand in _SUBCOMMANDS:
        add_subcommand(subcommands)
    return parser


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
While it runs, {_operator_names()} use it by default.

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


# -- sqsbus completion -------------------------------------------------------------------------


def _add_completion(subcommands: _Subparsers) -> None:
    parser = subcommands.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description=(
            "Print the completion script of SHELL for every sqsbus command and option. "
            'Load it from ~/.bashrc with: eval "$(sqsbus completion bash)", or from '
            '~/.zshrc, after compinit, with: eval "$(sqsbus completion zsh)".'
        ),
    )
    parser.add_argument("shell", choices=sorted(SCRIPTS), metavar="SHELL", help="bash or zsh")
    parser.set_defaults(handler=_run_completion, passthrough=False)


def _run_completion(args: argparse.Namespace, extra: list[str]) -> int:
    option_names = [f"{name}=" for name in sorted(KNOWN_OPTIONS)]
    commands = describe(build_parser(), {"--option": option_names})
    print(SCRIPTS[args.shell](commands), end="")
    return 0


# -- operator commands: one subcommand per entry of sqsbus.admin.registry ----------------------


def _add_operator_commands(subcommands: _Subparsers) -> None:
    connection = connection_options()
    for command in COMMANDS:
        parser = subcommands.add_parser(
            command.name,
            parents=[connection],
            help=command.summary,
            description=command.description,
        )
        command.add_arguments(parser)
        parser.set_defaults(handler=_operator(command), passthrough=False)


def _operator(command: Command[Any]) -> _Handler:
    """The handler of ``sqsbus NAME`` for the operator command ``command``."""

    def handler(args: argparse.Namespace, extra: list[str]) -> int:
        return command.run(args)

    return handler


def _operator_names() -> str:
    """``'sqsbus queues', 'peek', ... and 'sweep'``: every operator command, for prose."""
    names = [f"'{command.name}'" for command in COMMANDS]
    names[0] = f"'sqsbus {COMMANDS[0].name}'"
    *first, last = names
    return f"{', '.join(first)} and {last}" if first else last


# -- subcommands -------------------------------------------------------------------------------

_SUBCOMMANDS: tuple[Callable[[_Subparsers], None], ...] = (
    _add_local,
    _add_demo,
    _add_completion,
    _add_operator_commands,
)


if __name__ == "__main__":
    raise SystemExit(main())
