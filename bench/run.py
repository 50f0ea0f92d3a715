"""Run every scenario for sqsbus and for Kombu's SQS transport; print a table, save JSON.

    python -m bench            # the full run (about 8 minutes on 2 cores)
    python -m bench --quick    # a small version (about 2 minutes)
    python -m bench --smoke    # a tiny one, for the test suite (well under a minute)
    python -m bench --endpoint localstack   # on LocalStack instead of moto (bench/localstack.py)

Each scenario runs once per transport (and variant) in its own process, against its own fresh
endpoint, moto's server by default (:mod:`bench.scenarios`). The idle scenarios (latency, idle
cost) wait more than they work; the idle-cost runs go on in the background while the latency
runs are measured.
Results go to ``bench/results/<timestamp>.json`` unless ``--out`` says otherwise.

This module is the command; the work is in :mod:`bench.profiles` (what runs),
:mod:`bench.runner` (running it), :mod:`bench.figures` and :mod:`bench.report` (the tables)
and :mod:`bench.machine` (where it ran).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

if __package__ in (None, ""):  # ``python bench/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ENDPOINT_KINDS, LABELS, bench_environment
from bench.machine import describe_endpoint, machine
from bench.profiles import ORDER, jobs_for, profile_for, with_latency
from bench.report import (
    build_ceiling,
    build_cross_check,
    build_endpoint_load,
    build_figures,
    build_metrics_overhead,
    format_ceiling,
    format_cross_check,
    format_endpoint_load,
    format_metrics_overhead,
    format_table,
)
from bench.runner import Runner, run_all

__all__ = ["build_parser", "main"]

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "bench" / "results"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m bench``'s options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark sqsbus against Kombu's SQS transport on local SQS endpoints.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a small version (about 2 minutes)")
    size.add_argument("--smoke", action="store_true", help="a tiny version for the tests")
    parser.add_argument(
        "--only",
        default="",
        metavar="SCENARIOS",
        help=f"comma-separated subset of: {', '.join(ORDER)}",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="runs measured at once (default 1; 3 with --smoke, whose numbers mean nothing)",
    )
    parser.add_argument(
        "--endpoint",
        choices=ENDPOINT_KINDS,
        default="moto",
        help="the local endpoint: moto's server (default) or LocalStack (needs Python 3.13; "
        "its venv is made once under ~/.cache/sqsbus-bench)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="put sqsbus's fault proxy in front of the endpoint, adding MS milliseconds to "
        "every request (for both transports), to see what AWS's round trips cost each",
    )
    parser.add_argument("--out", type=Path, help="the JSON file (default bench/results/<ts>.json)")
    parser.add_argument("--keep", action="store_true", help="keep every run's logs")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per scenario run (default 300)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    profile = profile_for(name, args.endpoint)
    if args.latency_ms < 0:
        print("--latency-ms must be zero or more", file=sys.stderr)
        return 2
    if args.latency_ms:
        profile = with_latency(profile, args.latency_ms)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(ORDER))
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    jobs = jobs_for(profile, only)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{stamp}.json"
    try:
        endpoint = describe_endpoint(args.endpoint)
    except RuntimeError as exc:
        print(f"cannot use the {args.endpoint} endpoint: {exc}", file=sys.stderr)
        return 2
    where = f"{args.endpoint} endpoint"
    if args.latency_ms:
        endpoint["latency_ms"] = args.latency_ms
        where += f" behind a proxy adding {args.latency_ms:g} ms per request"
    workdir = Path(tempfile.mkdtemp(prefix="sqsbus-bench-"))
    env = bench_environment(workdir)
    runner = Runner(workdir, env, args.timeout, args.endpoint)
    print(
        f"sqsbus bench ({name}): {len(jobs)} runs, each on a fresh {where}",
        flush=True,
    )
    started = time.monotonic()
    run_all(jobs, runner, parallel=max(1, args.jobs or (3 if args.smoke else 1)))
    wall = time.monotonic() - started

    results = runner.results
    figures = build_figures(results, profile)
    ceiling = build_ceiling(results)
    cross = build_cross_check(results)
    load = build_endpoint_load(results)
    overhead = build_metrics_overhead(results)
    failed = [
        f"{key} {transport}: {result.get('error')}"
        for key, by_transport in results.items()
        for transport, result in by_transport.items()
        if not result.get("ok")
    ]
    report = {
        "profile": name,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "machine": machine(),
        "endpoint": endpoint,
        "params": profile,
        "figures": [
            {k: v for k, v in row.items() if k not in ("digits", "indent")} for row in figures
        ],
        "ceiling": ceiling,
        "endpoint_load": load,
        "cross_check": cross,
        "metrics_overhead": overhead,
        "failed": failed,
        "runs": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")

    print()
    print(format_table(figures))
    print("ratio = sqsbus / Kombu SQS; 'better' says which transport wins and by how much.")
    if ceiling:
        print()
        print(format_ceiling(ceiling))
    if load:
        print()
        print(format_endpoint_load(load))
        print("1.00 = the endpoint (one Python process) used a whole core: it was the bottleneck.")
    if cross:
        print()
        print(format_cross_check(cross))
        if any(row.get("differences") for row in cross):
            print(
                "endpoint and sqsbus may differ by the long polls in flight when a phase ends "
                "(ReceiveMessage, at most one per queue): sqsbus counts a request when it sends "
                "it, the endpoint logs it when it answers. MISMATCH marks anything else."
            )
    if overhead:
        print()
        print(format_metrics_overhead(overhead))
        print(
            "sqsbus's metrics (docs/observability.md): one consuming child process per mode "
            "and round, the modes in turn; 'vs off' compares the medians, 'in rounds' is the "
            "median of each round's ratio; 'collect ms' is the CPU of one collection of every "
            "series, paid per export interval, not per message."
        )
    for row in figures:
        for transport, note in row["notes"].items():
            print(f"note: {row['id']} {LABELS[transport]}: {note}")
    print(f"\n{name} run on {where}: {wall:.0f} s wall; JSON: {out}")
    if failed:
        print("FAILED runs:\n  " + "\n  ".join(failed), file=sys.stderr)
        print(f"logs kept in {workdir}", file=sys.stderr)
    elif args.keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
