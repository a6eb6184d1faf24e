"""The ``wire`` benchmark suite runs end to end (a smoke test: no time is asserted)."""

from __future__ import annotations

import json

from mailslot import bench


def test_wire_suite_runs_and_reports_every_case() -> None:
    lines: list[str] = []
    code = bench.main(
        ["wire", "--json", "--size", "10", "--rounds", "2", "--repeats", "1"], out=lines.append
    )
    assert code == 0
    report = json.loads(lines[0])
    assert report["suite"] == "wire"
    cases = [row["case"] for row in report["rows"]]
    assert cases[0] == "mailslot encode_batch/decode_batch"
    assert any(c.startswith("json") for c in cases)
    assert any(c.startswith("pickle") for c in cases)
    assert report["rows"][0]["x mailslot"] == 1.0
    assert all(row["total ns/env"] > 0 and row["bytes/env"] > 0 for row in report["rows"])
    assert report["meta"]["envelopes_per_batch"] == 10
