from __future__ import annotations

import json

import pytest

from mailslot import bench
from mailslot.errors import ConfigError


def test_report_renders_table_and_json() -> None:
    report = bench.Report("demo", ["case", "rate", "ratio"])
    report.add(case="tell", rate=1234567, ratio=0.5123)
    report.notes.append("one run")
    text = report.render()
    assert "mailslot bench demo" in text
    assert "1,234,567" in text
    assert "0.512" in text
    assert "note: one run" in text
    data = report.to_json()
    assert json.loads(json.dumps(data))["rows"] == [
        {"case": "tell", "rate": 1234567, "ratio": 0.5123}
    ]
    assert data["meta"]["cpus"] >= 1


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 50) == 50.0
    assert bench.percentile(values, 99) == 99.0
    assert bench.percentile(values, 100) == 100.0


def test_unknown_suite_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown benchmark suite 'nope'"):
        bench.load_suite("nope")
