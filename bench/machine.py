"""Where a run happened: the machine, the versions of what ran, and the endpoint."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Final

from bench.common import EndpointKind

__all__ = ["describe_endpoint", "machine"]

ROOT: Final = Path(__file__).resolve().parent.parent


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in ("sqsbus", "kombu", "celery", "boto3", "botocore", "moto", "pycurl", "psutil"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def machine() -> dict[str, Any]:
    """The machine, Python, the versions of the packages that ran, and sqsbus's commit."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": _versions(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "sqsbus")),
    }


def describe_endpoint(kind: EndpointKind) -> dict[str, Any]:
    """What the runs' endpoint is; for LocalStack, its venv is made first if need be."""
    if kind == "moto":
        return {"kind": kind, "version": _versions().get("moto")}
    from bench import localstack

    python = localstack.ensure_venv(say=lambda text: print(text, flush=True))
    return {
        "kind": kind,
        "version": localstack.LOCALSTACK_VERSION,
        "pins": list(localstack.PINS),
        "python": str(python),
        "gateway": "twisted, bound to 127.0.0.1",
    }
