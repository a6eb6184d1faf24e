"""``mailslot bench collab`` end to end against the ShareDB peer (smoke tests: no time asserted)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailslot import bench
from mailslot.bench import collab
from mailslot.errors import TransportError

pytestmark = pytest.mark.integration


def test_collab_suite_loads_sharedb_and_loses_nothing(node: str) -> None:
    lines: list[str] = []
    args = ["collab", "--json", "--targets", "sharedb", "--clients", "4", "--docs", "1,3"]
    args += ["--modes", "typing", "--duration", "0.5", "--warmup", "0.2", "--stop-reading", "0"]
    assert bench.main(args, out=lines.append) == 0
    report = json.loads(lines[0])
    rows = report["rows"]
    assert [(r["target"], r["K"], r["D"]) for r in rows] == [("sharedb", 4, 1), ("sharedb", 4, 3)]
    for row in rows:
        assert "error" not in row, row
        assert row["edits/s"] > 0
        assert row["missing"] == 0
        # measured, but maybe 0: the kernel counts CPU time in 10 ms ticks, and half a second of
        # four typists can cost ShareDB less than one tick (it did, once in CI-like runs)
        assert row["cpu us/msg"] >= 0
        if row["cpu us/msg"] > 0:
            assert row["cpu x sharedb"] == 1.0
        else:  # no ratio over nothing
            assert row.get("cpu x sharedb") is None


def test_the_relay_floor_runs_the_same_load_and_loses_nothing(node: str) -> None:
    # the relay is the stack's floor in the table: it must carry the generator's whole load (no
    # missing deliveries, so each client gets its frames in version order) to be a fair one
    lines: list[str] = []
    args = ["collab", "--json", "--targets", "relay", "--clients", "4", "--docs", "1,3"]
    args += ["--modes", "typing,closed", "--duration", "0.5", "--warmup", "0.2"]
    args += ["--stop-reading", "0"]
    assert bench.main(args, out=lines.append) == 0
    rows = json.loads(lines[0])["rows"]
    assert [(r["target"], r["D"], r["mode"]) for r in rows] == [
        ("relay", 1, "typing"),
        ("relay", 3, "typing"),
        ("relay", 1, "closed"),
        ("relay", 3, "closed"),
    ]
    for row in rows:
        assert "error" not in row, row
        assert row["edits/s"] > 0
        assert row["missing"] == 0
        assert row["errors"] == 0
        assert row["cpu us/msg"] >= 0  # measured (maybe under one 10 ms tick); no ratio asked


def test_a_target_that_cannot_start_is_a_row_not_a_crash(
    node: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextmanager
    def broken(name: str, *, workdir: Path) -> Iterator[collab.ServerProcess]:
        raise TransportError(f"server exited with status 2 ({name} in {workdir.name})")
        yield  # pragma: no cover

    monkeypatch.setattr(collab, "start_target", broken)
    lines: list[str] = []
    args = ["collab", "--json", "--targets", "sharedb,mailslot", "--clients", "2", "--docs", "1"]
    args += ["--modes", "typing", "--duration", "0.2", "--warmup", "0", "--stop-reading", "0"]
    assert bench.main(args, out=lines.append) == 0
    rows = json.loads(lines[0])["rows"]
    assert [r["error"] for r in rows] == [
        "sharedb: server exited with status 2 (sharedb in 0-sharedb)",
        "mailslot: server exited with status 2 (mailslot in 0-mailslot)",
    ]
