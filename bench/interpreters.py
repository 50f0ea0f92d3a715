"""Finding Python interpreters of a given version on this machine.

Used by the LocalStack endpoint (which needs Python 3.13) and by the version-matrix tests
(one interpreter per supported version). Candidates are ``pythonX.Y`` on ``PATH``, then
pyenv's ``versions/X.Y*`` and uv's ``cpython-X.Y*`` directories, newest release first;
each is run once before it is trusted, because a pyenv shim of a version that is not
selected exists on ``PATH`` but fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path


def python_version(executable: str) -> tuple[int, int] | None:
    """``(major, minor)`` of the Python at ``executable``, or None if it does not run."""
    try:
        completed = subprocess.run(
            [executable, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parts = completed.stdout.split()
    if completed.returncode != 0 or len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def _release_key(path: Path) -> tuple[int, ...]:
    """``(3, 13, 2)`` for ``.../versions/3.13.2/bin/python3.13``; non-numbers sort first."""
    for part in path.parts:
        match = re.match(r"(?:cpython-)?(\d+(?:\.\d+)+)", part)
        if match:
            return tuple(int(n) for n in match.group(1).split("."))
    return ()


def installed(roots: Iterable[Path], minor: str) -> list[str]:
    """Python ``minor`` (``"3.13"``) interpreters under pyenv roots (``ROOT/versions/3.13*``)
    and uv-managed ones (``ROOT/cpython-3.13*``), newest first."""
    found: list[Path] = []
    for root in roots:
        for directory in (f"versions/{minor}*", f"cpython-{minor}*"):
            pattern = f"{directory}/bin/python{minor}"
            found.extend(p for p in root.glob(pattern) if p.is_file())
    found.sort(key=_release_key, reverse=True)
    return [str(p) for p in dict.fromkeys(found)]


def default_roots(env: Mapping[str, str]) -> list[Path]:
    """Where pyenv and uv keep interpreters: ``$PYENV_ROOT``, ``~/.pyenv``, uv's data dir."""
    home = Path(env.get("HOME") or Path.home())
    roots = [Path(env["PYENV_ROOT"])] if env.get("PYENV_ROOT") else []
    data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    roots += [home / ".pyenv", data / "uv" / "python"]
    return list(dict.fromkeys(roots))


def find(
    minor: str,
    env: Mapping[str, str] | None = None,
    *,
    which: Callable[[str], str | None] | None = None,
    version_of: Callable[[str], tuple[int, int] | None] = python_version,
    roots: Sequence[Path] | None = None,
) -> tuple[str | None, list[str]]:
    """A working Python ``minor`` (``"3.13"``), or None, and the candidates that did not
    run as that version."""
    env = os.environ if env is None else env
    if which is None:
        on_path = shutil.which(f"python{minor}", path=env.get("PATH"))
    else:
        on_path = which(f"python{minor}")
    wanted = tuple(int(part) for part in minor.split("."))
    tried: list[str] = []
    candidates = ([on_path] if on_path else []) + installed(
        default_roots(env) if roots is None else roots, minor
    )
    for candidate in dict.fromkeys(candidates):
        if version_of(candidate) == wanted:
            return candidate, tried
        tried.append(candidate)
    return None, tried
