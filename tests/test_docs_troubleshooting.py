"""The troubleshooting page (docs/troubleshooting.md) has a section for every exception a user
can meet: each class of :mod:`sqsbus.errors` and of the embedded endpoint, and no section for a
class that no longer exists."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Final

import sqsbus.errors
import sqsbus.local

PAGE: Final = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"


def exception_names() -> set[str]:
    classes = {
        name
        for module in (sqsbus.errors, sqsbus.local)
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__.startswith("sqsbus")
        and not name.startswith("_")
    }
    assert "ConfigurationError" in classes and "LocalEndpointError" in classes
    return classes


def test_every_exception_has_its_section() -> None:
    page = PAGE.read_text(encoding="utf-8")
    sections = re.findall(r"^### `(\w+)`$", page, re.MULTILINE)
    assert len(sections) == len(set(sections)), "an exception has two sections"
    missing = exception_names() - set(sections)
    assert not missing, f"not on the troubleshooting page: {sorted(missing)}"
    gone = set(sections) - exception_names()
    assert not gone, f"no such exception: {sorted(gone)}"
