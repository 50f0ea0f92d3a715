"""What the operator commands do on the command line, between parsing and exit status.

For each command of :mod:`sqsbus.admin.registry`, ``call_<name>(args, session)`` calls its
function of the Python API of :mod:`sqsbus.admin` with the parsed options (showing progress,
notes and prompts on stderr as it goes) and ``render_<name>(args, session, result)`` prints
what it returned on stdout and gives the exit status. :func:`execute` connects with the
transport's settings first; expected failures (bad options, unknown queues, unreachable or
silent endpoint, missing credentials) print one line and exit 1, without a traceback or any
secret, with the fix where it is known (:mod:`sqsbus.admin.failures`).

Everything is printed by :func:`_out`, :func:`_note`, :func:`_error` or :func:`_json`, which
pass it through :mod:`sqsbus.admin.render`'s terminal sanitiser: message contents, queue names
and error texts can hold escape sequences meant for the operator's terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, Final

from sqsbus.admin.failures import explain
from sqsbus.admin.inventory import QueueInfo, list_queues, queue_info
from sqsbus.admin.peek import PeekedMessage, PeekResult, peek
from sqsbus.admin.purge import PurgeResult, purge
from sqsbus.admin.redrive import redrive
from sqsbus.admin.render import (
    ProgressBar,
    format_size,
    format_time,
    progress_wanted,
    table,
    terminal_text,
    to_json,
)
from sqsbus.admin.session import AdminSession, BrokerChoice, choose_broker, parse_option_args
from sqsbus.admin.sweep import SweepReport, sweep
from sqsbus.admin.top import QueueWatcher, watch_queues
from sqsbus.admin.top_screen import TopOutput, show_top
from sqsbus.admin.transfer import TransferResult, move
from sqsbus.errors import ConfigurationError, SQSBusError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "call_move",
    "call_peek",
    "call_purge",
    "call_queues",
    "call_redrive",
    "call_sweep",
    "call_top",
    "execute",
    "render_move",
    "render_peek",
    "render_purge",
    "render_queues",
    "render_redrive",
    "render_sweep",
    "render_top",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_INTERRUPTED: Final = 130


def execute(args: argparse.Namespace, action: Callable[[AdminSession], int]) -> int:
    """Connect as ``--broker`` and ``-o`` say, run ``action``; its exit status, or 1 (130 on
    Ctrl-C) after one line on stderr for an expected failure."""
    for stream in (sys.stdout, sys.stderr):  # never die on a body a terminal can't show
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    broker: BrokerChoice | None = None
    session: AdminSession | None = None
    try:
        broker = choose_broker(args.broker, os.environ)
        session = AdminSession.connect(broker, _transport_options(args), timeout=args.timeout)
        return action(session)
    except SQSBusError as exc:
        _error(args, explain(exc, session, broker))
    except KeyboardInterrupt:
        _error(args, "interrupted")
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def _transport_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``-o`` options, with ``--region``'s."""
    options = parse_option_args(args.option)
    if args.region:
        if options.get("region") not in (None, args.region):
            raise ConfigurationError(
                f"--region {args.region} and -o region={options['region']} disagree; "
                "give the region once"
            )
        options["region"] = args.region
    return options


def _out(text: str = "", *, end: str = "\n", err: bool = False) -> None:
    """Print ``text`` (a result on stdout, or with ``err`` a note on stderr), made safe."""
    print(terminal_text(text), end=end, file=sys.stderr if err else sys.stdout, flush=err)


def _error(args: argparse.Namespace, text: str) -> None:
    _out(f"sqsbus {args.command}: {text}", err=True)


def _note(text: str) -> None:
    _out(text, err=True)


def _json(value: Any) -> None:
    print(to_json(value))


# -- sqsbus queues -------------------------------------------------------------------------


def call_queues(args: argparse.Namespace, session: AdminSession) -> list[QueueInfo]:
    """:func:`~sqsbus.admin.list_queues`."""
    return list_queues(session)


def render_queues(args: argparse.Namespace, session: AdminSession, infos: list[QueueInfo]) -> int:
    """A table of the queues with their totals, or ``--json``."""
    if args.json:
        _json([info.to_json() for info in infos])
        return EXIT_OK
    if not infos:
        _out(f"No queues at {session.where()}.")
        return EXIT_OK
    rows = [
        [
            info.name,
            str(info.visible),
            str(info.in_flight),
            str(info.delayed),
            "yes" if info.fifo else "no",
            _dead_letter_cell(session, info),
        ]
        for info in infos
    ]
    _out(
        table(
            ["QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "FIFO", "DEAD LETTERS"],
            rows,
            right={1, 2, 3},
        )
    )
    _out(
        f"\n{len(infos)} queue(s) at {session.where()}: "
        f"{sum(i.visible for i in infos)} visible, {sum(i.in_flight for i in infos)} in flight, "
        f"{sum(i.delayed for i in infos)} delayed (approximate counts)."
    )
    return EXIT_OK


def _dead_letter_cell(session: AdminSession, info: QueueInfo) -> str:
    parts = []
    if info.dead_letter is not None:
        target = session.short_name(info.dead_letter.target_name)
        parts.append(f"-> {target} after {info.dead_letter.max_receive_count} receives")
    if info.dead_letter_for:
        sources = ", ".join(session.short_name(name) for name in info.dead_letter_for)
        parts.append(f"DLQ of {sources}")
    return "; ".join(parts) or "-"


# -- sqsbus peek ---------------------------------------------------------------------------


def _bands_note(session: AdminSession, name: str) -> None:
    bands = session.priority_bands(name)
    if bands:
        names = ", ".join(session.short_name(ref.name) for ref in bands)
        _note(
            f"note: {name!r} has priority band queues ({names}) holding its higher-priority "
            "messages; name them to include them."
        )


def call_peek(args: argparse.Namespace, session: AdminSession) -> PeekResult:
    """:func:`~sqsbus.admin.peek` on the one queue named (a note points out its bands)."""
    ref = session.queue(args.queue)
    _bands_note(session, args.queue)
    return peek(session, ref, args.count, allow_dead_letter=args.allow_dead_letter)


def render_peek(args: argparse.Namespace, session: AdminSession, result: PeekResult) -> int:
    """A table of the messages, or ``--json``; what peeking cost on stderr."""
    if args.json:
        _json(
            {
                "queue": args.queue,
                "max_receive_count": result.max_receive_count,
                "stopped_at_limit": result.stopped_at_limit,
                "not_released": result.not_released,
                "messages": [message.to_json() for message in result.messages],
            }
        )
    elif result.messages:
        _out(_peek_table(result.messages))
    else:
        _out(f"No visible messages in queue {args.queue!r}.")
    _peek_notes(args, result)
    return EXIT_OK


def _peek_table(messages: list[PeekedMessage]) -> str:
    headers = ["#", "TASK", "TASK ID", "ARGUMENTS / BODY", "RECEIVES", "SENT (UTC)", "SIZE"]
    with_eta = any(m.summary.eta for m in messages)
    with_reason = any(m.dead_letter_reason for m in messages)
    headers += ["ETA"] * with_eta + ["DEAD-LETTER REASON"] * with_reason
    rows = []
    for number, message in enumerate(messages, 1):
        summary = message.summary
        row = [
            str(number),
            summary.task or f"({summary.kind})",
            summary.task_id or "-",
            summary.text,
            str(message.receive_count) + (" !" if message.at_dead_letter_limit else ""),
            format_time(message.sent_at),
            format_size(message.size),
        ]
        row += [summary.eta or "-"] * with_eta + [message.dead_letter_reason or "-"] * with_reason
        rows.append(row)
    widths = {1: 40, 2: 36, 3: 60, len(headers) - 1: 60}
    return table(headers, rows, right={0, 4, 6}, widths=widths)


def _peek_notes(args: argparse.Namespace, result: PeekResult) -> None:
    if result.messages:
        _note(
            "Peeking received each message shown once (RECEIVES includes it) and made it "
            "visible again."
        )
    at_limit = [m for m in result.messages if m.at_dead_letter_limit]
    if at_limit:
        _note(
            f"warning: {len(at_limit)} message(s) (marked !) have now been received "
            f"{result.max_receive_count} times, the queue's maxReceiveCount: their next "
            "receive moves them to the dead-letter queue."
        )
    if result.stopped_at_limit and len(result.messages) < args.count:
        _note("Stopped there so as not to use up more receives; --allow-dead-letter to go on.")
    if result.not_released:
        _note(
            f"warning: {len(result.not_released)} message(s) could not be made visible again; "
            "they reappear when their 30 s visibility timeout ends."
        )


# -- sqsbus purge --------------------------------------------------------------------------


def call_purge(args: argparse.Namespace, session: AdminSession) -> PurgeResult:
    """:func:`~sqsbus.admin.purge`, asking on stderr first unless ``--yes``."""

    def confirm(found: PurgeResult) -> bool:
        return _confirm(
            f"Purge {_purged(found)} at {session.where()} ({_counts(found)})? Every message in "
            "it is deleted, which cannot be undone. [y/N] "
        )

    return purge(session, args.queue, confirm=None if args.yes else confirm)


def render_purge(args: argparse.Namespace, session: AdminSession, result: PurgeResult) -> int:
    """What was purged and how many messages were there; 1 when the operator declined."""
    if not result.purged:
        hint = "" if _interactive() else " (stdin is not a terminal: pass -y to purge unasked)"
        _error(args, f"aborted; nothing was purged{hint}")
        return EXIT_FAILED
    _out(f"Purged {_purged(result)}: {result.total} message(s) were there ({_counts(result)}).")
    return EXIT_OK


def _purged(result: PurgeResult) -> str:
    what = f"queue {result.queue!r}"
    if result.bands:
        what += f" and its priority band queues ({', '.join(info.name for info in result.bands)})"
    return what


def _counts(result: PurgeResult) -> str:
    return f"{result.visible} visible, {result.in_flight} in flight, {result.delayed} delayed"


def _confirm(prompt: str) -> bool:
    _out(prompt, end="", err=True)
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    if not answer:
        _out(err=True)
    return answer.strip().lower() in ("y", "yes")


def _interactive() -> bool:
    """Whether an operator at a terminal answers the prompts (stdin is a terminal)."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return bool(sys.stdin.isatty())
    return False


# -- sqsbus move / redrive -----------------------------------------------------------------


def call_move(args: argparse.Namespace, session: AdminSession) -> TransferResult:
    """:func:`~sqsbus.admin.move` with a progress bar on stderr."""
    source = session.queue(args.source)
    destination = session.queue(args.destination)
    _bands_note(session, args.source)
    total = queue_info(session, source).visible
    bar = _bar(args, f"{args.source} -> {args.destination}")
    try:
        result = move(
            source,
            destination,
            limit=args.limit,
            fifo_group_id=session.options.fifo_message_group_id,
            on_progress=lambda r: bar.update(r.moved, r.total, r.failed),
            total=total,
        )
        bar.update(result.moved, result.total, result.failed, force=True)
    finally:
        bar.close()
    return result


def render_move(args: argparse.Namespace, session: AdminSession, result: TransferResult) -> int:
    """How many messages moved where; 1 if any failed, 130 if interrupted."""
    return _report(args, session, args.source, result)


def call_redrive(args: argparse.Namespace, session: AdminSession) -> TransferResult:
    """:func:`~sqsbus.admin.redrive` with a progress bar and its notes on stderr."""
    dlq = session.queue(args.queue)
    destination = session.queue(args.to) if args.to else None
    bar = _bar(args, f"{args.queue} -> {args.to or 'source queue'}")
    try:
        result = redrive(
            session,
            dlq,
            destination,
            limit=args.limit,
            native=not args.client_side,
            on_progress=lambda r: bar.update(r.moved, r.total, r.failed),
            on_note=lambda text: _note(f"note: {text}"),
        )
        bar.update(result.moved, result.total, result.failed, force=True)
    finally:
        bar.close()
    return result


def render_redrive(args: argparse.Namespace, session: AdminSession, result: TransferResult) -> int:
    """How many messages went back where; 1 if any failed, 130 if interrupted."""
    return _report(args, session, args.queue, result)


def _bar(args: argparse.Namespace, label: str) -> ProgressBar:
    return ProgressBar(sys.stderr, label, enabled=progress_wanted(args.progress, sys.stderr))


def _report(
    args: argparse.Namespace, session: AdminSession, source: str, result: TransferResult
) -> int:
    if result.destination:
        target = repr(session.short_name(result.destination))
    elif len(result.per_destination) > 1:
        target = ", ".join(
            f"{session.short_name(name)!r} ({count})"
            for name, count in sorted(result.per_destination.items())
        )
    elif result.per_destination:
        target = repr(session.short_name(next(iter(result.per_destination))))
    else:
        target = "their source queues"
    how = " by SQS's message move task" if result.native else ""
    _out(
        f"Moved {result.moved} message(s) from {source!r} to {target}{how}; {result.failed} failed."
    )
    if result.failed:
        _note(f"The {result.failed} that failed are still in {source!r}.")
    if result.duplicated:
        _note(
            f"warning: {result.duplicated} message(s) reached {target} but could not be "
            f"deleted from {source!r}: they will be delivered twice."
        )
    for reason in result.reasons:
        _note(f"  {reason}")
    if result.interrupted:
        _error(args, "interrupted; messages not yet moved are still in the source")
        return EXIT_INTERRUPTED
    if result.error:
        _error(args, result.error)
    ok = not (result.error or result.failed or result.duplicated)
    return EXIT_OK if ok else EXIT_FAILED


# -- sqsbus sweep --------------------------------------------------------------------------


def call_sweep(args: argparse.Namespace, session: AdminSession) -> SweepReport:
    """:func:`~sqsbus.admin.sweep`, every candidate checked."""
    return sweep(session)


def render_sweep(args: argparse.Namespace, session: AdminSession, report: SweepReport) -> int:
    """What the sweep looked at, and each queue it deleted."""
    _out(
        f"Looked at {report.listed} queue(s) at {session.where()}: {report.candidates} "
        f"temporary by name, {report.checked} checked, {len(report.deleted)} expired and deleted."
    )
    for name in sorted(report.deleted):
        _out(f"  deleted {session.short_name(name)}")
    return EXIT_OK


# -- sqsbus top ----------------------------------------------------------------------------


def call_top(args: argparse.Namespace, session: AdminSession) -> QueueWatcher:
    """:func:`~sqsbus.admin.watch_queues` with the request budget asked for."""
    return watch_queues(
        session,
        interval=args.interval,
        max_requests_per_second=args.max_requests_per_second,
        cloudwatch=args.cloudwatch,
    )


def render_top(args: argparse.Namespace, session: AdminSession, watcher: QueueWatcher) -> int:
    """Refresh and print until ``--once``/``-n`` is done or Ctrl-C (exit status 0)."""
    output = TopOutput(
        sys.stdout, once=args.once, json=args.json, refreshes=args.refreshes, note=_note
    )
    return show_top(watcher, output)
