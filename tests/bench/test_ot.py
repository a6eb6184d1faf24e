"""mailslot.bench.ot: trace loading, option errors and a replay of a small synthetic trace."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from mailslot import cli
from mailslot.bench import ot as bench_ot
from mailslot.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# "hello wörld" typed, a word replaced, an emoji added
PATCHES = [
    [[0, 0, "hello wörld"]],
    [[6, 5, "there"]],
    [[11, 0, "!"], [5, 0, " 😀"]],
]
END = "hello 😀 there!"


def write_trace(directory: Path, name: str, end: str = END) -> Path:
    path = directory / f"{name}.json.gz"
    data = {"startContent": "", "endContent": end, "txns": [{"patches": p} for p in PATCHES]}
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(data, f)
    return path


def options(traces_dir: Path, **overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    bench_ot.add_arguments(parser)
    args = parser.parse_args(["--traces-dir", str(traces_dir), "--no-node"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


@pytest.mark.parametrize(
    ("patch", "op"),
    [
        ((0, 0, "a"), ["a"]),
        ((3, 0, "a"), [3, "a"]),
        ((3, 2, ""), [3, {"d": 2}]),
        ((0, 2, "xy"), [{"d": 2}, "xy"]),
        ((4, 1, "😀"), [4, {"d": 1}, "😀"]),
        ((4, 0, ""), []),
    ],
)
def test_patch_to_op(patch: tuple[int, int, str], op: list) -> None:
    assert bench_ot.patch_to_op(*patch) == op


def test_load_trace(tmp_path: Path) -> None:
    trace = bench_ot.load_trace(write_trace(tmp_path, "tiny"))
    assert trace.name == "tiny"
    assert trace.start == ""
    assert trace.end == END
    assert trace.ops[0] == ["hello wörld"]
    assert len(trace.ops) == 4


def test_load_trace_refuses_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(ConfigError, match=r"bad\.json\.gz is not a readable editing trace"):
        bench_ot.load_trace(bad)


def test_default_traces_dir_is_next_to_the_repository() -> None:
    assert bench_ot.default_traces_dir() == REPO.parent / "shared" / "data" / "traces"


def test_trace_selection(tmp_path: Path) -> None:
    for name in ("b", "a", *bench_ot.QUICK_TRACES):
        write_trace(tmp_path, name)
    quick = bench_ot.trace_files(tmp_path, None, quick=True)
    assert [p.name for p in quick] == [f"{n}.json.gz" for n in bench_ot.QUICK_TRACES]
    assert len(bench_ot.trace_files(tmp_path, None, quick=False)) == 4
    assert [p.name for p in bench_ot.trace_files(tmp_path, ["a"], quick=True)] == ["a.json.gz"]
    with pytest.raises(ConfigError, match="unknown trace nope; available: a, b, clownschool"):
        bench_ot.trace_files(tmp_path, ["nope"], quick=False)


def test_missing_traces_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"traces directory .* does not exist; pass --traces-dir"):
        bench_ot.trace_files(tmp_path / "missing", None, quick=False)
    with pytest.raises(ConfigError, match=r"no \*\.json\.gz traces in"):
        bench_ot.trace_files(tmp_path, None, quick=False)


def test_cli_reports_a_missing_traces_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    status = cli.main(["bench", "ot", "--traces-dir", str(tmp_path / "missing"), "--no-node"])
    assert status == 2
    assert "does not exist; pass --traces-dir" in capsys.readouterr().err


def test_run_replays_through_every_python_engine(tmp_path: Path) -> None:
    write_trace(tmp_path, "tiny")
    report = bench_ot.run(options(tmp_path, batch=2))
    assert [r["engine"] for r in report.rows] == [
        "mailslot TextBuffer",
        "mailslot DocumentActor + SQLite",
        "mailslot apply(str)",
        "mailslot compose x2 + apply",
    ]
    assert all(r["final ok"] == "yes" and r["ops"] == 4 for r in report.rows)
    assert all(r["vs node"] is None for r in report.rows)
    assert "mailslot bench ot" in report.render()


def test_run_flags_a_wrong_final_text(tmp_path: Path) -> None:
    write_trace(tmp_path, "tiny", end="something else")
    report = bench_ot.run(options(tmp_path))
    assert {r["final ok"] for r in report.rows} == {"NO"}
    assert "mailslot TextBuffer ended tiny with the wrong text" in report.notes


def test_run_refuses_a_bad_batch(tmp_path: Path) -> None:
    write_trace(tmp_path, "tiny")
    with pytest.raises(ConfigError, match="--batch must be >= 1, got 0"):
        bench_ot.run(options(tmp_path, batch=0))


def test_node_row_replays_the_same_trace(tmp_path: Path) -> None:
    if shutil.which("node") is None or not (REPO / "js" / "node_modules").is_dir():
        reason = "node or js/node_modules is missing (make js/node_modules)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    write_trace(tmp_path, "tiny")
    report = bench_ot.run(options(tmp_path, no_node=False))
    node = report.rows[-1]
    assert node["engine"] == "ot-text-unicode (node)"
    assert node["ops"] == 4
    assert node["final ok"] == "yes"
    assert node["vs node"] == pytest.approx(1.0)
    assert report.meta["ot-text-unicode (node): ot-text-unicode"].startswith("4.")
