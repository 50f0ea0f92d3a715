"""The demo's producer: it publishes the plan's tasks and settles their results as they come.

:func:`publish` runs in a thread of its own and hands every result it gets back to a
:class:`Collector`, which the run polls: it reads only results whose file the filesystem
backend has written, and checks each against the value it should hold.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from sqsbus.demo.plan import Plan
from sqsbus.demo.settings import CHORD_UNLOCK_INTERVAL, FLAKY_FAILURES

__all__ = ["Collector", "Tracked", "publish"]


@dataclass
class Tracked:
    """A published task's result, and what it should be."""

    kind: str
    label: str
    result: Any
    expected: object
    #: The name of the result's file in the result directory, if known.
    file_name: str | None = None


@dataclass
class Collector:
    """Results to wait for (added by the publishing thread) and what became of them."""

    result_dir: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list[Tracked] = field(default_factory=list)
    completed: int = 0
    failures: list[str] = field(default_factory=list)
    flaky_attempts: list[int] = field(default_factory=list)
    published: int = 0
    publishing_done: bool = False
    publish_error: Exception | None = None
    first_publish: float | None = None
    last_result: float | None = None

    def add(self, tracked: Tracked) -> None:
        try:
            key = tracked.result.backend.get_key_for_task(tracked.result.id)
            tracked.file_name = key.decode() if isinstance(key, bytes) else str(key)
        except Exception:  # not a key-value backend: read the result itself every time
            tracked.file_name = None
        with self.lock:
            if self.first_publish is None:
                self.first_publish = time.monotonic()
            self.pending.append(tracked)
            self.published += 1

    @property
    def finished(self) -> int:
        return self.completed + len(self.failures)

    def elapsed(self) -> float:
        """Seconds from the first publish to the last result (or to now, if still waiting)."""
        if self.first_publish is None:
            return 0.0
        end = self.last_result if self.last_result is not None else time.monotonic()
        return max(0.0, end - self.first_publish)

    def poll(self) -> None:
        """Look at every pending result once; settle the ready ones."""
        with self.lock:
            pending = list(self.pending)
        try:  # only results with a file can be ready: spare reading all the others
            present = set(os.listdir(self.result_dir))
        except OSError:
            present = None
        settled: list[Tracked] = []
        for tracked in pending:
            name = tracked.file_name
            if present is not None and name is not None and name not in present:
                continue
            try:
                state = str(tracked.result.state)
                if state not in {"SUCCESS", "FAILURE", "REVOKED"}:
                    continue
                value = tracked.result.result
            except Exception:  # e.g. a result file read while being written: look again
                continue
            settled.append(tracked)
            if state != "SUCCESS":
                self.failures.append(f"{tracked.label}: {state}: {value!r}")
            elif _normalized(value) != _normalized(tracked.expected):
                self.failures.append(
                    f"{tracked.label}: returned {value!r}, expected {tracked.expected!r}"
                )
            else:
                self.completed += 1
                if tracked.kind == "flaky" and isinstance(value, dict):
                    self.flaky_attempts.append(int(value.get("attempts", 0)))
        if settled:
            self.last_result = time.monotonic()
            done = {id(tracked) for tracked in settled}
            with self.lock:
                self.pending = [t for t in self.pending if id(t) not in done]


def _normalized(value: object) -> object:
    return json.loads(json.dumps(value, sort_keys=True))


def publish(
    app_module: ModuleType, plan: Plan, collector: Collector, stop: threading.Event
) -> None:
    """Publish the plan's tasks with :mod:`sqsbus.demo.app` (``app_module``), tracking each
    result in ``collector``; stop early once ``stop`` is set."""
    from celery import chord, group

    try:
        number = 0
        expected_attempts = FLAKY_FAILURES + 1
        for _ in range(plan.flaky):
            if stop.is_set():
                return
            number += 1
            collector.add(
                Tracked(
                    "flaky",
                    f"flaky({number})",
                    app_module.flaky.delay(number),
                    {"number": number, "attempts": expected_attempts},
                )
            )

        header_numbers = list(range(number + 1, number + 1 + plan.chord_header))
        number += plan.chord_header
        callback_result = chord(app_module.add.s(n, n) for n in header_numbers)(
            app_module.total.s(), interval=CHORD_UNLOCK_INTERVAL
        )
        for n, header_result in zip(header_numbers, callback_result.parent.results, strict=True):
            collector.add(Tracked("chord", f"chord header add({n}, {n})", header_result, 2 * n))
        collector.add(
            Tracked(
                "chord-callback",
                f"chord callback total({len(header_numbers)} results)",
                callback_result,
                sum(2 * n for n in header_numbers),
            )
        )
        if stop.is_set():
            return

        group_numbers = list(range(number + 1, number + 1 + plan.group))
        number += plan.group
        group_result = group(app_module.add.s(n, 1) for n in group_numbers).apply_async()
        for n, member in zip(group_numbers, group_result.results, strict=True):
            collector.add(Tracked("group", f"group member add({n}, 1)", member, n + 1))

        for _ in range(plan.singles):
            if stop.is_set():
                return
            number += 1
            collector.add(
                Tracked(
                    "single",
                    f"add({number}, {number})",
                    app_module.add.delay(number, number),
                    2 * number,
                )
            )
    except Exception as exc:
        collector.publish_error = exc
    finally:
        collector.publishing_done = True
