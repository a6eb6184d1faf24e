"""``mailslot bench store`` runs end to end (tiny, SQLite only); benchmarks report, tests check."""

from __future__ import annotations

import argparse

from mailslot import bench

SUITE = bench.load_suite("store")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    SUITE.add_arguments(parser)  # type: ignore[attr-defined]
    return parser.parse_args(["store", *argv])


def test_store_suite_runs_and_reports_both_modes() -> None:
    report = SUITE.run(_args("--engines", "sqlite", "--writers", "3", "--seconds", "0.05"))
    assert [(r["engine"], r["mode"]) for r in report.rows] == [
        ("sqlite", "group commit"),
        ("sqlite", "txn per op"),
    ]
    assert report.rows[1]["speedup"] == 1.0 or report.rows[1]["ops"] == 0
    assert "ops/s" in report.render()


def test_unknown_engine_is_noted_not_fatal() -> None:
    report = SUITE.run(_args("--engines", "oracle", "--seconds", "0.01"))
    assert report.rows == []
    assert any("oracle skipped: unknown engine 'oracle'" in n for n in report.notes)
