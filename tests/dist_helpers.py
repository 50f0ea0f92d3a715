"""Built distributions and throwaway virtualenvs, for the packaging and version-matrix tests.

* :func:`built_dists` builds sqsbus's sdist and wheel (``python -m build``) from a copy of the
  files the sdist is made of, so that building never writes into the repository, once per
  test session.
* :func:`find_python` finds an interpreter of a supported version
  (:mod:`bench.interpreters`).
* :func:`make_venv` makes a fresh virtualenv and installs requirements into it with uv, whose
  cache keeps a warm run to seconds (pip's HTTP cache stays empty behind proxies that send
  no caching headers, and a cold pip install of moto's server took minutes).

Versions the project claims to support are named here once: :data:`SUPPORTED_PYTHONS` and
:data:`OLDEST`, the oldest releases of the runtime dependencies that are tested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from packaging.requirements import Requirement

from bench import interpreters

ROOT: Final = Path(__file__).resolve().parents[1]
PYPROJECT: Final = ROOT / "pyproject.toml"

#: CPython versions sqsbus supports; each is tested (tests/test_version_matrix.py).
SUPPORTED_PYTHONS: Final = ("3.11", "3.12", "3.13")
#: The oldest releases within the ranges pyproject.toml declares that the matrix tests with.
OLDEST: Final = (
    "kombu==5.4.0",
    "celery==5.4.0",
    "botocore==1.37.0",
    "boto3==1.37.0",
    "moto[server]==5.0.3",
)

#: What the sdist is built from: top-level files, plus the package directory.
SDIST_FILES: Final = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in")
PACKAGE_DIR: Final = "sqsbus"

BUILD_TIMEOUT: Final = 300.0
INSTALL_TIMEOUT: Final = 600.0


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path
    build_output: str


_built: dict[Path, Dists] = {}


def built_dists(workdir: Path) -> Dists:
    """The sdist and wheel built into ``workdir`` (once per process for a given directory)."""
    if workdir not in _built:
        source = workdir / "source"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        for name in SDIST_FILES:
            shutil.copy2(ROOT / name, source / name)
        shutil.copytree(
            ROOT / PACKAGE_DIR,
            source / PACKAGE_DIR,
            ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"),
        )
        out = workdir / "dist"
        result = run(
            [sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(out), str(source)],
            timeout=BUILD_TIMEOUT,
        )
        assert result.returncode == 0, f"python -m build failed:\n{result.stdout}"
        (sdist,) = out.glob("*.tar.gz")
        (wheel,) = out.glob("*.whl")
        _built[workdir] = Dists(sdist, wheel, result.stdout)
    return _built[workdir]


def package_files() -> set[str]:
    """The files of the ``sqsbus`` package in the repository, as paths like ``sqsbus/x.py``."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / PACKAGE_DIR).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


# -- interpreters ------------------------------------------------------------------------------


def find_python(version: str, env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """A working Python ``version`` (e.g. ``"3.12"``) and where it was found, or None and
    what was tried."""
    found, tried = interpreters.find(version, env)
    if found:
        return found, found
    looked = ", ".join(tried) or "nothing found"
    return None, (
        f"no working python{version} on PATH or under pyenv's or uv's interpreters (tried: "
        f"{looked}); install it (e.g. pyenv install {version}) to test sqsbus on Python "
        f"{version}"
    )


# -- virtualenvs -------------------------------------------------------------------------------


def uv() -> str:
    """The uv executable that comes with the ``dev`` extra."""
    from uv import find_uv_bin

    return str(find_uv_bin())


def make_venv(path: Path, python: str, requirements: Sequence[str]) -> Path:
    """Create a virtualenv at ``path`` with ``python`` and install ``requirements`` into it
    (PyPI only, never a downloaded interpreter); return its Python."""
    for step in (
        [uv(), "venv", "--quiet", "--no-python-downloads", "--python", python, str(path)],
        [uv(), "pip", "install", "--quiet", "--python", str(path / "bin" / "python"),
         *requirements],
    ):  # fmt: skip
        result = run(step, timeout=INSTALL_TIMEOUT)
        assert result.returncode == 0, f"{' '.join(step[:3])} failed:\n{result.stdout}"
    return path / "bin" / "python"


def dev_requirements(names: Iterable[str]) -> list[str]:
    """The requirements of the ``dev`` extra for the packages ``names``, as pyproject.toml
    writes them (so versions are declared in one place)."""
    wanted = set(names)
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    found = [
        spec for spec in project["optional-dependencies"]["dev"] if Requirement(spec).name in wanted
    ]
    missing = wanted - {Requirement(spec).name for spec in found}
    assert not missing, f"pyproject.toml's dev extra lacks {sorted(missing)}"
    return found


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without what would leak the repository, its venv or this
    pytest run's options into a child (``PYTHONPATH``, ``VIRTUAL_ENV``, ``PYTEST_*`` such as
    ``PYTEST_ADDOPTS`` or pytest-xdist's worker variables), plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "VIRTUAL_ENV") and not name.startswith("PYTEST_")
    }
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return {**env, **extra}


def run(
    command: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with stdout and stderr together in ``.stdout``."""
    return subprocess.run(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean_environment() if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        check=False,
    )
