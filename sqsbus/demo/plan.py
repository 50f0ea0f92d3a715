"""How many of each kind of task a demo run publishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_TASKS", "MIN_TASKS", "Plan"]

DEFAULT_TASKS: Final = 300
MIN_TASKS: Final = 10


@dataclass(frozen=True)
class Plan:
    """How the demo's tasks are made up; ``total`` of them are checked."""

    singles: int
    group: int
    chord_header: int
    flaky: int

    @classmethod
    def for_tasks(cls, tasks: int) -> Plan:
        """A mix of ``tasks`` tasks: 1% flaky, 10% chord header (+1 callback), 20% group."""
        if tasks < MIN_TASKS:
            raise ValueError(f"the demo needs at least {MIN_TASKS} tasks, not {tasks}")
        flaky = max(1, tasks // 100)
        chord_header = max(2, tasks // 10)
        group = max(2, tasks // 5)
        singles = tasks - flaky - (chord_header + 1) - group
        return cls(singles=singles, group=group, chord_header=chord_header, flaky=flaky)

    @property
    def total(self) -> int:
        return self.singles + self.group + self.chord_header + 1 + self.flaky

    def describe(self, flaky_failures: int, countdown: float) -> str:
        return (
            f"{self.singles} single tasks, a group of {self.group}, a chord of "
            f"{self.chord_header} + a summing callback, {self.flaky} flaky task(s) "
            f"(fail {flaky_failures}x, retried after {countdown:g} s)"
        )
