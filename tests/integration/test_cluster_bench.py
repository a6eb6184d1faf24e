"""``mailslot bench cluster`` end to end against the real broker (smoke: no time asserted)."""

from __future__ import annotations

import json

import pytest

from mailslot import bench

pytestmark = pytest.mark.integration


def test_cluster_suite_runs_two_processes_and_reports_every_case(
    amqp_url: str, postgres_url: str
) -> None:
    lines: list[str] = []
    args = ["cluster", "--json", "--quick", "--messages", "20000", "--broker", amqp_url]
    args += ["--db", postgres_url, "--clients", "4"]
    assert bench.main(args, out=lines.append) == 0
    report = json.loads(lines[0])
    values = {row["case"]: row["value"] for row in report["rows"]}
    assert values["logical msgs/s, 2 processes (batched, quorum, confirms)"] > 0
    for case in ("latency p50 at 1/4 peak (ms)", "latency p99 at 1/4 peak (ms)"):
        assert values[case] > 0
    assert values["ask round trip p50 (ms)"] <= values["ask round trip p99 (ms)"]
    assert values["baseline: aio-pika unbatched msgs/s (quorum, confirms)"] > 0
    # the sweep below a quarter of the peak: only rates the peak leaves room for
    swept = [case for case in values if case.startswith("latency p99 at ") and "peak" not in case]
    assert all(values[case] > 0 for case in swept)
    collab = [case for case in values if case.startswith("collab:")]
    notes = " ".join(report["notes"])
    assert collab or "collab case skipped" in notes, notes
