"""The lock profiler on real threads, sequenced by events and joins (never by sleeping)."""

from __future__ import annotations

import _thread
import os
import queue
import threading
from collections.abc import Callable, Iterator

import pytest

from mailslot.errors import ConfigError
from mailslot.migrate.locks import LockProfiler, active_profiler, profile_call
from mailslot.migrate.lockstats import Inversion, Stall

# The one real timeout these tests have: how long a wait on an event may take before the test
# fails instead of hanging. Nothing waits this long when the code is right.
TIMEOUT = 10.0 * float(os.environ.get("MAILSLOT_TEST_TIMEOUT_SCALE", "1"))


def run_thread(target: Callable[[], object], name: str | None = None) -> None:
    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


@pytest.fixture
def prof() -> Iterator[LockProfiler]:
    profiler = LockProfiler()
    with profiler:
        yield profiler


def here(fragment: str) -> str:
    """A class-name fragment for a lock created in this file at a line containing ``fragment``."""
    with open(__file__, encoding="utf-8") as src:
        for number, line in enumerate(src, 1):
            if fragment in line and "here(" not in line:
                return f"test_locks.py:{number} "
    raise AssertionError(fragment)


# -- lock order ------------------------------------------------------------------------------


def test_planted_inversion_is_found_in_a_run_that_never_deadlocks(prof: LockProfiler) -> None:
    seen: list[Inversion] = []
    prof._on_inversion = seen.append
    lock_a = threading.Lock()  # class A
    lock_b = threading.Lock()  # class B

    def a_then_b() -> None:
        with lock_a, lock_b:
            pass

    def b_then_a() -> None:
        with lock_b, lock_a:
            pass

    run_thread(a_then_b, "first")  # finishes before the second starts: no deadlock is possible
    run_thread(b_then_a, "second")

    report = prof.report()
    assert len(report.inversions) == 1
    inversion = report.inversions[0]
    assert seen == [inversion]
    assert not inversion.same_class
    name_a, name_b = here("# class A"), here("# class B")
    assert [name_b in c for c in inversion.classes] == [True, False]
    assert [name_a in c for c in inversion.classes] == [False, True]
    closing, earlier = inversion.edges
    assert (name_b in closing.before, name_a in closing.after) == (True, True)
    assert closing.thread.startswith("second")
    assert closing.stack[-1].func.endswith("b_then_a")
    assert earlier.thread.startswith("first")
    assert earlier.stack[-1].func.endswith("a_then_b")
    assert "POTENTIAL DEADLOCK" in inversion.describe()
    assert "b_then_a" in report.render()


def test_a_consistent_order_is_not_reported(prof: LockProfiler) -> None:
    outer = threading.Lock()
    middle = threading.RLock()
    inner = threading.Lock()
    start = threading.Barrier(3)

    def worker() -> None:
        start.wait(TIMEOUT)
        for _ in range(200):
            with outer, middle, inner:
                pass
            with middle, inner:
                pass

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    report = prof.report()
    assert report.inversions == ()
    assert prof._graph.has_edge(outer._cls, middle._cls)  # type: ignore[attr-defined]
    assert report.find(here("outer = threading.Lock()")).acquisitions == 600


def test_a_cycle_through_three_classes_names_all_three_edges(prof: LockProfiler) -> None:
    x = threading.Lock()  # class X
    y = threading.Lock()  # class Y
    z = threading.Lock()  # class Z
    for first, second in ((x, y), (y, z), (z, x)):
        with first, second:
            pass
    (inversion,) = prof.report().inversions
    assert len(inversion.edges) == 3
    assert here("# class Z") in inversion.edges[0].before
    assert here("# class X") in inversion.edges[0].after
    # each edge starts where the previous one ended
    for edge, nxt in zip(inversion.edges, [*inversion.edges[1:], inversion.edges[0]], strict=True):
        assert edge.after == nxt.before


def test_nesting_instances_of_one_class_in_a_fixed_order_is_not_reported(
    prof: LockProfiler,
) -> None:
    docs = [threading.Lock() for _ in range(4)]  # one class: per-document locks

    def lock_pair(i: int, j: int) -> None:
        first, second = sorted((i, j))
        with docs[first], docs[second]:
            pass

    for i, j in ((0, 1), (1, 0), (2, 3), (3, 1), (0, 3)):
        run_thread(lambda i=i, j=j: lock_pair(i, j))  # type: ignore[misc]
    assert prof.report().inversions == ()


def test_instances_of_one_class_taken_in_both_orders_are_reported(prof: LockProfiler) -> None:
    accounts = [threading.Lock() for _ in range(2)]

    def transfer(src: int, dst: int) -> None:
        with accounts[src], accounts[dst]:
            pass

    run_thread(lambda: transfer(0, 1))
    run_thread(lambda: transfer(1, 0))
    (inversion,) = prof.report().inversions
    assert inversion.same_class
    assert [c[-2:] for c in inversion.classes] == ["#2", "#1"]


def test_asking_again_for_a_held_plain_lock_is_reported(prof: LockProfiler) -> None:
    lock = threading.Lock()
    with lock:
        assert lock.acquire(True, 0) is False  # would deadlock without the timeout
    (inversion,) = prof.report().inversions
    assert inversion.same_class
    assert len(inversion.edges) == 1
    assert prof.report().classes[0].failed == 1


def test_a_non_blocking_acquire_adds_no_edge_into_the_lock_it_takes(prof: LockProfiler) -> None:
    first = threading.Lock()
    tried = threading.Lock()
    after = threading.Lock()
    with first:
        assert tried.acquire(False)
        with after:  # tried is held: tried -> after is recorded
            pass
        tried.release()
    with tried, first:  # tried -> first: no cycle, since first -> tried was a try
        pass
    assert prof.report().inversions == ()
    assert not prof._graph.has_edge(first._cls, tried._cls)  # type: ignore[attr-defined]
    assert prof._graph.has_edge(tried._cls, after._cls)  # type: ignore[attr-defined]


def test_order_checks_can_be_switched_off() -> None:
    with LockProfiler(order_checks=False) as prof:
        p, q = threading.Lock(), threading.Lock()
        with p, q:
            pass
        with q, p:
            pass
    report = prof.report()
    assert report.inversions == ()
    assert not report.order_checks
    assert report.classes[0].acquisitions == 4


# -- RLock and the primitives built on locks ---------------------------------------------------


def test_rlock_reentry_is_one_acquisition_and_checks_no_order(prof: LockProfiler) -> None:
    rlock = threading.RLock()
    other = threading.Lock()
    with rlock, other, rlock, rlock:  # re-entry while holding other is not other -> rlock
        assert rlock._recursion_count() == 3  # type: ignore[attr-defined]
    assert not rlock._is_owned()  # type: ignore[attr-defined]
    report = prof.report()
    assert report.inversions == ()
    assert report.find(here("rlock = threading.RLock()")).acquisitions == 1
    with rlock:
        failures: list[BaseException] = []

        def release_from_elsewhere() -> None:
            try:
                rlock.release()
            except RuntimeError as exc:
                failures.append(exc)

        run_thread(release_from_elsewhere)
        assert len(failures) == 1
    assert rlock.acquire(blocking=False)
    rlock.release()


def test_condition_waits_release_and_restore_the_lock(prof: LockProfiler) -> None:
    cond = threading.Condition()  # over a tracked RLock
    items: list[int] = []
    waiting = threading.Event()
    levels: list[int] = []

    def consumer() -> None:
        with cond, cond:  # recursion level 2 while waiting
            waiting.set()
            assert cond.wait_for(lambda: items, TIMEOUT)
            levels.append(cond._lock._recursion_count())  # type: ignore[attr-defined]

    thread = threading.Thread(target=consumer)
    thread.start()
    assert waiting.wait(TIMEOUT)
    with cond:  # only possible because wait() released both levels
        items.append(1)
        cond.notify()
    thread.join(TIMEOUT)
    assert levels == [2]
    stats = prof.report().find(here("cond = threading.Condition()"))
    assert stats.kind == "Condition"
    assert stats.acquisitions == 3  # consumer, producer, consumer again after the wait
    assert prof.report().inversions == ()


def test_condition_over_a_plain_lock(prof: LockProfiler) -> None:
    lock = threading.Lock()  # under the condition
    cond = threading.Condition(lock)
    ready = threading.Event()
    done: list[bool] = []

    def waiter() -> None:
        with cond:
            ready.set()
            done.append(cond.wait(TIMEOUT))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert ready.wait(TIMEOUT)
    with cond:
        cond.notify_all()
    thread.join(TIMEOUT)
    assert done == [True]
    with pytest.raises(RuntimeError):
        cond.notify()  # not held: the real error, as without the profiler
    assert prof.report().find(here("# under the condition")).acquisitions == 3


def test_stdlib_primitives_work_and_are_classed_by_their_creator(prof: LockProfiler) -> None:
    sem = threading.BoundedSemaphore(2)
    event = threading.Event()
    barrier = threading.Barrier(2)
    jobs: queue.Queue[int] = queue.Queue(maxsize=1)
    got: list[int] = []

    def worker() -> None:
        barrier.wait(TIMEOUT)
        with sem:
            got.append(jobs.get(timeout=TIMEOUT))
        event.set()

    thread = threading.Thread(target=worker)
    thread.start()
    jobs.put(7)
    barrier.wait(TIMEOUT)
    assert event.wait(TIMEOUT)
    thread.join(TIMEOUT)
    assert got == [7]
    kinds = {c.kind for c in prof.report().classes}
    assert {"BoundedSemaphore", "Event", "Barrier", "Queue"} <= kinds
    assert prof.report().inversions == ()


# -- hottest locks ---------------------------------------------------------------------------


def legacy_like_engine(workers: int, rounds: int) -> tuple[object, object]:
    """A small mutex-based engine: one global lock every worker needs, per-worker cold locks.

    The main thread holds the global lock until every worker is blocked on it, so each worker
    waits at least once whatever the scheduler does.
    """
    hot = threading.Lock()  # the engine's global lock
    cold = [threading.Lock() for _ in range(workers)]
    state: dict[int, int] = {}
    prof = active_profiler()
    assert prof is not None

    def worker(i: int) -> None:
        for _ in range(rounds):
            with cold[i]:
                state[i] = state.get(i, 0) + 1
        with hot:
            state[-1] = state.get(-1, 0) + 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    with hot:
        for t in threads:
            t.start()
        assert prof.wait_blocked(workers, timeout=TIMEOUT)
    for t in threads:
        t.join(TIMEOUT)
    assert state[-1] == workers
    return hot, cold[0]


def test_the_hottest_lock_is_ranked_first() -> None:
    (hot, cold), report = profile_call(legacy_like_engine, 3, 50)
    top = report.hottest(1)[0]
    assert top.name == hot._cls.name  # type: ignore[attr-defined]
    assert top.contended == 3
    assert top.acquisitions == 4
    assert top.wait_total_ns > 0
    assert top.wait_max_ns >= top.wait_p99_ns > 0
    assert top.top_wait_sites[0].waits == 3
    assert "in legacy_like_engine.<locals>.worker" in top.top_wait_sites[0].site
    cold_stats = report.find(cold._cls.name)  # type: ignore[attr-defined]
    assert cold_stats.acquisitions == 150
    assert cold_stats.contended == 0
    assert report.classes.index(cold_stats) > 0
    assert "waits on" in report.render(top=3)


# -- watchdog --------------------------------------------------------------------------------


def test_a_stall_dump_names_holder_and_waiters(prof: LockProfiler) -> None:
    lock = threading.Lock()
    lock.acquire()

    def stuck() -> None:
        with lock:
            pass

    threads = [threading.Thread(target=stuck, name=f"waiter-{i}") for i in range(2)]
    for t in threads:
        t.start()
    assert prof.wait_blocked(2, timeout=TIMEOUT)
    stalls = prof.check_stalls(threshold=0.0)
    assert prof.check_stalls(threshold=0.0) == []  # each wait is reported once
    lock.release()
    for t in threads:
        t.join(TIMEOUT)
    (stall,) = stalls
    assert stall.holder is not None
    assert stall.holder.thread.startswith("MainThread")
    assert stall.holder.stack[-1].func.endswith("test_a_stall_dump_names_holder_and_waiters")
    assert sorted(w.thread.split()[0] for w in stall.waiters) == ["waiter-0", "waiter-1"]
    assert all(w.stack[-1].func.endswith("stuck") for w in stall.waiters)
    assert stall.deadlock == ()
    assert "held by thread MainThread" in stall.describe()
    assert prof.report().stalls == (stall,)


def test_the_watchdog_dumps_a_real_deadlock_and_the_inversion_behind_it() -> None:
    stalls: list[Stall] = []
    dumped = threading.Event()

    def on_stall(stall: Stall) -> None:
        stalls.append(stall)
        if len(stalls) == 2:
            dumped.set()

    with LockProfiler(watchdog=0.01, on_stall=on_stall) as prof:
        a, b = threading.Lock(), threading.Lock()
        both_held = threading.Barrier(2)

        def one() -> None:
            a.acquire()
            both_held.wait(TIMEOUT)
            b.acquire()  # deadlocks until the test releases a for it
            b.release()

        def two() -> None:
            b.acquire()
            both_held.wait(TIMEOUT)
            a.acquire()
            a.release()
            b.release()

        threads = [threading.Thread(target=f, name=f.__name__) for f in (one, two)]
        for t in threads:
            t.start()
        assert prof.wait_blocked(2, timeout=TIMEOUT)
        assert dumped.wait(TIMEOUT)
        a.release()  # a plain Lock may be released by any thread: this breaks the deadlock
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads)
    assert all(sorted(n.split()[0] for n in s.deadlock) == ["one", "two"] for s in stalls)
    assert "DEADLOCK" in stalls[0].describe()
    assert len(prof.report().inversions) == 1


# -- installing, fidelity ----------------------------------------------------------------------


def test_install_patches_and_uninstall_restores() -> None:
    before = threading.Lock, threading.RLock
    early = threading.Lock()
    prof = LockProfiler()
    prof.install()
    try:
        assert prof.installed
        assert active_profiler() is prof
        with pytest.raises(ConfigError, match="already installed"):
            LockProfiler().install()
        tracked = threading.Lock()
        with early, tracked:
            pass
        threading.Thread(target=lambda: None).start()  # a Thread's own locks are not tracked
    finally:
        prof.uninstall()
    assert (threading.Lock, threading.RLock) == before
    assert active_profiler() is None
    assert isinstance(threading.Lock(), _thread.LockType)
    with tracked:  # still works, still counts
        pass
    (stats,) = prof.report().classes
    assert stats.acquisitions == 2
    assert stats.instances == 1


def test_errors_are_the_real_ones(prof: LockProfiler) -> None:
    lock, rlock = threading.Lock(), threading.RLock()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(RuntimeError):
        rlock.release()
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(False, 1.0)
    with pytest.raises(ValueError, match="must be positive"):
        lock.acquire(True, -2)
    assert lock.acquire(timeout=1.0)
    assert lock.locked()
    lock.release()
    assert "tracked" in repr(lock)


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="watchdog"):
        LockProfiler(watchdog=0)
    with pytest.raises(ConfigError, match="power of two"):
        LockProfiler(hold_sample=3)
    with pytest.raises(ConfigError, match="threshold"):
        LockProfiler().check_stalls()


def test_hold_sampling_times_one_acquisition_in_n() -> None:
    with LockProfiler(hold_sample=4) as prof:
        lock = threading.Lock()
        for _ in range(40):
            with lock:
                pass
    (stats,) = prof.report().classes
    assert stats.acquisitions == 40
    assert stats.hold_samples == 10


def test_a_timed_out_wait_counts_as_failed_and_waited(prof: LockProfiler) -> None:
    lock = threading.Lock()
    results: list[bool] = []
    with lock:
        run_thread(lambda: results.append(lock.acquire(timeout=0.01)))
    assert results == [False]
    (stats,) = prof.report().classes
    assert (stats.acquisitions, stats.contended, stats.failed) == (1, 0, 1)
    assert stats.wait_total_ns >= 10_000_000


def test_a_thread_pool_runs_under_the_profiler(prof: LockProfiler) -> None:
    from concurrent.futures import ThreadPoolExecutor

    guard = threading.Lock()
    total: list[int] = []

    def job(n: int) -> int:
        with guard:
            total.append(n)
        return n * n

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(job, range(10))) == [n * n for n in range(10)]
    report = prof.report()
    assert sorted(total) == list(range(10))
    assert report.inversions == ()
    # the futures map() makes are classed by the map() call: kind "Executor"
    assert {"ThreadPoolExecutor", "Executor"} <= {c.kind for c in report.classes}
    assert report.find(here("guard = threading.Lock()")).acquisitions == 10
