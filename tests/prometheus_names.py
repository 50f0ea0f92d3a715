"""The Prometheus names of sqsbus's metrics, read from :mod:`sqsbus.telemetry`'s source.

OpenTelemetry's Prometheus exporter turns ``.`` into ``_``, appends the unit (``s`` ->
``_seconds``, ``By`` -> ``_bytes``; annotations like ``{message}`` are dropped) and ``_total``
to counters. ``tests/test_demo.py`` checks this rule against a real exporter's output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import sqsbus.telemetry as telemetry

_SOURCE: Final = Path(telemetry.__file__).read_text(encoding="utf-8")
_INSTRUMENT: Final = re.compile(
    r'(counter|histogram|create_observable_gauge)\(\s*"(sqsbus\.[a-z_.]+)",\s*'
    r'(?:\[[^\]]*\],\s*)?"([^"]*)"'
)
_UNITS: Final = {"s": "_seconds", "By": "_bytes"}


def instruments() -> dict[str, tuple[str, str]]:
    """Every instrument's name -> (kind, unit)."""
    return {name: (kind, unit) for kind, name, unit in _INSTRUMENT.findall(_SOURCE)}


def family(name: str, unit: str) -> str:
    """The Prometheus family name of an instrument (without ``_total``)."""
    return name.replace(".", "_") + ("" if unit.startswith("{") else _UNITS.get(unit, ""))


def series_names() -> set[str]:
    """Every series name the exporter can write for sqsbus's instruments."""
    names: set[str] = set()
    for name, (kind, unit) in instruments().items():
        base = family(name, unit)
        if kind == "counter":
            names.add(base + "_total")
        elif kind == "histogram":
            names |= {base + "_bucket", base + "_count", base + "_sum"}
        else:
            names.add(base)
    return names


def label_names() -> set[str]:
    """The attribute names sqsbus records, as Prometheus labels, and ``le``."""
    attributes = {
        value
        for key, value in vars(telemetry).items()
        if key.isupper()
        and isinstance(value, str)
        and re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)+", value)
    }
    return {attribute.replace(".", "_") for attribute in attributes} | {"le"}
