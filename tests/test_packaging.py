"""The release artifacts: what the sdist and the wheel hold, their metadata, ``twine check``,
and the wheel installed into clean virtualenvs (``import sqsbus``, ``sqsbus --version``, a
Kombu round trip against ``sqsbus local``, without boto3).

The version is written once, in ``sqsbus/__init__.py``; pyproject.toml reads it, the CLI
prints it and CHANGELOG.md's latest release names it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from dist_helpers import (
    ROOT,
    SUPPORTED_PYTHONS,
    Dists,
    built_dists,
    clean_environment,
    make_venv,
    package_files,
    run,
)

import sqsbus

pytestmark = pytest.mark.packaging

VERSION = sqsbus.__version__
DIST_INFO = f"sqsbus-{VERSION}.dist-info"
SDIST_TOP = f"sqsbus-{VERSION}"


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    return built_dists(tmp_path_factory.getbasetemp() / "sqsbus-dists")


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        return Parser().parsestr(archive.read(f"{DIST_INFO}/METADATA").decode())


# -- the version, once -------------------------------------------------------------------------


def test_changelog_latest_release_is_the_package_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+[^\]]*)\] - (\d{4}-\d{2}-\d{2})$", changelog, re.M)
    assert releases, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' release heading"
    assert releases[0][0] == VERSION, (
        f"CHANGELOG.md's latest release is {releases[0][0]}, sqsbus.__version__ is {VERSION}: "
        "add a section for this version"
    )
    assert f"\n[{VERSION}]: " in changelog, f"CHANGELOG.md lacks the link for [{VERSION}]"


def test_pyproject_takes_the_version_from_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"], "pyproject.toml repeats the version"
    assert "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "sqsbus.__version__"}


# -- the wheel ---------------------------------------------------------------------------------


def test_wheel_holds_the_runtime_package_only(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as archive:
        names = sorted(archive.namelist())
    print(f"\n{dists.wheel.name}: {len(names)} files")
    print("\n".join(f"  {name}" for name in names))
    expected = package_files() | {
        f"{DIST_INFO}/{name}"
        for name in ("METADATA", "WHEEL", "RECORD", "entry_points.txt", "top_level.txt")
    }
    expected.add(f"{DIST_INFO}/licenses/LICENSE")
    assert set(names) == expected
    assert {"sqsbus/py.typed", "sqsbus/testing/proxy.py", "sqsbus/demo/app.py"} <= set(names)


def test_wheel_metadata(dists: Dists) -> None:
    meta = wheel_metadata(dists.wheel)
    assert meta["Name"] == "sqsbus"
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Requires-Python"] == f">={SUPPORTED_PYTHONS[0]}"
    runtime = sorted(r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r)
    assert [re.split(r"[<>=!~ ;\[]", r)[0] for r in runtime] == ["botocore", "kombu"], runtime
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"local", "celery", "otel", "testing", "docs", "dev"} <= extras
    classifiers = meta.get_all("Classifier") or []
    claimed = sorted(
        c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r".*Python :: 3\.\d+", c)
    )
    assert claimed == list(SUPPORTED_PYTHONS)
    assert not [c for c in classifiers if c.startswith("License ::")], "SPDX expression only"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    assert meta["Keywords"]


def test_sdist_holds_what_builds_the_wheel_and_no_tests(dists: Dists) -> None:
    # The tests need the repository (fixtures, the benchmark, the docs they check), so the
    # sdist leaves them out; it builds the wheel (python -m build makes the wheel from it).
    with tarfile.open(dists.sdist) as archive:
        names = {m.name.removeprefix(f"{SDIST_TOP}/") for m in archive.getmembers() if m.isfile()}
    print(f"\n{dists.sdist.name}: {len(names)} files")
    top = {name for name in names if "/" not in name}
    assert top == {
        "PKG-INFO", "setup.cfg", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md",
        "MANIFEST.in",
    }  # fmt: skip
    assert {n for n in names if n.startswith("sqsbus/")} == package_files()
    assert {n.split("/")[0] for n in names} - top == {"sqsbus", "sqsbus.egg-info"}


def test_twine_check_passes(dists: Dists) -> None:
    result = run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists.sdist), str(dists.wheel)],
        timeout=120,
    )
    print(f"\n{result.stdout}")
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("PASSED") == 2


# -- the wheel installed -----------------------------------------------------------------------

ROUND_TRIP = """
import importlib.util, sys
from pathlib import Path

assert importlib.util.find_spec("boto3") is None, "boto3 is installed"
import kombu, sqsbus

assert Path(sqsbus.__file__).is_relative_to(sys.prefix), sqsbus.__file__
options = {"queue_name_prefix": sys.argv[2]}
with kombu.Connection(sys.argv[1], transport_options=options) as connection:
    queue = connection.SimpleQueue("wheel")
    queue.put({"round": "trip"})
    message = queue.get(timeout=30)
    message.ack()
    queue.close()
print("got", message.payload, "with kombu", kombu.__version__)
assert "boto3" not in sys.modules
"""


def test_wheel_installs_and_runs_without_boto3(dists: Dists, tmp_path: Path, prefix: str) -> None:
    runtime = make_venv(tmp_path / "runtime", sys.executable, [str(dists.wheel)])
    with_local = make_venv(tmp_path / "local", sys.executable, [f"{dists.wheel}[local]"])
    bin_dir = with_local.parent

    version = run([str(runtime.parent / "sqsbus"), "--version"], timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"sqsbus {VERSION}", version.stdout

    with LocalCommand(bin_dir / "sqsbus", tmp_path) as broker_url:
        # -I: neither the working directory nor PYTHONPATH may supply the repository's sqsbus.
        trip = run([str(runtime), "-I", "-c", ROUND_TRIP, broker_url, prefix], timeout=120)
    print(f"\n{trip.stdout}")
    assert trip.returncode == 0, trip.stdout
    assert "got {'round': 'trip'}" in trip.stdout


class LocalCommand:
    """``sqsbus local`` from an installed wheel, in the background; yields its broker URL."""

    def __init__(self, executable: Path, workdir: Path) -> None:
        self.executable = executable
        self.output = workdir / "sqsbus-local.out"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [str(self.executable), "local"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=clean_environment(),
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.output.read_text(errors="replace")
            found = re.search(r'broker_url = "(sqsbus://[^"]+)"', text)
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.__exit__()
        raise AssertionError(f"sqsbus local did not start:\n{self.output.read_text()}")

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        assert code == 0, self.output.read_text()
