"""docs/architecture.md names every module of the package, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_architecture_page_lists_every_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(sqsbus/[\w/]+\.py)` \|", page, re.MULTILINE))
    modules = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "sqsbus").rglob("*.py")
        if path.name != "__init__.py"
        or path.parent.name in {"sqsbus", "admin", "local", "testing", "demo"}
    }
    assert not modules - listed, f"not in docs/architecture.md: {sorted(modules - listed)}"
    assert not listed - modules, f"no longer exist: {sorted(listed - modules)}"
