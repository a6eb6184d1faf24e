"""``mailslot bench locks`` runs every workload in every mode (tiny sizes: a smoke test)."""

from __future__ import annotations

import json

import pytest

from mailslot import bench
from mailslot.errors import ConfigError
from mailslot.migrate.workloads import MODES, WORKLOADS, time_workload


def test_every_workload_in_every_mode_is_reported_with_a_ratio() -> None:
    lines: list[str] = []
    argv = ["locks", "--json", "--iterations", "20", "--rounds", "1", "--threads", "2"]
    assert bench.main(argv, out=lines.append) == 0
    report = json.loads(lines[0])
    pairs = {(row["workload"], row["mode"]) for row in report["rows"]}
    assert pairs == {(w, m) for w in WORKLOADS for m in MODES}
    raw = [row for row in report["rows"] if row["mode"] == "raw"]
    assert all(row["ratio"] == 1.0 for row in raw)
    targets = {row["workload"]: row["target"] for row in report["rows"] if row["target"]}
    assert targets == {"churn": "<= 2.5x", "io": "<= 1.5x"}
    assert report["meta"]["iterations"] == 20


def test_one_workload_can_be_chosen() -> None:
    lines: list[str] = []
    argv = ["locks", "--workload", "io", "--iterations", "5", "--rounds", "1"]
    assert bench.main(argv, out=lines.append) == 0
    assert "io" in lines[0]
    assert "churn" not in lines[0]


def test_instrumented_runs_find_no_inversion_in_consistent_workloads() -> None:
    for name in WORKLOADS:
        assert time_workload(name, "stats+order", threads=2, iterations=10) > 0


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ConfigError, match="positive"):
        bench.main(["locks", "--iterations", "0"], out=lambda _: None)
