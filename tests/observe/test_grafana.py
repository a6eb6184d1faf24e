"""The Grafana dashboard is importable as is and queries only metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mailslot.meters import CATALOGUE, exposed_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "mailslot.json"
EXPOSED = {sample for spec in CATALOGUE.values() for sample in exposed_names(spec)}


def panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(d: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(d) for t in p.get("targets", [])]


def test_the_dashboard_is_importable_json() -> None:
    d = json.loads(DASHBOARD.read_text())
    assert d["schemaVersion"] >= 36
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids))
    for p in panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24


def test_every_query_names_only_exported_metrics() -> None:
    d = json.loads(DASHBOARD.read_text())
    used = set()
    for e in exprs(d):
        names = set(re.findall(r"\bmailslot_[a-z_]+", e))
        assert names, e
        unknown = names - EXPOSED
        assert not unknown, f"{e} uses {unknown}"
        used |= names
        assert e.count("(") == e.count(")"), e
    # and every exported metric is on the dashboard somewhere
    shown = {
        name
        for name, spec in CATALOGUE.items()
        if any(sample in used for sample in exposed_names(spec))
    }
    assert shown == set(CATALOGUE)


def test_histogram_quantiles_use_buckets_and_keep_le() -> None:
    d = json.loads(DASHBOARD.read_text())
    quantiles = [e for e in exprs(d) if "histogram_quantile" in e]
    assert quantiles
    for e in quantiles:
        assert "_bucket" in e, e
        assert "by (le" in e, e
