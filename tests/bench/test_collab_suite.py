"""The pure parts of ``mailslot bench collab``: the cell grid, the row arithmetic, the ratios and
the deadline line reader. Running the suite against real servers is in tests/integration.
"""

from __future__ import annotations

import os
import time

import pytest

from mailslot.bench.collab import Cell, LineReader, Window, add_ratios, cells_for, summarize
from mailslot.errors import ConfigError

RESULT = {
    "event": "result",
    "committed_per_s": 320.0,
    "duration_s": 2.0,
    "frames_in": 20_500,
    "frames_in_per_s": 10_250.0,
    "messages_in": 20_000,
    "messages_in_per_s": 10_000.0,
    "duplicates": 500,
    "latency_ms": {"n": 5, "p50": 2.0, "p99": 20.0, "max": 30.0},
    "ack_ms": {"p50": 1.0, "p99": 12.0},
    "missing_deliveries": 3,
    "unacked": 1,
    "errors": 2,
    "error_samples": ["op rejected: overload"],
    "generator_cpu": 0.4,
}


def test_quick_grid_is_k16_64_by_d1_100_typing_plus_one_closed() -> None:
    cells = cells_for(quick=True)
    assert cells == [
        Cell(16, 1, "typing"),
        Cell(16, 100, "typing"),
        Cell(64, 1, "typing"),
        Cell(64, 100, "typing"),
        Cell(64, 1, "closed"),
    ]


def test_full_grid_covers_every_k_d_and_mode_then_the_stalled_cell() -> None:
    cells = cells_for(quick=False, stop_reading=4, stall_rate=20.0, stall_duration=7.0)
    assert len(cells) == 3 * 2 * 2 + 2
    assert {(c.clients, c.docs, c.mode) for c in cells[:-2]} == {
        (k, d, m) for k in (16, 64, 256) for d in (1, 100) for m in ("typing", "closed")
    }
    assert cells[-2:] == [
        Cell(64, 100, "typing", watchers=4, rate=20.0, duration=7.0),
        Cell(64, 100, "typing", stalled=4, rate=20.0, duration=7.0),
    ]
    assert [c.label for c in (cells[0], *cells[-2:])] == [
        "typing",
        "typing 20/s +4w",
        "typing 20/s",
    ]


def test_explicit_grid_and_bad_values() -> None:
    assert cells_for(quick=True, clients=[8], docs=[2], modes=["closed"]) == [Cell(8, 2, "closed")]
    with pytest.raises(ConfigError, match="unknown mode 'fast'"):
        cells_for(quick=False, modes=["fast"])
    with pytest.raises(ConfigError, match="at least 2 clients"):
        cells_for(quick=False, clients=[1])
    with pytest.raises(ConfigError, match="--stop-reading must not be negative"):
        cells_for(quick=True, stop_reading=-1)


def test_summarize_divides_server_cpu_by_frames_sent() -> None:
    window = Window(cpu_s=0.5, wall_s=2.0, rss_start=100 * 2**20, rss_end=110 * 2**20)
    row = summarize("sharedb", Cell(64, 1, "typing"), RESULT, window)
    assert row["cpu us/msg"] == 25.0  # 0.5 s / 20,000 messages (duplicates left out)
    assert (row["msgs/s"], row["dup/s"]) == (10_000.0, 250.0)
    assert row["srv cpu"] == 0.25
    assert (row["rss MB"], row["rss +MB"]) == (110.0, 10.0)
    assert (row["edits/s"], row["p50 ms"], row["p99 ms"], row["max ms"]) == (320.0, 2.0, 20.0, 30.0)
    assert row["ack p99 ms"] == 12.0
    assert row["missing"] == 4  # deliveries missing + edits never acknowledged
    assert row["errors"] == 2
    assert row["error"] == "op rejected: overload"


def test_summarize_without_samples_or_with_a_fatal_error() -> None:
    row = summarize("mailslot", Cell(16, 1, "closed"), {**RESULT, "messages_in": 0}, None)
    assert "cpu us/msg" not in row
    fatal = summarize("mailslot", Cell(16, 1, "closed"), {"fatal": "x" * 500}, None)
    assert fatal["error"] == "x" * 100
    assert "edits/s" not in fatal


def test_ratios_compare_each_row_with_sharedb_in_the_same_cell() -> None:
    rows = [
        {"target": "sharedb", "K": 16, "D": 1, "mode": "typing", "stalled": 0},
        {"target": "mailslot", "K": 16, "D": 1, "mode": "typing", "stalled": 0},
        {"target": "mailslot", "K": 64, "D": 1, "mode": "typing", "stalled": 0},
    ]
    rows[0].update({"cpu us/msg": 40.0, "p99 ms": 10.0})
    rows[1].update({"cpu us/msg": 10.0, "p99 ms": 15.0})
    rows[2].update({"cpu us/msg": 10.0, "p99 ms": 15.0})
    add_ratios(rows)
    assert (rows[0]["cpu x sharedb"], rows[0]["p99 x sharedb"]) == (1.0, 1.0)
    assert (rows[1]["cpu x sharedb"], rows[1]["p99 x sharedb"]) == (0.25, 1.5)
    assert "cpu x sharedb" not in rows[2]  # no ShareDB row for that cell


def test_line_reader_splits_lines_and_reports_eof() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as stream:
        os.write(write_fd, b'{"event":"ready"}\nLISTENING 5\npartial')
        os.close(write_fd)
        reader = LineReader(stream)
        deadline = time.monotonic() + 60
        assert reader.readline(deadline) == '{"event":"ready"}'
        assert reader.readline(deadline) == "LISTENING 5"
        assert reader.readline(deadline) == "partial"
        assert reader.readline(deadline) is None


def test_line_reader_times_out_at_its_deadline() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as stream, os.fdopen(write_fd, "wb"):
        reader = LineReader(stream)
        with pytest.raises(TimeoutError):
            reader.readline(time.monotonic())  # already passed: no waiting
