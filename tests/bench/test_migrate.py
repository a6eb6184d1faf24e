"""``mailslot bench migrate`` runs end to end on a tiny setting: both engines serve the same
workload, the planted bug pass runs, the verdict and the plot are produced. Numbers are not checked
(benchmarks report them; tests never assert a time)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mailslot.bench import migrate
from mailslot.bench.migrate import _verdict
from mailslot.errors import ConfigError


def _args(**over: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    migrate.add_arguments(parser)
    args = parser.parse_args([])
    for k, v in over.items():
        setattr(args, k, v)
    return args


def test_both_engines_run_the_same_workload(tmp_path: Path) -> None:
    plot = tmp_path / "p99.png"
    args = _args(clients=[4], docs=[2], duration=0.6, warmup=0.2, plot=plot)
    report = migrate.run(args)
    engines = [(r["engine"], r["bug"]) for r in report.rows]
    assert engines == [("legacy", ""), ("actor", ""), ("legacy", "on"), ("actor", "on")]
    for row in report.rows:
        assert row["ops/s"] > 0
        assert row["errors"] == 0
        assert row["p99 ms"] >= row["p50 ms"] > 0
        assert (row["deadlocks"] is None) == (row["bug"] == "")  # the profiled rows report
    assert any("at K=4, D=2" in n for n in report.notes)
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_the_verdict_says_whether_each_target_is_met() -> None:
    rows = [
        {"engine": "legacy", "bug": "", "K": 8, "D": 1, "p99 ms": 100.0, "ops/s": 100.0,
         "stalls": 0, "deadlocks": None},
        {"engine": "actor", "bug": "", "K": 8, "D": 1, "p99 ms": 50.0, "ops/s": 150.0,
         "stalls": 0, "deadlocks": None},
        {"engine": "legacy", "bug": "on", "K": 8, "D": 1, "p99 ms": 900.0, "ops/s": 10.0,
         "stalls": 3, "deadlocks": 2},
        {"engine": "actor", "bug": "on", "K": 8, "D": 1, "p99 ms": 50.0, "ops/s": 150.0,
         "stalls": 0, "deadlocks": 0},
    ]  # fmt: skip
    verdict = " ".join(_verdict(rows, 8, 1))
    assert "p99 50% below legacy (target 40%: met)" in verdict
    assert "throughput 1.50x (target 2x: NOT met)" in verdict
    assert "old engine 2, actor engine 0 (target 0: met)" in verdict
    assert "actor stalls (no answer for the stall timeout) 0" in verdict


def test_bad_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="--clients"):
        migrate.run(_args(clients=[0]))
    with pytest.raises(ConfigError, match="--rounds"):
        migrate.run(_args(clients=[1], docs=[1], rounds=0))


def test_rounds_report_medians_and_sums() -> None:
    rows = [
        {"engine": "actor", "bug": "", "K": 1, "D": 1, "ops/s": v, "p50 ms": v, "p99 ms": v,
         "cpu %": v, "cpu us/op": v, "errors": 1, "timeouts": 0, "stalls": 0, "deadlocks": None}
        for v in (1.0, 9.0, 3.0)
    ]  # fmt: skip
    row = migrate._median(rows)
    assert (row["ops/s"], row["p99 ms"], row["errors"], row["deadlocks"]) == (3.0, 3.0, 3, None)
