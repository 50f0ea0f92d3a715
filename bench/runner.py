"""Running the jobs: one ``python -m bench.scenarios`` process per job, results collected.

:class:`Runner` starts a job's process (its own session, its output in the job's directory)
and reads the result JSON it writes, killing it after its timeout; :func:`run_all` runs the
foreground jobs a few at a time and the background ones (:data:`~bench.profiles.BACKGROUND`)
alongside the later ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.common import EndpointKind
from bench.profiles import BACKGROUND, ORDER, Job

__all__ = ["Runner", "Running", "run_all"]

ROOT: Final = Path(__file__).resolve().parent.parent


@dataclass
class Running:
    """A job's process, started at ``started`` (monotonic), writing its result to ``out``."""

    job: Job
    process: subprocess.Popen[bytes]
    out: Path
    log: Path
    started: float
    timeout: float


@dataclass
class Runner:
    """Runs jobs in ``workdir`` with ``env``; ``results[key][transport]`` holds each result."""

    workdir: Path
    env: dict[str, str]
    timeout: float
    endpoint: EndpointKind = "moto"
    verbose: bool = True
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start(self, job: Job) -> Running:
        """Start ``job``'s process."""
        name = f"{job.key.replace('/', '-')}-{job.transport}"
        jobdir = self.workdir / name
        jobdir.mkdir(parents=True, exist_ok=True)
        out = jobdir / "result.json"
        log = jobdir / "output.log"
        command = [
            sys.executable,
            "-m",
            "bench.scenarios",
            "--scenario",
            job.scenario,
            "--transport",
            job.transport,
            "--params",
            json.dumps(job.params),
            "--endpoint",
            self.endpoint,
            "--workdir",
            str(jobdir),
            "--out",
            str(out),
        ]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=str(ROOT),
                start_new_session=True,
            )
        # A scenario that runs many consumers in turn (metrics) says how long it may take.
        timeout = max(self.timeout, float(job.params.get("timeout_seconds", 0)))
        return Running(job, process, out, log, time.monotonic(), timeout)

    def finish(self, running: Running) -> dict[str, Any]:
        """Wait for ``running`` (killing it at its timeout), record and return its result."""
        job = running.job
        try:
            running.process.wait(max(1.0, running.started + running.timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()
        seconds = time.monotonic() - running.started
        background = job.scenario in BACKGROUND
        try:
            result: dict[str, Any] = json.loads(running.out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = {
                "ok": False,
                "figures": {},
                "error": f"no result (exit {running.process.returncode}, "
                f"after {seconds:.0f} s; see {running.log})",
            }
        if not result.get("ok"):
            result.setdefault("error", "failed")
            result["log"] = str(running.log)
        if background and "wall_seconds" in result:
            seconds = float(result["wall_seconds"])  # it ran while others were measured
        result["run_seconds"] = round(seconds, 2)
        self.results.setdefault(job.key, {})[job.transport] = result
        if self.verbose:
            state = "ok" if result.get("ok") else f"FAILED: {result.get('error')}"
            where = " (background)" if background else ""
            print(
                f"  {job.key:<18} {job.transport:<8} {seconds:6.1f} s  {state}{where}", flush=True
            )
        return result

    def run(self, job: Job) -> dict[str, Any]:
        return self.finish(self.start(job))


def run_all(jobs: Sequence[Job], runner: Runner, parallel: int = 1) -> None:
    """Foreground jobs ``parallel`` at a time; background ones started together, finished last.

    Measurements are only trustworthy one at a time (``parallel`` 1): the machine is small.
    """
    background = [job for job in jobs if job.scenario in BACKGROUND]
    foreground = [job for job in jobs if job.scenario not in BACKGROUND]
    started: list[Running] = []
    first_background = next(
        (i for i, job in enumerate(foreground) if ORDER.index(job.scenario) > ORDER.index("idle")),
        len(foreground),
    )
    batch: list[Running] = []
    for index, job in enumerate(foreground):
        if index == first_background and background:
            for running in batch:
                runner.finish(running)
            batch = []
            started = _start_background(background, runner)
        batch.append(runner.start(job))
        if len(batch) >= parallel:
            for running in batch:
                runner.finish(running)
            batch = []
    for running in batch:
        runner.finish(running)
    if background and not started:
        started = _start_background(background, runner)
    for running in started:
        runner.finish(running)


def _start_background(jobs: Sequence[Job], runner: Runner) -> list[Running]:
    started = []
    for job in jobs:
        started.append(runner.start(job))
        time.sleep(0.5)  # stagger the start-ups (imports, moto) on a small machine
    time.sleep(2.0)
    return started
