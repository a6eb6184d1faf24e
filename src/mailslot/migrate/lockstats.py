"""The pure core of the lock profiler: order graph, wait-for cycles, histograms and the report.

Theory of operation
-------------------
:mod:`mailslot.migrate.locks` (the shell) patches ``threading`` and feeds what it sees into the
values defined here; nothing in this module knows about threads, clocks or frames.

- :class:`OrderGraph` is the lock-order graph of lockdep: a node per lock class, an edge
  ``a -> b`` when some thread acquired ``b`` while holding ``a``. :meth:`OrderGraph.add_edge` is
  called only for an edge never seen before, and answers the cycle that the new edge closes (a path
  ``b -> ... -> a`` already in the graph), so the steady state of a program costs the shell one set
  lookup per acquisition and this module nothing. The graph is bounded: past ``max_edges`` new
  edges are counted as dropped rather than stored.
- :func:`wait_for_cycles` finds real deadlocks in a snapshot "thread T waits for a lock that
  thread U holds" (each thread waits for at most one lock, so the graph is a functional graph).
- :func:`bucket_of` / :func:`bucket_upper` / :func:`histogram_percentile` implement a log-linear
  histogram (four buckets per power of two, so a percentile is within 25% above the true value) that
  costs a few integer operations per sample and a fixed 260-slot list per lock class.
- The report structs are frozen msgspec structs: :class:`LockReport` renders as a ranked table or
  converts to builtins for JSON.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

import msgspec

__all__ = [
    "HISTOGRAM_SIZE",
    "ClassStats",
    "Frame",
    "Inversion",
    "K",
    "LockReport",
    "OrderEdge",
    "OrderGraph",
    "SiteWait",
    "Stall",
    "StalledThread",
    "bucket_of",
    "bucket_upper",
    "format_ns",
    "histogram_percentile",
    "wait_for_cycles",
]

K = TypeVar("K", bound=Hashable)

HISTOGRAM_SIZE = 65 * 4
"""Slots in a wait-time histogram: four sub-buckets for each bit length 0..64."""


def bucket_of(value: int) -> int:
    """The histogram slot of a non-negative integer (nanoseconds).

    Slot ``4*b + s`` holds values of bit length ``b`` whose two bits after the leading one are
    ``s``; values below 8 get slot ``4*b``.
    """
    b = value.bit_length()
    if b < 3:
        return b << 2
    return (b << 2) | ((value >> (b - 3)) & 3)


def bucket_upper(slot: int) -> int:
    """The largest value that falls in ``slot`` (so a percentile never under-reports)."""
    b, s = divmod(slot, 4)
    if b < 3:
        return (1 << b) - 1
    return ((5 + s) << (b - 3)) - 1


def histogram_percentile(histogram: Sequence[int], q: float, maximum: int) -> int:
    """The ``q``-th percentile (0-100, nearest rank) of a histogram, capped by the exact maximum."""
    total = sum(histogram)
    if total == 0:
        return 0
    rank = max(1, -(-int(q * total) // 100)) if q < 100 else total
    seen = 0
    for slot, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return min(bucket_upper(slot), maximum)
    return maximum


class OrderGraph(Generic[K]):
    """A bounded directed graph that reports the cycle each new edge closes.

    Args:
        max_edges: edges stored at most; later new edges are counted in :attr:`dropped`.
    """

    def __init__(self, *, max_edges: int = 100_000) -> None:
        self._after: dict[K, set[K]] = {}
        self._edges = 0
        self.max_edges = max_edges
        self.dropped = 0

    def __len__(self) -> int:
        return self._edges

    def has_edge(self, a: K, b: K) -> bool:
        """Whether ``a -> b`` is in the graph."""
        return b in self._after.get(a, ())

    def successors(self, a: K) -> frozenset[K]:
        """The nodes directly after ``a``."""
        return frozenset(self._after.get(a, ()))

    def add_edge(self, a: K, b: K) -> list[K] | None:
        """Add ``a -> b``; answer the cycle it closes, or ``None``.

        The cycle is the list of nodes ``[a, b, ..., x]`` such that ``a -> b``, ``b -> ...``, and
        ``x -> a`` are all edges: the new edge first, then the shortest existing path back to ``a``.
        A self-edge (``a == b``) is a cycle of one node. An edge already present, or one refused
        because the graph is full, answers ``None``.
        """
        after = self._after.setdefault(a, set())
        if b in after:
            return None
        if self._edges >= self.max_edges:
            self.dropped += 1
            return None
        after.add(b)
        self._edges += 1
        if a == b:
            return [a]
        path = self._path(b, a)
        return None if path is None else [a, *path[:-1]]

    def _path(self, start: K, goal: K) -> list[K] | None:
        """The shortest path ``start -> ... -> goal`` (breadth first), or ``None``."""
        parent: dict[K, K] = {start: start}
        todo = deque([start])
        while todo:
            node = todo.popleft()
            for nxt in self._after.get(node, ()):
                if nxt in parent:
                    continue
                parent[nxt] = node
                if nxt == goal:
                    path = [nxt]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    path.reverse()
                    return path
                todo.append(nxt)
        return None


def wait_for_cycles(waits_for: Mapping[K, K]) -> list[list[K]]:
    """The cycles of a wait-for graph: ``waits_for[t]`` is the thread holding what ``t`` waits for.

    Each thread waits for at most one lock, so each node has at most one successor and the cycles
    are disjoint. Every cycle is answered once, starting from its smallest member in ``repr`` order.
    """
    cycles: list[list[K]] = []
    done: set[K] = set()
    for start in waits_for:
        if start in done:
            continue
        trail: list[K] = []
        index: dict[K, int] = {}
        node: K | None = start
        while node is not None and node not in done and node not in index:
            index[node] = len(trail)
            trail.append(node)
            node = waits_for.get(node)
        if node is not None and node in index:
            cycle = trail[index[node] :]
            first = min(range(len(cycle)), key=lambda i: repr(cycle[i]))
            cycles.append(cycle[first:] + cycle[:first])
        done.update(trail)
    return cycles


def format_ns(ns: int | float) -> str:
    """A duration in nanoseconds in the unit that keeps it short (``"1.5 ms"``)."""
    value = float(ns)
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} ns"


class Frame(msgspec.Struct, frozen=True):
    """One stack frame: file, line and function."""

    file: str
    line: int
    func: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.func}"


class SiteWait(msgspec.Struct, frozen=True):
    """A call site that waited for a lock class: how often and how long in total."""

    site: str
    waits: int
    wait_ns: int


class ClassStats(msgspec.Struct, frozen=True, kw_only=True):
    """Everything measured about one lock class (all locks created at one site)."""

    name: str
    """``file:line in func (Kind)``: where the lock was created, and what created it."""
    kind: str
    """``Lock``, ``RLock``, or the stdlib type that created it (``Condition``, ``Queue``...)."""
    instances: int
    acquisitions: int
    contended: int
    """Acquisitions that found the lock taken and had to wait."""
    failed: int
    """Non-blocking or timed acquisitions that did not get the lock."""
    wait_total_ns: int
    wait_p99_ns: int
    wait_max_ns: int
    hold_total_ns: int
    hold_max_ns: int
    hold_samples: int
    """Acquisitions whose hold time was measured (all of them unless hold sampling is on)."""
    top_wait_sites: tuple[SiteWait, ...] = ()

    @property
    def hold_mean_ns(self) -> float:
        """Mean hold time over the measured acquisitions."""
        return self.hold_total_ns / self.hold_samples if self.hold_samples else 0.0

    def heat(self) -> tuple[int, int, int, int]:
        """The ranking key: wait time, then contention, then hold time, then acquisitions."""
        return (self.wait_total_ns, self.contended, self.hold_total_ns, self.acquisitions)


class OrderEdge(msgspec.Struct, frozen=True):
    """``after`` was acquired while ``before`` was held, first seen in ``thread`` at ``stack``."""

    before: str
    after: str
    thread: str
    stack: tuple[Frame, ...]
    """Innermost frame last; the acquisition of ``after``; ``before`` was taken further up."""


class Inversion(msgspec.Struct, frozen=True, kw_only=True):
    """A potential deadlock: lock classes taken in an order that closes a cycle.

    ``edges[0]`` is the acquisition that closed the cycle; the others are the earlier acquisitions
    around the cycle, each with the stack where it was first seen. ``same_class`` marks a cycle
    among instances of one lock class (for example two per-document locks taken in both orders).
    """

    classes: tuple[str, ...]
    edges: tuple[OrderEdge, ...]
    same_class: bool = False

    def describe(self) -> str:
        """A lockdep-style multi-line description."""
        kind = "instances of one lock class" if self.same_class else "lock classes"
        lines = [
            f"POTENTIAL DEADLOCK: lock-order inversion among {kind}: "
            + " -> ".join([*self.classes, self.classes[0]])
        ]
        for i, edge in enumerate(self.edges):
            what = "closing acquisition" if i == 0 else "earlier acquisition"
            lines.append(
                f"  {what}: {edge.after} taken while holding {edge.before} (thread {edge.thread})"
            )
            lines.extend(f"      {frame}" for frame in edge.stack)
        return "\n".join(lines)


class StalledThread(msgspec.Struct, frozen=True):
    """A thread in a stall dump: its name and its stack (innermost frame last)."""

    thread: str
    stack: tuple[Frame, ...]


class Stall(msgspec.Struct, frozen=True, kw_only=True):
    """A lock that threads stayed blocked on past the watchdog threshold."""

    lock: str
    """The lock class."""
    blocked_ns: int
    """How long the longest waiter had been waiting."""
    holder: StalledThread | None
    """The thread holding the lock, or ``None`` when it was released in the meantime."""
    waiters: tuple[StalledThread, ...]
    deadlock: tuple[str, ...] = ()
    """Names of the threads of a wait-for cycle this stall is part of (a real deadlock)."""

    def describe(self) -> str:
        """A multi-line dump: who holds the lock, who waits for it, and their stacks."""
        head = f"STALL: {len(self.waiters)} thread(s) blocked {format_ns(self.blocked_ns)} on lock "
        lines = [head + self.lock]
        if self.deadlock:
            cycle = " -> ".join([*self.deadlock, self.deadlock[0]])
            lines.append(f"  DEADLOCK: wait-for cycle {cycle}")
        if self.holder is None:
            lines.append("  held by: (released since)")
        else:
            lines.append(f"  held by thread {self.holder.thread}:")
            lines.extend(f"      {frame}" for frame in self.holder.stack)
        for waiter in self.waiters:
            lines.append(f"  waiting: thread {waiter.thread}:")
            lines.extend(f"      {frame}" for frame in waiter.stack)
        return "\n".join(lines)


class LockReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a profiling run found: lock classes ranked hottest first, inversions, stalls."""

    classes: tuple[ClassStats, ...]
    inversions: tuple[Inversion, ...] = ()
    stalls: tuple[Stall, ...] = ()
    duration_ns: int = 0
    order_checks: bool = True
    dropped_edges: int = 0
    """New order edges not stored because the graph was full (cycles through them are missed)."""

    def hottest(self, n: int = 10) -> tuple[ClassStats, ...]:
        """The ``n`` hottest lock classes (the report is already ranked)."""
        return self.classes[:n]

    def find(self, fragment: str) -> ClassStats:
        """The first class whose name contains ``fragment``.

        Raises:
            KeyError: no class matches.
        """
        for stats in self.classes:
            if fragment in stats.name:
                return stats
        raise KeyError(fragment)

    def to_builtins(self) -> dict[str, object]:
        """Plain dicts and lists, ready for ``json.dumps``."""
        data = msgspec.to_builtins(self)
        assert isinstance(data, dict)
        return data

    def render(self, *, top: int = 20) -> str:
        """A ranked table of the ``top`` hottest classes, then every inversion and stall."""
        columns = (
            "lock class",
            "acq",
            "contended",
            "wait total",
            "wait p99",
            "wait max",
            "hold total",
            "hold max",
        )
        rows = [
            (
                s.name,
                f"{s.acquisitions:,}",
                f"{s.contended:,}",
                format_ns(s.wait_total_ns),
                format_ns(s.wait_p99_ns),
                format_ns(s.wait_max_ns),
                format_ns(s.hold_total_ns),
                format_ns(s.hold_max_ns),
            )
            for s in self.classes[:top]
        ]
        lines = [
            f"lockprof: {len(self.classes)} lock class(es), {len(self.inversions)} potential "
            f"deadlock(s), {len(self.stalls)} stall(s) in {format_ns(self.duration_ns)}"
        ]
        lines.extend(_table(columns, rows))
        if len(self.classes) > top:
            lines.append(f"... {len(self.classes) - top} more (--top)")
        for s in self.classes[:top]:
            if s.top_wait_sites:
                lines.append(f"waits on {s.name}:")
                lines.extend(
                    f"    {format_ns(w.wait_ns):>9} in {w.waits:,} wait(s) at {w.site}"
                    for w in s.top_wait_sites
                )
        if not self.order_checks:
            lines.append("lock-order checks were off")
        elif self.dropped_edges:
            lines.append(f"order graph full: {self.dropped_edges} new edge(s) not checked")
        lines.extend(inv.describe() for inv in self.inversions)
        lines.extend(stall.describe() for stall in self.stalls)
        return "\n".join(lines)


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    rows = list(rows)
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells.extend(v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True))
        out.append("  ".join(cells))
    return out
