"""The Grafana dashboard and the PromQL in the docs name only metrics and labels sqsbus has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import pytest
from prometheus_names import instruments, label_names, series_names

ROOT: Final = Path(__file__).resolve().parents[1]
DASHBOARD: Final = ROOT / "docs" / "dashboards" / "sqsbus-grafana.json"
OBSERVABILITY: Final = ROOT / "docs" / "observability.md"

_METRIC: Final = re.compile(r"\bsqsbus_[a-z_]+")
_GROUPING: Final = re.compile(r"\bby \(([^)]*)\)")
_MATCHER: Final = re.compile(r"[{,]\s*([a-z_]+)\s*(?:=~|!~|!=|=)")


def dashboard_queries() -> list[str]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [target["expr"] for panel in document["panels"] for target in panel["targets"]]
    for variable in document["templating"]["list"]:
        if isinstance(variable.get("query"), dict):
            queries.append(variable["query"]["query"])
    return queries


def docs_queries() -> list[str]:
    text = OBSERVABILITY.read_text(encoding="utf-8")
    return re.findall(r"```promql\n(.*?)```", text, re.S)


def test_the_naming_rule_sees_every_instrument() -> None:
    # Guards the reading of telemetry.py: all of sqsbus's instruments, no fewer.
    assert len(instruments()) >= 20
    assert "sqsbus_delivery_lag_seconds_bucket" in series_names()
    assert "sqsbus_payloads_stored_bytes_total" in series_names()


@pytest.mark.parametrize("source", ["dashboard", "docs"])
def test_queries_name_only_sqsbus_series_and_labels(source: str) -> None:
    queries = dashboard_queries() if source == "dashboard" else docs_queries()
    assert queries, f"no PromQL found in the {source}"
    known_series, known_labels = series_names(), label_names()
    for query in queries:
        unknown = set(_METRIC.findall(query)) - known_series - known_labels
        assert not unknown, f"{query}\nnames series sqsbus does not export: {sorted(unknown)}"
        labels = {label.strip() for group in _GROUPING.findall(query) for label in group.split(",")}
        labels |= set(_MATCHER.findall(query))
        assert labels <= known_labels, f"{query}\nunknown labels: {sorted(labels - known_labels)}"


def test_every_panel_has_a_title_a_description_and_a_query() -> None:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in document["panels"]:
        assert panel["title"] and panel["description"] and panel["targets"], panel["title"]
