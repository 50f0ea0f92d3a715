"""``sqsbus demo``'s command line: its options, checked, handed to :func:`~sqsbus.demo.run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from sqsbus.demo.metrics import DEFAULT_PORT
from sqsbus.demo.plan import DEFAULT_TASKS, MIN_TASKS
from sqsbus.demo.runner import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT, run

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``sqsbus demo``'s options."""
    parser = argparse.ArgumentParser(
        prog="sqsbus demo",
        description=(
            "Run real Celery tasks through sqsbus on an embedded SQS endpoint (moto, in memory): "
            "start the endpoint and a Celery worker, publish single tasks, a group, a chord and "
            "tasks that fail once and are retried, check every result, then report throughput "
            "and the AWS requests made per message."
        ),
    )
    parser.add_argument(
        "--tasks",
        type=_task_count,
        default=DEFAULT_TASKS,
        metavar="N",
        help=f"how many tasks to run, at least {MIN_TASKS} (default: %(default)s)",
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="worker pool processes (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="give up if the results are not all in after this long (default: %(default)g)",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        type=Path,
        metavar="PATH",
        help="also write the summary as JSON to PATH",
    )
    parser.add_argument(
        "--metrics",
        dest="metrics_port",
        type=_port,
        nargs="?",
        const=DEFAULT_PORT,
        metavar="PORT",
        help=(
            "serve each process's sqsbus metrics to Prometheus while the demo runs: the "
            "producer on PORT (default %(const)s), the worker on PORT+1, its pool processes on "
            "the ports after (needs sqsbus[prometheus]; see docs/observability.md)"
        ),
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the run's directory (worker log, endpoint log, results, stats)",
    )
    return parser


def _task_count(text: str) -> int:
    number = _positive_int(text)
    if number < MIN_TASKS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_TASKS}, got {number}")
    return number


def _port(text: str) -> int:
    number = _positive_int(text)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {number}")
    return number


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _positive_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return number


def main(argv: list[str] | None = None) -> int:
    """Run ``sqsbus demo`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    return run(
        tasks=args.tasks,
        concurrency=args.concurrency,
        timeout=args.timeout,
        json_path=args.json_path,
        keep=args.keep,
        metrics_port=args.metrics_port,
    )
