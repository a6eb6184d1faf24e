"""``mailslot bench locks``: what the lock profiler costs a threaded program.

Each workload of :mod:`mailslot.migrate.workloads` (``churn``: pure lock churn; ``io``: a socket
round trip under two locks; ``queue``: producers and consumers through ``queue.Queue``; ``single``:
one uncontended ``with lock: pass``) runs uninstrumented and under
:class:`~mailslot.migrate.locks.LockProfiler` in each mode of
:data:`~mailslot.migrate.workloads.MODES` (statistics only; statistics and lock-order checks; the
same with hold times sampled one in 16), interleaved over several rounds in the same run. Each row
gives the median and best time and their ratios to the uninstrumented run's median and best.

Targets from the issue, with order checks on: at most 1.5x on ``io``, at most 2.5x on ``churn``.
Contended churn under the GIL is bimodal (whether a lock convoy forms in a run changes the time
several-fold, with or without the profiler), hence medians, several rounds, and long enough runs;
the ``best ratio`` column compares the luckiest runs, and ``single`` shows the uncontended cost.
"""

from __future__ import annotations

import argparse
from statistics import median

from mailslot.bench import Report
from mailslot.errors import ConfigError
from mailslot.migrate.workloads import MODES, WORKLOADS, acquisitions_per_run, time_workload

__all__ = ["TARGETS", "add_arguments", "run"]

TARGETS = {"churn": 2.5, "io": 1.5}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=4, help="threads per workload (4)")
    parser.add_argument("--iterations", type=int, help="lock rounds per thread")
    parser.add_argument("--rounds", type=int, help="interleaved repetitions; the best is kept")
    parser.add_argument(
        "--workload", action="append", choices=sorted(WORKLOADS), help="repeatable; default all"
    )


def run(args: argparse.Namespace) -> Report:
    threads = args.threads
    iterations = args.iterations
    if iterations is None:
        iterations = 10_000 if args.quick else 40_000
    rounds = args.rounds
    if rounds is None:
        rounds = 3 if args.quick else 5
    if threads < 1 or iterations < 1 or rounds < 1:
        raise ConfigError("--threads, --iterations and --rounds must be positive")
    names = args.workload or list(WORKLOADS)
    report = Report(
        suite="locks",
        columns=[
            "workload",
            "mode",
            "median s",
            "best s",
            "acq/s",
            "ratio",
            "best ratio",
            "target",
        ],
        meta={"threads": threads, "iterations": iterations, "rounds": rounds},
    )
    for name in names:
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(rounds):
            for mode in MODES:
                times[mode].append(
                    time_workload(name, mode, threads=threads, iterations=iterations)
                )
        base, base_best = median(times["raw"]), min(times["raw"])
        acquisitions = acquisitions_per_run(name, threads, iterations)
        for mode in MODES:
            mid, best = median(times[mode]), min(times[mode])
            target = TARGETS.get(name) if mode.startswith("stats+order") else None
            report.add(
                workload=name,
                mode=mode,
                **{
                    "median s": mid,
                    "best s": best,
                    "acq/s": acquisitions / mid if acquisitions else None,
                    "ratio": mid / base,
                    "best ratio": best / base_best,
                    "target": f"<= {target}x" if target else "",
                },
            )
    report.notes.append(
        "ratio = median time / median uninstrumented time in the same run (best ratio: best / "
        "best); stats = counters, wait and hold times; +order = lock-order checks too; hold/16 = "
        "hold time measured on one acquisition in 16"
    )
    return report
