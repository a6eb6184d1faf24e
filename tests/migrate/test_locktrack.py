"""The tracked locks' two cores: C (``mailslot.migrate._locktrack``) and pure Python.

The lock suites run in this process against the core in use (C when it was built) and, below, in
a child process against the pure-Python core, so both keep the same behaviour.
"""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
from tests.twins import assert_pure_twin_passes, require_c_core

from mailslot.migrate import locks
from mailslot.migrate.locks import LockProfiler


def test_the_c_core_is_built_where_a_compiler_is() -> None:
    require_c_core(locks.ACCELERATED, "mailslot.migrate._locktrack", "MAILSLOT_PURE_LOCKS")
    from mailslot.migrate import _locktrack

    assert locks._Tracked.__mro__[1] is _locktrack.TrackedCore


def test_arguments_and_errors_are_those_of_the_real_lock() -> None:
    with LockProfiler():
        lock = threading.Lock()
    assert lock.acquire(blocking=False)
    assert not lock.acquire(False)
    assert not lock.acquire(blocking=True, timeout=0.001)
    with pytest.raises(TypeError, match="keyword"):
        lock.acquire(wait=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        lock.acquire(True, 1.0, 3)  # type: ignore[call-arg]
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(blocking=False, timeout=1)
    with pytest.raises(TypeError):
        lock.acquire(timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        lock.__exit__(None, None, None)  # the with statement's release, of a free lock


def test_locks_released_out_of_order_or_by_another_thread_leave_nothing_held() -> None:
    with LockProfiler() as prof:
        a, b = threading.Lock(), threading.Lock()  # one class: both made on this line
    a.acquire()
    b.acquire()
    a.release()  # not the last taken
    assert locks._held() == [b]
    done = threading.Event()

    def other() -> None:
        b.release()  # a plain Lock may be released by any thread
        done.set()

    threading.Thread(target=other).start()
    assert done.wait(10)
    assert locks._held() == []
    assert [c.acquisitions for c in prof.report().classes] == [2]


def test_a_tracked_lock_is_weakly_referable_and_collected() -> None:
    with LockProfiler():
        lock = threading.Lock()
    ref = weakref.ref(lock)
    with lock:
        pass
    del lock
    gc.collect()
    assert ref() is None


def test_the_pure_python_core_passes_the_lock_suites() -> None:
    assert_pure_twin_passes(
        "MAILSLOT_PURE_LOCKS",
        "mailslot.migrate.locks:ACCELERATED",
        ["tests/migrate/test_locks.py", "tests/migrate/test_lockprof.py"],
    )
