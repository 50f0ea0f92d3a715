"""Waiting on child processes (sqsbus.testing.children), with real short-lived children."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from sqsbus.testing.children import ChildFailed, first_line, wait_for_child


def python(code: str, stdout: int | None = None) -> subprocess.Popen[bytes]:
    """``python -c code`` as a child process."""
    return subprocess.Popen([sys.executable, "-c", code], stdout=stdout)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child that prints a line and then waits until killed."""
    child = python(
        "import time; print('http://127.0.0.1:1', flush=True); time.sleep(60)",
        stdout=subprocess.PIPE,
    )
    yield child
    child.kill()
    child.wait()


def test_wait_returns_what_the_check_found(sleeper: subprocess.Popen[bytes]) -> None:
    answers = iter([None, False, None, "ready"])
    assert wait_for_child(sleeper, lambda: next(answers), what="it", timeout=10) == "ready"


def test_wait_fails_when_the_child_exits_first() -> None:
    child = python("import sys; sys.exit(3)")
    with pytest.raises(ChildFailed, match=r"^the server exited with code 3 before it was ready!$"):
        wait_for_child(child, lambda: None, what="the server", timeout=30, context=lambda: "!")


def test_wait_fails_after_its_timeout(sleeper: subprocess.Popen[bytes]) -> None:
    with pytest.raises(ChildFailed, match=r"^the server was not ready within 0.2 s$"):
        wait_for_child(sleeper, lambda: None, what="the server", timeout=0.2)


def test_first_line_is_the_announced_url(sleeper: subprocess.Popen[bytes]) -> None:
    assert first_line(sleeper, what="the server", timeout=30) == "http://127.0.0.1:1"


def test_first_line_fails_when_the_child_exits_silently() -> None:
    child = python("import sys; sys.exit(2)", stdout=subprocess.PIPE)
    with pytest.raises(ChildFailed, match="exited with code 2 before it was ready"):
        first_line(child, what="the server", timeout=30)


def test_first_line_fails_after_its_timeout() -> None:
    child = python("import time; time.sleep(60)", stdout=subprocess.PIPE)
    try:
        with pytest.raises(ChildFailed, match=r"^the server printed nothing within 0.2 s$"):
            first_line(child, what="the server", timeout=0.2)
    finally:
        child.kill()
        child.wait()
