"""The supported versions, tested: a fast subset of the suite on every other supported Python
and on the oldest Kombu/Celery/botocore releases sqsbus claims.

The whole suite runs on the interpreter of ``./dev test`` with the newest releases. Each
other cell installs the built wheel (with the ``local``, ``celery`` and ``testing`` extras and
the test runner from the ``dev`` extra) into a fresh virtualenv and runs there: every unit
test, a Kombu round trip and Celery round trips with a real worker. Cells:

* newest Kombu/Celery on each supported Python other than the running one;
* the oldest releases (:data:`dist_helpers.OLDEST`) on the oldest and the newest Python.

A Python that is not installed is skipped, saying what was tried. docs/compatibility.md
("Supported versions") states this matrix.
"""

from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from dist_helpers import (
    OLDEST,
    PYPROJECT,
    ROOT,
    SUPPORTED_PYTHONS,
    Dists,
    built_dists,
    dev_requirements,
    find_python,
    make_venv,
    run,
)
from packaging.requirements import Requirement
from packaging.version import Version

pytestmark = pytest.mark.matrix

#: Packages of the ``dev`` extra the fast subset needs besides the wheel and its extras.
TEST_RUNNER: Final = ("pytest", "pytest-timeout", "hypothesis", "boto3")
FAST_SUBSET: Final = (
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("test_unit_*.py")),
    "tests/test_kombu_messaging.py::test_publish_consume_many_and_ack_deletes",
    "tests/test_celery.py::test_many_tasks_return_their_results",
    "tests/test_celery.py::test_chain_group_and_chord",
)
SUBSET_TIMEOUT: Final = 600.0

#: The releases a cell reports (and, for the oldest cells, checks against the pins).
REPORTED: Final = ("kombu", "celery", "botocore", "boto3", "moto")
VERSIONS = """
import json, sys, sqsbus
from importlib.metadata import version
from pathlib import Path

assert Path(sqsbus.__file__).is_relative_to(sys.prefix), sqsbus.__file__
print(json.dumps({"Python": sys.version.split()[0], **{n: version(n) for n in sys.argv[1:]}}))
"""


@dataclass(frozen=True)
class Cell:
    python: str
    oldest: bool

    def __str__(self) -> str:
        return f"py{self.python}-{'oldest' if self.oldest else 'newest'}"


def cells() -> list[Cell]:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    newest = [Cell(version, oldest=False) for version in SUPPORTED_PYTHONS if version != running]
    oldest = [
        Cell(version, oldest=True) for version in (SUPPORTED_PYTHONS[0], SUPPORTED_PYTHONS[-1])
    ]
    return newest + oldest


def test_oldest_tested_releases_are_the_floors_pyproject_declares() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    declared = [*project["dependencies"], *extras["celery"], *extras["local"]]
    floors = {
        requirement.name: Version(spec.version)
        for requirement in map(Requirement, declared)
        for spec in requirement.specifier
        if spec.operator == ">="
    }
    pinned = {
        pin.name: Version(next(iter(pin.specifier)).version) for pin in map(Requirement, OLDEST)
    }
    for name, floor in floors.items():
        assert pinned.get(name) == floor, f"{name}: pyproject says >={floor}, matrix tests {pinned}"
    assert project["requires-python"] == f">={SUPPORTED_PYTHONS[0]}"


def test_docs_state_the_matrix() -> None:
    docs = (ROOT / "docs" / "compatibility.md").read_text(encoding="utf-8")
    section = docs.split("## Supported versions", 1)[1].split("\n## ", 1)[0]
    assert ", ".join(SUPPORTED_PYTHONS) in section
    for pin in map(Requirement, OLDEST):
        version = next(iter(pin.specifier)).version
        assert version in section, f"docs/compatibility.md does not name {pin.name} {version}"


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    return built_dists(tmp_path_factory.getbasetemp() / "sqsbus-dists")


@pytest.mark.timeout(SUBSET_TIMEOUT + 300)
@pytest.mark.parametrize("cell", cells(), ids=str)
def test_fast_subset_passes(cell: Cell, dists: Dists, tmp_path: Path) -> None:
    python, where = find_python(cell.python)
    if python is None:
        pytest.skip(where)
    requirements = [
        f"{dists.wheel}[local,celery,testing]",
        *dev_requirements(TEST_RUNNER),
        *(OLDEST if cell.oldest else ()),
    ]
    venv_python = make_venv(tmp_path / "venv", python, requirements)

    report = run([str(venv_python), "-I", "-c", VERSIONS, *REPORTED], timeout=60, cwd=tmp_path)
    assert report.returncode == 0, report.stdout
    versions: dict[str, str] = json.loads(report.stdout)
    installed = ", ".join(f"{name} {version}" for name, version in versions.items())
    if cell.oldest:
        for pin in map(Requirement, OLDEST):
            assert pin.specifier.contains(versions[pin.name]), f"{pin} wanted: {installed}"

    subset = run(
        [
            str(venv_python), "-m", "pytest", "-c", str(PYPROJECT), "--rootdir", str(ROOT),
            "-o", "addopts=", "-p", "no:cacheprovider", "-q",
            *(str(ROOT / test) for test in FAST_SUBSET),
        ],
        timeout=SUBSET_TIMEOUT,
        cwd=tmp_path,
    )  # fmt: skip
    summary = subset.stdout.strip().splitlines()[-1] if subset.stdout.strip() else "(no output)"
    print(f"\n{cell}: {installed}: {summary}")
    assert subset.returncode == 0, subset.stdout[-6000:]
