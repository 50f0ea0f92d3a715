"""Reporting: the tables printed at the end of a run, and the rows the JSON keeps of them.

Each ``build_*`` function turns the runs' results into rows (saved in the JSON report), each
``format_*`` function prints those rows as a table: the figures (:data:`bench.figures.FIGURES`,
sqsbus beside Kombu with the ratio), the endpoint's ceiling, the endpoint's load, the
cross-check of sqsbus's own request counts against the endpoint's, and what sqsbus's metrics
cost a consumer (:mod:`bench.metrics_overhead`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from bench import metrics_overhead
from bench.common import LABELS, TRANSPORTS
from bench.figures import CEILING_LOAD, CEILINGS, CROSS_CHECKS, FIGURES, LOADED
from bench.profiles import Params

__all__ = [
    "build_ceiling",
    "build_cross_check",
    "build_endpoint_load",
    "build_figures",
    "build_metrics_overhead",
    "format_ceiling",
    "format_cross_check",
    "format_endpoint_load",
    "format_metrics_overhead",
    "format_table",
]


def _value(results: dict[str, dict[str, Any]], key: str, transport: str, name: str) -> Any:
    return results.get(key, {}).get(transport, {}).get("figures", {}).get(name)


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    number = float(value)
    if digits == 1 and abs(number) >= 1000:
        digits = 0
    return f"{number:,.{digits}f}"


def build_figures(
    results: dict[str, dict[str, Any]], profile: dict[str, dict[str, Params]]
) -> list[dict[str, Any]]:
    rows = []
    for figure in FIGURES:
        scenario, _, variant = figure.key.partition("/")
        params = profile.get(scenario, {}).get(variant)
        if params is None or figure.key not in results:
            continue
        sqsbus = _value(results, figure.key, "sqsbus", figure.name)
        kombu = _value(results, figure.key, "kombu", figure.name)
        ratio = sqsbus / kombu if sqsbus is not None and kombu not in (None, 0) else None
        notes = {
            t: results[figure.key].get(t, {}).get("error")
            or results[figure.key].get(t, {}).get("details", {}).get("unavailable")
            for t in TRANSPORTS
        }
        rows.append(
            {
                "id": figure.id,
                "label": figure.label(params).strip(),
                "indent": figure.label(params).startswith(" "),
                "unit": figure.unit,
                "better": figure.better,
                "sqsbus": sqsbus,
                "kombu": kombu,
                "ratio": ratio,
                "digits": figure.digits,
                "notes": {t: n for t, n in notes.items() if n},
            }
        )
    return rows


def _verdict(row: dict[str, Any]) -> str:
    ratio = row["ratio"]
    if ratio is None:
        return "n/a"
    if ratio == 0:
        return "sqsbus"
    advantage = ratio if row["better"] == "higher" else 1 / ratio
    if 0.95 <= advantage <= 1.05:
        return "even"
    return f"sqsbus {advantage:.1f}x" if advantage > 1 else f"Kombu {1 / advantage:.1f}x"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("figure", LABELS["sqsbus"], LABELS["kombu"], "ratio", "better")
    body = []
    for row in rows:
        label = ("  " if row["indent"] else "") + row["label"]
        body.append(
            (
                label,
                _fmt(row["sqsbus"], row["digits"]),
                _fmt(row["kombu"], row["digits"]),
                "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}",
                _verdict(row),
            )
        )
    return _grid(header, body, right=(1, 2, 3))


def _grid(header: Sequence[str], body: Sequence[Sequence[str]], right: Sequence[int]) -> str:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def build_ceiling(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    run = results.get("ceiling", {}).get("endpoint", {})
    figures = run.get("figures", {})
    details = run.get("details", {})
    rows = []
    for name, label, keys in CEILINGS:
        ceiling = figures.get(name)
        entry: dict[str, Any] = {
            "id": name,
            "label": label,
            "msgs_per_s": ceiling,
            "endpoint_cpu_share": details.get(CEILING_LOAD[name]),
        }
        for transport in TRANSPORTS:
            best = [
                (key, _value(results, key, transport, "msgs_per_s"))
                for key in keys
                if _value(results, key, transport, "msgs_per_s") is not None
            ]
            if best and ceiling:
                key, value = max(best, key=lambda kv: float(kv[1]))
                entry[transport] = {"run": key, "msgs_per_s": value, "share": value / ceiling}
        rows.append(entry)
    return rows


def format_ceiling(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        "endpoint ceiling (raw boto3; 1 thread unless said)",
        "msgs/s",
        "endpoint CPU",
        LABELS["sqsbus"],
        LABELS["kombu"],
    )
    body = []
    for row in rows:
        share = row.get("endpoint_cpu_share")
        cells = [row["label"], _fmt(row["msgs_per_s"], 0), _fmt(share, 2)]
        for transport in TRANSPORTS:
            got = row.get(transport)
            cells.append("n/a" if not got else f"{got['share'] * 100:.0f}% ({got['run']})")
        body.append(tuple(cells))
    return _grid(header, body, right=(1, 2, 3, 4))


def build_endpoint_load(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """How busy the endpoint's server process was in each throughput run (CPU s / wall s)."""
    rows = []
    for key in LOADED:
        row: dict[str, Any] = {"run": key}
        for transport in TRANSPORTS:
            measured = results.get(key, {}).get(transport, {}).get("details", {}).get("measured")
            cpu = (measured or {}).get("endpoint_cpu_seconds")
            seconds = (measured or {}).get("seconds")
            row[transport] = cpu / seconds if cpu is not None and seconds else None
        if any(row[t] is not None for t in TRANSPORTS):
            rows.append(row)
    return rows


def format_endpoint_load(rows: Sequence[dict[str, Any]]) -> str:
    header = ("endpoint server CPU s per wall s", LABELS["sqsbus"], LABELS["kombu"])
    body = []
    for row in rows:
        body.append(
            (row["run"], *("n/a" if row[t] is None else f"{row[t]:.2f}" for t in TRANSPORTS))
        )
    return _grid(header, body, right=(1, 2))


def build_cross_check(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for key in CROSS_CHECKS:
        result = results.get(key, {}).get("sqsbus")
        if not result or not result.get("ok"):
            continue
        details = result.get("details", {})
        measured = details.get("measured", {})
        own = measured.get("sqsbus_requests")
        if key == "celery":
            own = details.get("sqsbus_requests_total")
        if key.startswith("footprint"):
            own = None  # counted in the consuming child, not reported
        by_operation = measured.get("sqsbus_by_operation") or {}
        worker = details.get("sqsbus_worker_by_operation") or {}
        endpoint_ops = measured.get("endpoint_by_operation") or {}
        differences: dict[str, list[int]] | None = None
        if endpoint_ops and own is not None:  # the endpoint named operations (LocalStack)
            mine = dict(by_operation)
            for name, count in worker.items():
                mine[name] = mine.get(name, 0) + count
            differences = {
                name: [endpoint_ops.get(name, 0), mine.get(name, 0)]
                for name in sorted(set(endpoint_ops) | set(mine))
                if endpoint_ops.get(name, 0) != mine.get(name, 0)
            }
        rows.append(
            {
                "run": key,
                "endpoint": measured.get("transport_requests"),
                "sqsbus": own,
                "by_operation": by_operation,
                "worker_by_operation": worker or None,
                "endpoint_by_operation": endpoint_ops or None,
                "differences": differences,
                "agrees": None
                if differences is None
                else _explained(differences, int(result.get("params", {}).get("queues", 1))),
            }
        )
    return rows


def _explained(differences: dict[str, list[int]], queues: int) -> bool:
    """True if the counts differ only by long polls still in flight when the phase ended.

    sqsbus counts a request when it sends it, the endpoint logs it when it answers: at most
    one ``ReceiveMessage`` per queue consumed can be counted by sqsbus and not yet logged.
    """
    for name, (endpoint, own) in differences.items():
        if name != "sqs.ReceiveMessage" or not 0 < own - endpoint <= queues:
            return False
    return True


def format_cross_check(rows: Sequence[dict[str, Any]]) -> str:
    header = ["sqsbus requests", "endpoint", "sqsbus own", "by operation (sqsbus's count)"]
    compared = any(row.get("differences") is not None for row in rows)
    if compared:
        header.append("differing operations (endpoint/sqsbus)")
    body = []
    for row in rows:
        ops = dict(row.get("by_operation") or {})
        for name, count in (row.get("worker_by_operation") or {}).items():
            ops[f"worker {name}"] = count
        text = ", ".join(f"{n.removeprefix('sqs.')} {c}" for n, c in ops.items())
        text = text.replace("worker sqs.", "worker ")
        cells = [
            row["run"],
            str(row["endpoint"]),
            "n/a" if row["sqsbus"] is None else str(row["sqsbus"]),
            text or "-",
        ]
        if compared:
            differences = row.get("differences")
            text = (
                "n/a"
                if differences is None
                else ", ".join(
                    f"{n.removeprefix('sqs.')} {a}/{b}" for n, (a, b) in differences.items()
                )
                or "none"
            )
            if differences and row.get("agrees") is False:
                text += "  MISMATCH"
            cells.append(text)
        body.append(tuple(cells))
    return _grid(header, body, right=(1, 2))


def build_metrics_overhead(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per metrics mode of the ``metrics`` run: client CPU s per 10k consumed (median,
    min, max over its rounds), the median's ratio to mode ``off``, the median of the ratios
    within each round (the modes of a round ran one after the other), the difference per
    message, and for the SDK modes the CPU of one collection and export of every series."""
    run = results.get("metrics", {}).get("sqsbus", {})
    if not run.get("ok"):
        return []
    per_mode: dict[str, list[float]] = run.get("details", {}).get("cpu_s_per_10k", {})
    child_reports: dict[str, list[dict[str, Any]]] = run.get("details", {}).get("child_reports", {})
    base_values = per_mode.get("off") or []
    base = statistics.median(base_values) if base_values else None
    rows = []
    for mode in metrics_overhead.MODES:
        values = per_mode.get(mode) or []
        if not values:
            continue
        median = statistics.median(values)
        paired = [value / off for value, off in zip(values, base_values, strict=False) if off]
        collects = [r["collect_ms"] for r in child_reports.get(mode, []) if "collect_ms" in r]
        rows.append(
            {
                "mode": mode,
                "runs": len(values),
                "median": median,
                "min": min(values),
                "max": max(values),
                "ratio": median / base if base else None,
                "paired_ratio": statistics.median(paired) if paired else None,
                "us_per_message": (median - base) / 10_000 * 1e6 if base is not None else None,
                "collect_ms": statistics.median(collects) if collects else None,
            }
        )
    return rows


def format_metrics_overhead(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        "client CPU s per 10k consumed",
        "median",
        "min",
        "max",
        "runs",
        "vs off",
        "in rounds",
        "µs/msg",
        "collect ms",
    )
    body = []
    for row in rows:
        ratio, extra, paired = row["ratio"], row["us_per_message"], row["paired_ratio"]
        body.append(
            (
                metrics_overhead.LABELS[row["mode"]],
                _fmt(row["median"], 2),
                _fmt(row["min"], 2),
                _fmt(row["max"], 2),
                str(row["runs"]),
                "n/a" if ratio is None else f"{(ratio - 1) * 100:+.1f}%",
                "n/a" if paired is None else f"{(paired - 1) * 100:+.1f}%",
                "n/a" if extra is None else f"{extra:+.1f}",
                "-" if row["collect_ms"] is None else _fmt(row["collect_ms"], 1),
            )
        )
    return _grid(header, body, right=(1, 2, 3, 4, 5, 6, 7, 8))
