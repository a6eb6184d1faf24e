"""Lock profiler and lock-order checker for programs built on ``threading`` locks.

Theory of operation
-------------------
:meth:`LockProfiler.install` replaces ``threading.Lock`` and ``threading.RLock`` with factories that
return tracked wrappers around the real ``_thread`` locks. ``threading.Condition``,
``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Barrier``, ``queue.Queue`` and
``concurrent.futures`` look these names up when they are constructed, so the locks they build are
tracked too. Only locks created after ``install`` are tracked; :meth:`~LockProfiler.uninstall`
restores the originals (tracked locks keep working and keep counting). Not tracked:
``_thread.allocate_lock`` (Condition's internal waiter locks are signals, not mutexes), names bound
by ``from threading import Lock`` before ``install``, and each ``Thread``'s own start-up event.

A **lock class** is a creation site, as lockdep keys locks by class: the first frame outside
``threading``/``queue``/``concurrent.futures`` (plus, when one of those built the lock, the line
inside it), so every ``Queue()`` created on one line of the program is one class and two locks a
``ThreadPoolExecutor`` makes are two classes.

Hot path (an uncontended acquisition): one non-blocking ``acquire(False)`` on the real lock, an
append to the calling thread's held list (a thread-local), a counter, and a ``perf_counter_ns`` at
acquire and at release for the hold time (or one in ``hold_sample``). With order checks on and
other locks held, one set lookup per held lock. Everything else is a slow path taken rarely: a
contended acquisition (timed, its call site recorded, the thread registered for the watchdog), an
order edge never seen before (the stack is captured and the cycle check runs, see
:class:`~mailslot.migrate.lockstats.OrderGraph`), nesting two locks of one class, a creation.

The hot path runs in C (``_locktrack.c``: a lock class's hot counters and a tracked lock's
acquire and release, calling back into Python for every slow path) when the package was installed
with a C compiler at hand; otherwise in Python (``_PyClassCore``, ``_PyTrackedCore``), its twin,
at 2-3x the cost (``mailslot bench locks``). :data:`ACCELERATED` says which runs;
``MAILSLOT_PURE_LOCKS=1`` forces Python. The thread's held list lives in the thread state dict
(C) or a thread-local (Python); :func:`_held` answers it either way.

Lock order: an edge ``A -> B`` is recorded when a thread asks for ``B`` (blocking or with a timeout)
while holding ``A``; the first edge that closes a cycle is an :class:`Inversion` (a potential
deadlock), reported with the stack of every edge of the cycle, even if the run never deadlocks.
Non-blocking acquisitions add no edge into the lock taken (they cannot wait), as in lockdep.
Same-class nesting (two per-document locks, say) is checked per instance: lockdep would report any
nesting of one class unless annotated with a subclass; we report it only when instances of the class
are taken in an order that closes a cycle (``d1 -> d2`` in one thread, ``d2 -> d1`` in another), and
always when a thread asks again for a plain ``Lock`` it holds (a certain self-deadlock). Cycles that
mix classes are checked at class level, so ``d1 -> X`` and ``X -> d2`` is reported, as lockdep does.

Watchdog: a daemon thread checks every ``threshold/4`` seconds for threads blocked on a tracked lock
past the threshold and dumps, per lock, the holder thread and the waiting threads with their stacks,
and the threads of any wait-for cycle (a real deadlock).

Counters are updated with ``x += 1`` sequences that CPython's GIL does not interrupt (no call
between the load and the store); per-instance values are also updated while holding the lock. On a
free-threaded build the counters would be approximate. One profiler can be installed at a time.
"""

from __future__ import annotations

import _thread
import concurrent.futures._base as _futures_base
import concurrent.futures.thread as _futures_thread
import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable
from time import perf_counter_ns
from types import CodeType, FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from mailslot import _native
from mailslot.errors import ConfigError
from mailslot.migrate.lockstats import (
    HISTOGRAM_SIZE,
    ClassStats,
    Frame,
    Inversion,
    LockReport,
    OrderEdge,
    OrderGraph,
    SiteWait,
    Stall,
    StalledThread,
    bucket_of,
    histogram_percentile,
    wait_for_cycles,
)

__all__ = ["LockProfiler", "active_profiler", "profile_call"]

_allocate_lock = _thread.allocate_lock
_RawRLock = _thread.RLock
_get_ident = _thread.get_ident

# Frames in these files are the machinery, not the program: a lock made by Queue() belongs to the
# line that called Queue().
_TRANSPARENT = frozenset(
    os.path.abspath(m.__file__ or "")
    for m in (threading, queue, _futures_base, _futures_thread, sys.modules[__name__])
)
_THIS_FILE = frozenset({__file__, os.path.abspath(__file__)})
_MAX_STACK = 24
_MAX_WAIT_SITES = 32
_MAX_INVERSIONS = 100
_MAX_STALLS = 100
_MAX_INSTANCE_EDGES = 10_000

_R = TypeVar("_R")
_active: LockProfiler | None = None
_install_guard = _allocate_lock()


def active_profiler() -> LockProfiler | None:
    """The installed profiler, if any."""
    return _active


class _Held(list["_Tracked"]):
    """The locks one thread holds, oldest first; it also names the thread."""

    __slots__ = ("ident",)

    def __init__(self, ident: int) -> None:
        super().__init__()
        self.ident = ident


class _ThreadState(_thread._local):
    def __init__(self) -> None:
        self.held = _Held(_get_ident())


_tls = _ThreadState()


def _py_held() -> _Held:
    held: _Held = _tls.held
    return held


class _PyClassCore:
    """The counters of a lock class that the hot path updates (the pure-Python core)."""

    __slots__ = (
        "acquisitions",
        "after",
        "failed",
        "hold_mask",
        "hold_max",
        "hold_samples",
        "hold_total",
        "order",
        "profiler",
    )

    profiler: LockProfiler
    after: set[_LockClass]
    order: bool
    acquisitions: int
    failed: int
    hold_mask: int
    hold_total: int
    hold_samples: int
    hold_max: int


class _PyTrackedCore:
    """A tracked lock's acquire and release (the pure-Python core; ``_locktrack.c`` is its twin).

    Its only subclass is :class:`_Tracked` (hence the ``type: ignore`` where ``self`` is passed
    on as one)."""

    __slots__ = ("__weakref__", "_cls", "_holder", "_inner", "_next", "_serial", "_t0")

    def __init__(self, cls: _LockClass, inner: Any) -> None:
        self._inner = inner
        self._cls = cls
        self._holder: _Held | None = None
        self._next: set[int] | None = None
        self._serial = 0
        self._t0 = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if timeout != -1:
            _check_timeout(blocking, timeout)
        held: _Held = _tls.held
        cls = self._cls
        if held and blocking and cls.order:
            for h in held:
                hc = h._cls
                if hc is cls:
                    nxt = h._next
                    if nxt is None or self._serial not in nxt:
                        cls.profiler._order_instances(h, self)  # type: ignore[arg-type]
                elif cls not in hc.after:
                    cls.profiler._order(h, self)  # type: ignore[arg-type]
        if not self._inner.acquire(False) and (
            not blocking or not cls.profiler._wait(self, held, timeout)  # type: ignore[arg-type]
        ):
            cls.failed += 1
            return False
        held.append(self)  # type: ignore[arg-type]
        self._holder = held
        cls.acquisitions += 1
        self._t0 = 0 if cls.acquisitions & cls.hold_mask else perf_counter_ns()
        return True

    def release(
        self,
        t: type[BaseException] | None = None,
        v: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        held = self._holder
        if held is None:
            self._inner.release()  # raises the real "release unlocked lock" error
            return
        t0 = self._t0
        dt = perf_counter_ns() - t0 if t0 else 0
        self._holder = None
        self._inner.release()
        # The rest touches only this thread's list and the class counters: done after the
        # release, so the instrumentation does not lengthen the critical section.
        if held and held[-1] is self:
            held.pop()
        else:
            _unlink(self, held)  # type: ignore[arg-type]
        if t0:
            cls = self._cls
            cls.hold_total += dt
            cls.hold_samples += 1
            if dt > cls.hold_max:
                cls.hold_max = dt

    __enter__ = acquire
    __exit__ = release


ACCELERATED = False
"""True when the tracked locks' hot path runs in C (``mailslot.migrate._locktrack``, built when
the package is installed and a C compiler is at hand; ``MAILSLOT_PURE_LOCKS=1`` turns it off)."""

if TYPE_CHECKING:
    _ClassCore = _PyClassCore
    _TrackedCore = _PyTrackedCore
    _held = _py_held
else:
    _ClassCore, _TrackedCore, _held = _PyClassCore, _PyTrackedCore, _py_held
    _locktrack = _native.load("mailslot.migrate._locktrack", "MAILSLOT_PURE_LOCKS")
    if _locktrack is not None:
        _locktrack.configure(_Held)
        _ClassCore, _TrackedCore = _locktrack.ClassCore, _locktrack.TrackedCore
        _held = _locktrack.held
        ACCELERATED = True


def _short(path: str) -> str:
    cwd = os.getcwd() + os.sep
    return path[len(cwd) :] if path.startswith(cwd) else path


def _frame(f: FrameType) -> Frame:
    code = f.f_code
    return Frame(_short(code.co_filename), f.f_lineno, code.co_qualname)


def _stack(f: FrameType | None) -> tuple[Frame, ...]:
    """The stack from ``f`` outwards, innermost last, without our frames or thread start-up."""
    frames: list[FrameType] = []
    while f is not None and len(frames) < _MAX_STACK:
        if f.f_code.co_filename not in _THIS_FILE:
            frames.append(f)
        f = f.f_back
    while frames and frames[-1].f_code.co_filename in _TRANSPARENT:
        frames.pop()  # the outermost machinery: Thread._bootstrap and friends
    return tuple(_frame(f) for f in reversed(frames))


def _site_name(code: CodeType | None, line: int) -> str:
    if code is None:
        return "(other sites)" if line < 0 else "?"
    return f"{_short(code.co_filename)}:{line} in {code.co_qualname}"


def _user_frame(f: FrameType | None) -> FrameType | None:
    while f is not None and f.f_code.co_filename in _TRANSPARENT:
        f = f.f_back
    return f


def _thread_name(ident: int) -> str:
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    name = thread.name if thread is not None else "?"
    return f"{name} ({ident})"


class _LockClass(_ClassCore):
    """Counters of one lock class; the shell's mutable twin of :class:`ClassStats` (those the
    hot path updates are its core's)."""

    __slots__ = (
        "contended",
        "instance_graph",
        "instances",
        "kind",
        "name",
        "sites",
        "wait_hist",
        "wait_max",
        "wait_total",
    )

    def __init__(self, profiler: LockProfiler, name: str, kind: str) -> None:
        self.profiler = profiler
        self.name = name
        self.kind = kind
        self.order = profiler.order_checks
        self.instances = 0
        self.acquisitions = 0
        self.contended = 0
        self.failed = 0
        self.wait_total = 0
        self.wait_max = 0
        self.wait_hist = [0] * HISTOGRAM_SIZE
        self.hold_mask = profiler.hold_sample - 1
        self.hold_total = 0
        self.hold_samples = 0
        self.hold_max = 0
        self.sites: dict[tuple[CodeType | None, int], list[int]] = {}
        self.after: set[_LockClass] = set()
        self.instance_graph: OrderGraph[int] = OrderGraph(max_edges=_MAX_INSTANCE_EDGES)

    def snapshot(self) -> ClassStats:
        sites = sorted(self.sites.items(), key=lambda kv: kv[1][1], reverse=True)[:5]
        top = tuple(SiteWait(_site_name(*site), n, ns) for site, (n, ns) in sites)
        return ClassStats(
            name=self.name,
            kind=self.kind,
            instances=self.instances,
            acquisitions=self.acquisitions,
            contended=self.contended,
            failed=self.failed,
            wait_total_ns=self.wait_total,
            wait_p99_ns=histogram_percentile(self.wait_hist, 99, self.wait_max),
            wait_max_ns=self.wait_max,
            hold_total_ns=self.hold_total,
            hold_max_ns=self.hold_max,
            hold_samples=self.hold_samples,
            top_wait_sites=top,
        )


def _check_timeout(blocking: bool, timeout: float) -> None:
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0:
        raise ValueError("timeout value must be positive")


class _Tracked(_TrackedCore):
    """A tracked ``threading.Lock``; the hot path (acquire, release) is its core's, in C when
    ``mailslot.migrate._locktrack`` was built (see :data:`ACCELERATED`), else in Python.

    ``_holder`` is the held list of the owning thread (``None`` when free) and so names the owner.
    ``_next`` holds the serials of locks of the same class taken while this one was held.
    """

    __slots__ = ()

    def __init__(self, cls: _LockClass, inner: Any) -> None:
        super().__init__(cls, inner)
        cls.instances += 1
        self._serial = cls.instances

    def locked(self) -> bool:
        return bool(self._inner.locked())

    def _is_owned(self) -> bool:
        # What Condition's fallback computes for a plain Lock, without a try-acquire.
        return bool(self._inner.locked())

    def _at_fork_reinit(self) -> None:
        self._inner._at_fork_reinit()
        self._holder = None

    def __repr__(self) -> str:
        return f"<tracked {self._inner!r} #{self._serial} of {self._cls.name}>"


def _unlink(lock: _Tracked, held: _Held) -> None:
    """Release out of LIFO order, or by another thread: find the lock in its holder's list."""
    with contextlib.suppress(ValueError):
        held.remove(lock)


class _TrackedRLock(_Tracked):
    """A tracked ``threading.RLock``: re-entry by the owner is counted once and checks no order."""

    __slots__ = ("_count",)

    def __init__(self, cls: _LockClass, inner: Any) -> None:
        super().__init__(cls, inner)
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._holder is _held():
            self._inner.acquire(blocking, timeout)  # re-entry: never waits
            self._count += 1
            return True
        if _Tracked.acquire(self, blocking, timeout):
            self._count = 1
            return True
        return False

    def release(
        self,
        t: type[BaseException] | None = None,
        v: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        if self._holder is not _held():
            self._inner.release()  # raises the real "cannot release un-acquired lock" error
            return
        if self._count > 1:
            self._count -= 1
            self._inner.release()
            return
        self._count = 0
        _Tracked.release(self)

    __enter__ = acquire
    __exit__ = release

    def locked(self) -> bool:
        raise AttributeError("'_thread.RLock' object has no attribute 'locked'")

    def _is_owned(self) -> bool:
        return self._holder is _held()

    def _recursion_count(self) -> int:
        return self._count if self._holder is _held() else 0

    def _release_save(self) -> int:
        """Condition.wait: release fully, whatever the recursion level; answer the level."""
        if self._holder is not _held():
            raise RuntimeError("cannot release un-acquired lock")
        count = self._count
        for _ in range(count - 1):
            self._inner.release()
        self._count = 0
        _Tracked.release(self)
        return count

    def _acquire_restore(self, count: int) -> None:
        """Condition.wait: take the lock again (a measured acquisition) at the saved level."""
        _Tracked.acquire(self)
        for _ in range(count - 1):
            self._inner.acquire()
        self._count = count

    def _at_fork_reinit(self) -> None:
        super()._at_fork_reinit()
        self._count = 0


def _make_lock() -> Any:
    """Installed as ``threading.Lock``."""
    prof = _active
    inner = _allocate_lock()
    if prof is None:
        return inner
    cls = prof._class_for(sys._getframe(1), "Lock")
    return inner if cls is None else _Tracked(cls, inner)


def _make_rlock(*args: Any, **kwargs: Any) -> Any:
    """Installed as ``threading.RLock``."""
    prof = _active
    inner = _RawRLock(*args, **kwargs)
    if prof is None:
        return inner
    cls = prof._class_for(sys._getframe(1), "RLock")
    return inner if cls is None else _TrackedRLock(cls, inner)


class _Watchdog:
    """A daemon thread that calls :meth:`LockProfiler.check_stalls` until stopped."""

    def __init__(self, profiler: LockProfiler, threshold: float) -> None:
        self._profiler = profiler
        self._interval = min(1.0, max(0.01, threshold / 4))
        self._stop = _allocate_lock()
        self._stop.acquire()
        self._thread = threading.Thread(
            target=self._run, name="mailslot-lock-watchdog", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.release()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.acquire(True, self._interval):
            self._profiler.check_stalls()


class LockProfiler:
    """Profiles the ``threading`` locks created while it is installed.

    Use as a context manager (``with LockProfiler() as prof: ...``) or with
    :meth:`install`/:meth:`uninstall`; read :meth:`report` at any time.

    Args:
        order_checks: record the lock-order graph and report inversions.
        hold_sample: time the hold of one acquisition in this many (a power of two) per lock
            class; 1 times every one. Clock reads are the largest part of the hot path, so 16
            or 64 cost less; hold totals then cover the sampled acquisitions only
            (``hold_samples`` says how many). Waits are always timed.
        watchdog: seconds a thread may stay blocked on a lock before a stall dump; ``None`` runs
            no watchdog thread (:meth:`check_stalls` still works when called).
        stall_stream: where the watchdog writes its dumps as they happen (``None``: nowhere; they
            are in the report either way).
        on_inversion: called (in the acquiring thread, before it waits) with each new inversion.
        on_stall: called (in the watchdog thread) with each new stall.

    Raises:
        ConfigError: a watchdog threshold that is not positive, a bad ``hold_sample``.
    """

    def __init__(
        self,
        *,
        order_checks: bool = True,
        hold_sample: int = 1,
        watchdog: float | None = None,
        stall_stream: TextIO | None = None,
        on_inversion: Callable[[Inversion], None] | None = None,
        on_stall: Callable[[Stall], None] | None = None,
    ) -> None:
        if watchdog is not None and not watchdog > 0:
            raise ConfigError(f"watchdog must be a positive number of seconds, not {watchdog}")
        if hold_sample < 1 or hold_sample & (hold_sample - 1):
            raise ConfigError(f"hold_sample must be a power of two (1, 2, 4, ...): {hold_sample}")
        self.order_checks = order_checks
        self.hold_sample = hold_sample
        self.watchdog = watchdog
        self._stall_stream = stall_stream
        self._on_inversion = on_inversion
        self._on_stall = on_stall
        # Guards the slow-path tables below; never held while waiting for a program's lock.
        # Re-entrant: a __del__ run by the garbage collector inside a slow path may take a lock.
        self._meta = _RawRLock()
        self._classes: dict[tuple[object, ...], _LockClass] = {}
        self._graph: OrderGraph[_LockClass] = OrderGraph()
        self._edges: dict[tuple[_LockClass, _LockClass], OrderEdge] = {}
        self._instance_edges: dict[tuple[_LockClass, int, int], OrderEdge] = {}
        self._inversions: list[Inversion] = []
        self._stalls: list[Stall] = []
        self._reported_waits: set[tuple[int, int]] = set()
        self._waiting: dict[int, tuple[_Tracked, int]] = {}
        self._watchers = 0
        self._blocked = threading.Condition(_allocate_lock())
        self._watchdog: _Watchdog | None = None
        self._saved: tuple[Any, Any] | None = None
        self._started = 0
        self._stopped = 0

    # -- installing ---------------------------------------------------------------------------

    @property
    def installed(self) -> bool:
        """Whether this profiler is the one patched into ``threading``."""
        return _active is self

    def install(self) -> None:
        """Patch ``threading.Lock``/``RLock``; start the watchdog if one was asked for.

        Raises:
            ConfigError: a profiler is already installed.
        """
        global _active
        with _install_guard:
            if _active is not None:
                raise ConfigError("a lock profiler is already installed; uninstall it first")
            if self.watchdog is not None:
                self._watchdog = _Watchdog(self, self.watchdog)
                self._watchdog.start()
            self._saved = (threading.Lock, threading.RLock)
            self._started = perf_counter_ns()
            self._stopped = 0
            _active = self
            threading.Lock = _make_lock  # type: ignore[assignment]
            threading.RLock = _make_rlock  # type: ignore[assignment]

    def uninstall(self) -> None:
        """Restore ``threading``; stop the watchdog. Tracked locks go on working (and counting)."""
        global _active
        with _install_guard:
            if _active is not self or self._saved is None:
                return
            threading.Lock, threading.RLock = self._saved
            _active = None
            self._saved = None
            self._stopped = perf_counter_ns()
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    def __enter__(self) -> LockProfiler:
        self.install()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()

    # -- reading ------------------------------------------------------------------------------

    def report(self) -> LockReport:
        """A snapshot: used lock classes hottest first, inversions and stalls found so far."""
        with self._meta:
            classes = list(self._classes.values())
            inversions = tuple(self._inversions)
            stalls = tuple(self._stalls)
        stats = [c.snapshot() for c in classes if c.acquisitions or c.failed]
        stats.sort(key=ClassStats.heat, reverse=True)
        end = self._stopped or perf_counter_ns()
        return LockReport(
            classes=tuple(stats),
            inversions=inversions,
            stalls=stalls,
            duration_ns=end - self._started if self._started else 0,
            order_checks=self.order_checks,
            dropped_edges=self._graph.dropped,
        )

    def wait_blocked(self, count: int, *, timeout: float) -> bool:
        """Wait until at least ``count`` threads are blocked on tracked locks.

        For tests and tools that must sequence threads without sleeping. Answers ``False`` if
        ``timeout`` seconds passed first.
        """
        with self._blocked:
            self._watchers += 1
            try:
                return self._blocked.wait_for(lambda: len(self._waiting) >= count, timeout)
            finally:
                self._watchers -= 1

    def check_stalls(
        self, *, now_ns: int | None = None, threshold: float | None = None
    ) -> list[Stall]:
        """Report threads blocked on a tracked lock for ``threshold`` seconds or more.

        The watchdog calls this periodically; each blocked wait is reported once. ``threshold``
        defaults to the watchdog's; ``now_ns`` (a ``perf_counter_ns`` value) to now.

        Raises:
            ConfigError: no threshold given and no watchdog configured.
        """
        limit = self.watchdog if threshold is None else threshold
        if limit is None:
            raise ConfigError("check_stalls needs a threshold (or a profiler with a watchdog)")
        now = perf_counter_ns() if now_ns is None else now_ns
        waiting = dict(self._waiting)
        late = {
            ident: entry
            for ident, entry in waiting.items()
            if now - entry[1] >= limit * 1e9 and (ident, entry[1]) not in self._reported_waits
        }
        if not late:
            return []
        frames = sys._current_frames()
        holders = {i: lock._holder for i, (lock, _) in waiting.items()}
        waits_for = {i: h.ident for i, h in holders.items() if h is not None}
        in_cycle: dict[int, tuple[str, ...]] = {}
        for cycle in wait_for_cycles(waits_for):
            names = tuple(_thread_name(i) for i in cycle)
            in_cycle.update(dict.fromkeys(cycle, names))

        def stalled(ident: int) -> StalledThread:
            return StalledThread(_thread_name(ident), _stack(frames.get(ident)))

        by_lock: dict[_Tracked, list[int]] = {}
        for ident, (lock, _) in waiting.items():
            by_lock.setdefault(lock, []).append(ident)
        found: list[Stall] = []
        for lock in {entry[0] for entry in late.values()}:
            idents = sorted(by_lock[lock], key=lambda i: waiting[i][1])
            holder = holders[idents[0]]
            deadlock = next((in_cycle[i] for i in idents if i in in_cycle), ())
            found.append(
                Stall(
                    lock=f"{lock._cls.name} #{lock._serial}",
                    blocked_ns=now - waiting[idents[0]][1],
                    holder=None if holder is None else stalled(holder.ident),
                    waiters=tuple(stalled(i) for i in idents),
                    deadlock=deadlock,
                )
            )
        with self._meta:
            self._reported_waits.update((i, t0) for i, (_, t0) in late.items())
            room = _MAX_STALLS - len(self._stalls)
            self._stalls.extend(found[: max(0, room)])
        for stall in found:
            if self._stall_stream is not None:
                print(stall.describe(), file=self._stall_stream, flush=True)
            if self._on_stall is not None:
                self._on_stall(stall)
        return found

    # -- slow paths called by the tracked locks ------------------------------------------------

    def _class_for(self, frame: FrameType | None, kind: str) -> _LockClass | None:
        """The class of a lock being created by ``frame``; ``None`` for a Thread's own locks."""
        inner_site: tuple[str, int] | None = None
        f = frame
        while f is not None and f.f_code.co_filename in _TRANSPARENT:
            qualname = f.f_code.co_qualname
            if qualname.startswith("Thread."):
                return None
            if inner_site is None:
                inner_site = (f.f_code.co_filename, f.f_lineno)
            kind = qualname.split(".")[0]
            f = f.f_back
        user = ("?", 0, "?")
        if f is not None:
            user = (f.f_code.co_filename, f.f_lineno, f.f_code.co_qualname)
        key = (*user, inner_site, kind)
        cls = self._classes.get(key)
        if cls is None:
            name = f"{_short(user[0])}:{user[1]} in {user[2]} ({kind})"
            with self._meta:
                cls = self._classes.setdefault(key, _LockClass(self, name, kind))
        return cls

    def _wait(self, lock: _Tracked, held: _Held, timeout: float) -> bool:
        """A contended acquisition: wait for the lock, timed and visible to the watchdog."""
        ident = held.ident
        t0 = perf_counter_ns()
        self._waiting[ident] = (lock, t0)
        if self._watchers:
            with self._blocked:
                self._blocked.notify_all()
        try:
            ok = bool(lock._inner.acquire(True, timeout))
        finally:
            self._waiting.pop(ident, None)
        dt = perf_counter_ns() - t0
        cls = lock._cls
        if ok:
            cls.contended += 1
        cls.wait_total += dt
        if dt > cls.wait_max:
            cls.wait_max = dt
        cls.wait_hist[bucket_of(dt)] += 1
        # The site is keyed by code object and line, formatted only for the report. Updates are
        # single GIL-atomic operations, so this path takes no lock of its own.
        f = _user_frame(sys._getframe(1))
        site = (None, 0) if f is None else (f.f_code, f.f_lineno)
        sites = cls.sites
        if site not in sites and len(sites) >= _MAX_WAIT_SITES:
            site = (None, -1)
        entry = sites.setdefault(site, [0, 0])
        entry[0] += 1
        entry[1] += dt
        return ok

    def _order(self, before: _Tracked, lock: _Tracked) -> None:
        """``lock`` is asked for while ``before`` is held: record a new edge, check for a cycle."""
        a, b = before._cls, lock._cls
        if a is b:
            self._order_instances(before, lock)
            return
        stack = _stack(sys._getframe(1))
        thread = _thread_name(_get_ident())
        with self._meta:
            if b in a.after:
                return
            a.after.add(b)
            cycle = self._graph.add_edge(a, b)
            self._edges[(a, b)] = OrderEdge(a.name, b.name, thread, stack)
            if cycle is None or len(self._inversions) >= _MAX_INVERSIONS:
                return
            nodes = cycle
            pairs = zip(nodes, [*nodes[1:], nodes[0]], strict=True)
            inversion = Inversion(
                classes=tuple(n.name for n in nodes), edges=tuple(self._edges[p] for p in pairs)
            )
            self._inversions.append(inversion)
        if self._on_inversion is not None:
            self._on_inversion(inversion)

    def _order_instances(self, before: _Tracked, lock: _Tracked) -> None:
        """Nesting within one class: check the order of instances (see the module docstring)."""
        cls = lock._cls
        graph = cls.instance_graph
        if len(graph) >= graph.max_edges:
            return
        if before._next is None:
            before._next = set()
        before._next.add(lock._serial)
        if graph.has_edge(before._serial, lock._serial):
            return
        stack = _stack(sys._getframe(1))
        thread = _thread_name(_get_ident())
        with self._meta:
            cycle = graph.add_edge(before._serial, lock._serial)
            edge = OrderEdge(
                f"{cls.name} #{before._serial}", f"{cls.name} #{lock._serial}", thread, stack
            )
            self._instance_edges[(cls, before._serial, lock._serial)] = edge
            if cycle is None or len(self._inversions) >= _MAX_INVERSIONS:
                return
            serials = cycle
            pairs = zip(serials, [*serials[1:], serials[0]], strict=True)
            inversion = Inversion(
                classes=tuple(f"{cls.name} #{s}" for s in serials),
                edges=tuple(self._instance_edges[(cls, x, y)] for x, y in pairs),
                same_class=True,
            )
            self._inversions.append(inversion)
        if self._on_inversion is not None:
            self._on_inversion(inversion)


def profile_call(
    fn: Callable[..., _R], *args: Any, profiler: LockProfiler | None = None
) -> tuple[_R, LockReport]:
    """Run ``fn(*args)`` under ``profiler`` (default: a new one with default options).

    Answers the result and the report. If ``fn`` raises, the profiler is uninstalled and the
    exception propagates (read ``profiler.report()`` if you passed one).
    """
    prof = LockProfiler() if profiler is None else profiler
    with prof:
        result = fn(*args)
    return result, prof.report()
