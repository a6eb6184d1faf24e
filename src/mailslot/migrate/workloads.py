"""Threaded lock workloads that measure what the lock profiler costs.

``mailslot bench locks`` runs these; they live here because only ``migrate/`` (and ``legacy/``) may
use locks. Each workload builder takes ``(threads, iterations)``, creates its locks when called (so
that a profiler installed before the call tracks them) and answers a function that runs it once.
The threads share locks taken in one consistent order, so a profiler must find nothing in them.

- ``churn``: pure lock churn. Each thread loops taking a shared lock and, inside it, a second
  shared lock, and bumps a counter: almost nothing but lock operations.
- ``io``: I/O under a lock. Each thread loops taking a shared lock and, inside it, a per-thread
  lock, and does a one-byte round trip over its own socket pair while holding them.
- ``queue``: producers and consumers through a bounded ``queue.Queue`` (a Lock and three
  Conditions inside): the locks a stdlib container takes for the program.
- ``single``: one thread, one uncontended ``with lock: pass``: the raw cost per acquisition.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from mailslot.migrate.locks import LockProfiler

__all__ = ["MODES", "WORKLOADS", "acquisitions_per_run", "time_workload"]

MODES: dict[str, dict[str, Any] | None] = {
    "raw": None,
    "stats": {"order_checks": False},
    "stats+order": {"order_checks": True},
    "stats+order hold/16": {"order_checks": True, "hold_sample": 16},
}
"""Each mode: the LockProfiler options, or None for the uninstrumented run."""


def _churn(threads: int, iterations: int) -> Callable[[], None]:
    outer = threading.Lock()
    inner = threading.Lock()
    counts = [0] * threads

    def work(i: int) -> None:
        for _ in range(iterations):
            with outer, inner:
                counts[i] += 1

    return _threaded(threads, work)


def _io(threads: int, iterations: int) -> Callable[[], None]:
    shared = threading.Lock()
    own = [threading.Lock() for _ in range(threads)]
    pairs = [socket.socketpair() for _ in range(threads)]

    def work(i: int) -> None:
        a, b = pairs[i]
        mine = own[i]
        for _ in range(iterations):
            with shared, mine:
                a.send(b"x")
                b.recv(1)

    run = _threaded(threads, work)

    def go() -> None:
        try:
            run()
        finally:
            for a, b in pairs:
                a.close()
                b.close()

    return go


def _queue(threads: int, iterations: int) -> Callable[[], None]:
    q: queue.Queue[int] = queue.Queue(maxsize=64)
    producers = max(1, threads // 2)

    def work(i: int) -> None:
        if i < producers:
            for n in range(iterations):
                q.put(n)
        else:
            for _ in range(iterations * producers // (threads - producers)):
                q.get()

    return _threaded(max(2, threads), work)


def _single(threads: int, iterations: int) -> Callable[[], None]:
    lock = threading.Lock()

    def go() -> None:
        for _ in range(iterations * threads):
            with lock:
                pass

    return go


def _threaded(threads: int, work: Callable[[int], None]) -> Callable[[], None]:
    def go() -> None:
        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    return go


WORKLOADS: dict[str, Callable[[int, int], Callable[[], None]]] = {
    "churn": _churn,
    "io": _io,
    "queue": _queue,
    "single": _single,
}


def time_workload(name: str, mode: str, *, threads: int, iterations: int) -> float:
    """Seconds one run of workload ``name`` takes in ``mode`` (one of :data:`MODES`)."""
    make = WORKLOADS[name]
    options = MODES[mode]
    if options is None:
        go = make(threads, iterations)
        start = time.perf_counter()
        go()
        return time.perf_counter() - start
    with LockProfiler(**options) as prof:
        go = make(threads, iterations)
        start = time.perf_counter()
        go()
        elapsed = time.perf_counter() - start
    report = prof.report()
    if report.inversions:  # the workloads are consistent: an inversion here is a profiler bug
        raise AssertionError(report.inversions[0].describe())
    return elapsed


def acquisitions_per_run(name: str, threads: int, iterations: int) -> int:
    """Program-level lock acquisitions in one run (0 when a stdlib container decides)."""
    per_round = {"churn": 2, "io": 2, "single": 1}.get(name, 0)
    return per_round * threads * iterations
