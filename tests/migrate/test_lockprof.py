"""``mailslot lockprof``: runs a program in-process under the profiler and reports."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from mailslot import cli
from mailslot.errors import ConfigError
from mailslot.migrate.lockprof import Target, parse_target
from mailslot.migrate.locks import active_profiler

INVERTED = """
    import sys
    import threading

    first = threading.Lock()
    second = threading.Lock()

    def forwards():
        with first, second:
            pass

    def backwards():
        with second, first:
            pass

    for step in (forwards, backwards):
        t = threading.Thread(target=step)
        t.start()
        t.join()
    print("args:", sys.argv[1:], __name__)
"""


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_a_planted_inversion_is_reported_as_json_and_the_exit_status_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = write(tmp_path, "app.py", INVERTED + "    sys.exit(3)\n")
    argv_before = sys.argv[:]
    status = cli.main(["lockprof", "--json", "--", "python3", str(script), "--x", "y"])
    out, err = capsys.readouterr()
    assert status == 3
    assert sys.argv == argv_before
    assert active_profiler() is None
    assert "args: ['--x', 'y'] __main__" in out
    report = json.loads(out[out.index("{") :])
    ours = [c for c in report["classes"] if "app.py" in c["name"]]
    assert len(ours) == 2
    assert all(c["acquisitions"] == 2 for c in ours)
    (inversion,) = report["inversions"]
    assert inversion["edges"][0]["stack"][-1]["func"] == "backwards"
    assert "lockprof: potential deadlock" in err


def test_the_report_is_printed_when_the_program_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = write(
        tmp_path,
        "boom.py",
        """
        import threading
        lock = threading.RLock()
        with lock:
            raise RuntimeError("boom")
        """,
    )
    assert cli.main(["lockprof", "--top", "1", "--", str(script)]) == 1
    out, err = capsys.readouterr()
    assert "RuntimeError: boom" in err
    assert "boom.py:3 in <module> (RLock)" in out
    assert out.startswith("lockprof: ")


def test_a_module_runs_with_dash_m_and_threads_are_joined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path,
        "lockprof_demo_mod.py",
        """
        import threading
        lock = threading.Lock()
        go = threading.Event()
        def late():
            go.wait()
            with lock:
                print("late thread ran")
        threading.Thread(target=late).start()
        go.set()
        """,
    )
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "report.txt"
    status = cli.main(
        ["lockprof", "-o", str(output), "--no-order", "--", "-m", "lockprof_demo_mod"]
    )
    assert status == 0
    assert "late thread ran" in capsys.readouterr().out
    text = output.read_text()
    assert "lockprof_demo_mod.py:3 in <module> (Lock)" in text
    assert "lock-order checks were off" in text
    assert threading.active_count() == 1
    sys.modules.pop("lockprof_demo_mod", None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lockprof"], "no program to run"),
        (["lockprof", "--", "python"], "no program to run"),
        (["lockprof", "--", "-m"], "-m needs a module name"),
        (["lockprof", "--", "-X", "dev", "app.py"], "unsupported interpreter option '-X'"),
        (["lockprof", "--", "/no/such/app.py"], "no such script"),
        (["lockprof", "--top", "0", "--", __file__], "--top must be at least 1"),
        (["lockprof", "--watchdog", "-1", "--", __file__], "watchdog must be a positive"),
        (["lockprof", "--hold-sample", "3", "--", __file__], "power of two"),
    ],
)
def test_bad_arguments_are_named_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mailslot lockprof: error: ")
    assert message in err
    assert active_profiler() is None


def test_parse_target_forms(tmp_path: Path) -> None:
    script = write(tmp_path, "a.py", "")
    assert parse_target(["--", "python3.11", str(script), "-v"]) == Target(
        "path", str(script), ("-v",)
    )
    assert parse_target([str(script)]) == Target("path", str(script))
    assert parse_target(["/usr/bin/python", "-m", "pkg.mod", "x"]) == Target(
        "module", "pkg.mod", ("x",)
    )
    with pytest.raises(ConfigError):
        parse_target(["--"])
