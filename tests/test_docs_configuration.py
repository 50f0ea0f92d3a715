"""The configuration reference (docs/configuration.md) against the options table of
:mod:`sqsbus.config`: every option accepted has its own section, the page names no option that
does not exist, and the defaults and ranges it gives are the code's."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Final

from sqsbus.config import _OPTIONS, KNOWN_OPTIONS, Options

PAGE: Final = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def sections() -> dict[str, str]:
    """Option name -> the text of its ``### `name``` section."""
    text = PAGE.read_text(encoding="utf-8")
    parts = re.split(r"^### `([^`]+)`\n", text, flags=re.MULTILINE)
    return {
        name: re.split(r"^#{1,3} ", body, maxsplit=1, flags=re.MULTILINE)[0]
        for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def field(name: str) -> str | None:
    """The :class:`Options` field an option sets (None when Kombu itself reads it)."""
    return _OPTIONS[name][0]


def shown(value: Any) -> str:
    """How the page writes a default: Python literals, lists for tuples."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, tuple):
        return json.dumps(list(value))
    if isinstance(value, dict):
        return json.dumps(value)
    return json.dumps(value)


def bullet(section: str, label: str) -> str:
    found = re.search(rf"^- \*\*{label}:\*\* (.+)$", section, re.MULTILINE)
    assert found is not None, f"no '{label}' line in:\n{section}"
    return found.group(1)


def test_every_option_has_a_section_and_no_other_is_named() -> None:
    documented = list(sections())
    assert len(documented) == len(set(documented)), "an option has two sections"
    assert not KNOWN_OPTIONS - set(documented), (
        f"not documented: {sorted(KNOWN_OPTIONS - set(documented))}"
    )
    assert not set(documented) - KNOWN_OPTIONS, (
        f"no such option: {sorted(set(documented) - KNOWN_OPTIONS)}"
    )


def test_each_section_gives_type_default_kombu_and_meaning() -> None:
    for name, section in sections().items():
        for label in ("Type", "Default", "Kombu"):
            bullet(section, label)
        prose = [line for line in section.splitlines() if line and not line.startswith("- **")]
        assert prose, f"{name}: no description"


def test_defaults_are_the_code_s() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(Options)}
    defaults |= {
        f.name: f.default_factory()  # type: ignore[misc]
        for f in dataclasses.fields(Options)
        if f.default_factory is not dataclasses.MISSING
    }
    for name, section in sections().items():
        target = field(name)
        default = bullet(section, "Default")
        if target is None:
            assert default == "Kombu's", f"{name} is read by Kombu: its default is Kombu's"
            continue
        value = defaults[target]
        first = re.search(r"`([^`]*)`", default)
        if value is None:
            assert default.startswith("none"), (
                f"{name}: the code's default is None, page: {default}"
            )
            continue
        assert first is not None, f"{name}: no default value in {default!r}"
        assert first.group(1) == shown(value), f"{name}: page says {first.group(1)}, code {value!r}"


def test_ranges_are_the_validators() -> None:
    for name, section in sections().items():
        validate = _OPTIONS[name][1]
        if not validate.__qualname__.startswith("_int_range"):
            continue
        bounds = dict(
            zip(
                validate.__code__.co_freevars,
                (cell.cell_contents for cell in validate.__closure__ or ()),
                strict=True,
            )
        )
        expected = f"integer, {bounds['low']} to {bounds['high']}"
        assert bullet(section, "Type").startswith(expected), f"{name}: {expected!r}"
