"""``mailslot lockprof``: run a Python program with the lock profiler installed.

::

    mailslot lockprof [--json] [--watchdog SECONDS] [--top N] [--no-order] [-o FILE] \\
        -- [python] app.py args...
    mailslot lockprof ... -- [python] -m package.module args...

The program runs in this process (``runpy``, as ``python app.py`` would: ``__name__`` is
``"__main__"``, ``sys.argv`` and ``sys.path[0]`` are set), with a :class:`LockProfiler` installed
before its first line. When it ends (returns, exits, or raises) its non-daemon threads are joined,
as the interpreter would, and the report is printed: a ranked table, or one JSON object with
``--json``.
Potential deadlocks and watchdog stall dumps also go to stderr as they are found, since a program
that deadlocks never reaches the end. The exit status is the program's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import sys
import threading
import traceback
from typing import Any, Literal

import msgspec

from mailslot.errors import ConfigError
from mailslot.migrate.locks import LockProfiler
from mailslot.migrate.lockstats import Inversion, LockReport

__all__ = ["Target", "add_cli", "parse_target", "run_cli", "run_target"]

_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?(\.exe)?$")


class Target(msgspec.Struct, frozen=True):
    """What to run: a script path or a module name, and its arguments."""

    kind: Literal["path", "module"]
    name: str
    args: tuple[str, ...] = ()


def parse_target(argv: list[str]) -> Target:
    """The program to run from what follows ``--`` (pure apart from checking the script exists).

    Raises:
        ConfigError: no program, an interpreter option other than ``-m``, ``-m`` without a module,
            or a script that does not exist.
    """
    rest = list(argv)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if rest and _PYTHON.match(os.path.basename(rest[0])):
        rest = rest[1:]
    if not rest:
        raise ConfigError("no program to run: mailslot lockprof -- [python] app.py args...")
    first = rest[0]
    if first == "-m":
        if len(rest) < 2 or not rest[1] or rest[1].startswith("-"):
            raise ConfigError("-m needs a module name: mailslot lockprof -- -m package.module")
        return Target("module", rest[1], tuple(rest[2:]))
    if first.startswith("-"):
        raise ConfigError(f"unsupported interpreter option {first!r}: only -m is understood")
    if not os.path.isfile(first):
        raise ConfigError(f"no such script: {first!r}")
    return Target("path", first, tuple(rest[1:]))


def add_cli(subparsers: Any) -> None:
    """Register ``mailslot lockprof`` on the ``mailslot`` command's subparsers."""
    parser = subparsers.add_parser(
        "lockprof",
        help="run a Python program under the lock profiler and lock-order checker",
        description="Run a Python program with its threading locks profiled: hottest locks, "
        "lock-order inversions (potential deadlocks), and stalls.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--watchdog",
        type=float,
        metavar="SECONDS",
        help="dump who holds and who waits for a lock when threads stay blocked this long",
    )
    parser.add_argument("--top", type=int, default=20, help="lock classes in the table (20)")
    parser.add_argument("--no-order", action="store_true", help="skip the lock-order checks")
    parser.add_argument(
        "--hold-sample",
        type=int,
        default=1,
        metavar="N",
        help="time the hold of one acquisition in N (a power of two; default 1, all)",
    )
    parser.add_argument("-o", "--output", help="write the report to this file, not stdout")
    parser.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        help="-- [python] script.py args... | -- [python] -m module args...",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run ``mailslot lockprof``; the exit status is the program's.

    Raises:
        ConfigError: bad options or no program (the CLI prints it and exits 2).
    """
    target = parse_target(args.program)
    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, not {args.top}")
    profiler = LockProfiler(
        order_checks=not args.no_order,
        hold_sample=args.hold_sample,
        watchdog=args.watchdog,
        stall_stream=sys.stderr,
        on_inversion=_announce,
    )
    status = 1
    try:
        status = run_target(target, profiler)
    finally:
        _write(profiler.report(), args)
    return status


def run_target(target: Target, profiler: LockProfiler) -> int:
    """Run ``target`` in this process under ``profiler``; answer its exit status.

    The profiler is installed for the run and uninstalled after the program's non-daemon threads
    have ended. An exception from the program is printed (as the interpreter would) and gives
    status 1; ``KeyboardInterrupt`` propagates after the clean-up.
    """
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    profiler.install()
    try:
        sys.argv = [target.name, *target.args]
        if target.kind == "path":
            sys.path.insert(0, os.path.dirname(os.path.abspath(target.name)))
            runpy.run_path(target.name, run_name="__main__")
        else:
            sys.path.insert(0, os.getcwd())
            runpy.run_module(target.name, run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        try:
            _join_threads()
        finally:
            profiler.uninstall()
    return status


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _join_threads() -> None:
    """Wait for the program's non-daemon threads, as the interpreter does at exit."""
    me = threading.current_thread()
    while True:
        alive = [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
        if not alive:
            return
        for thread in alive:
            thread.join()


def _announce(inversion: Inversion) -> None:
    print(
        "lockprof: potential deadlock: " + " -> ".join([*inversion.classes, inversion.classes[0]]),
        file=sys.stderr,
        flush=True,
    )


def _write(report: LockReport, args: argparse.Namespace) -> None:
    text = json.dumps(report.to_builtins(), indent=2) if args.json else report.render(top=args.top)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    else:
        print(text, flush=True)
