"""The profiler's pure core: order graph, wait-for cycles, histogram, report rendering."""

from __future__ import annotations

import itertools
import json

import msgspec
from hypothesis import given
from hypothesis import strategies as st

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
    bucket_upper,
    format_ns,
    histogram_percentile,
    wait_for_cycles,
)


def test_an_edge_that_closes_a_cycle_answers_the_cycle_from_the_new_edge() -> None:
    g: OrderGraph[str] = OrderGraph()
    assert g.add_edge("a", "b") is None
    assert g.add_edge("b", "c") is None
    assert g.add_edge("c", "a") == ["c", "a", "b"]
    assert g.add_edge("c", "a") is None  # known edges are not checked again
    assert g.add_edge("a", "c") == ["a", "c"]  # the shortest way back, not a -> b -> c
    assert g.add_edge("c", "b") == ["c", "b"]
    assert len(g) == 5
    assert g.successors("a") == frozenset({"b", "c"})


def test_a_self_edge_is_a_cycle_of_one() -> None:
    g: OrderGraph[int] = OrderGraph()
    assert g.add_edge(1, 1) == [1]


def test_the_graph_is_bounded() -> None:
    g: OrderGraph[int] = OrderGraph(max_edges=2)
    g.add_edge(1, 2)
    g.add_edge(2, 3)
    assert g.add_edge(3, 1) is None
    assert g.dropped == 1
    assert not g.has_edge(3, 1)


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=40))
def test_add_edge_reports_a_cycle_exactly_when_one_appears(edges: list[tuple[int, int]]) -> None:
    g: OrderGraph[int] = OrderGraph()
    seen: set[tuple[int, int]] = set()
    for a, b in edges:
        before = _reachable(seen, b, a)
        cycle = g.add_edge(a, b)
        if (a, b) in seen:
            assert cycle is None
            continue
        seen.add((a, b))
        assert (cycle is not None) == (a == b or before)
        if cycle is not None:
            assert cycle[0] == a
            closed = [*cycle, cycle[0]]
            assert all((x, y) in seen for x, y in itertools.pairwise(closed))


def _reachable(edges: set[tuple[int, int]], start: int, goal: int) -> bool:
    todo, seen = [start], {start}
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for x, y in edges:
            if x == node and y not in seen:
                seen.add(y)
                todo.append(y)
    return False


def test_wait_for_cycles_finds_each_deadlock_once() -> None:
    waits = {1: 2, 2: 3, 3: 1, 4: 1, 5: 6, 6: 5, 7: 8}
    assert sorted(wait_for_cycles(waits)) == [[1, 2, 3], [5, 6]]
    assert wait_for_cycles({1: 2, 2: 3}) == []


@given(st.integers(0, 2**62))
def test_a_value_is_within_its_bucket(value: int) -> None:
    slot = bucket_of(value)
    assert 0 <= slot < HISTOGRAM_SIZE
    assert value <= bucket_upper(slot)
    assert slot == 0 or bucket_upper(slot - 1) < value or bucket_of(bucket_upper(slot - 1)) == slot
    assert bucket_upper(slot) <= max(7, value * 5 // 4 + 1)


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=200), st.integers(1, 100))
def test_a_percentile_is_at_or_above_the_true_one_within_a_quarter(
    values: list[int], q: int
) -> None:
    hist = [0] * HISTOGRAM_SIZE
    for v in values:
        hist[bucket_of(v)] += 1
    ordered = sorted(values)
    true = ordered[max(0, -(-q * len(ordered) // 100) - 1)]
    got = histogram_percentile(hist, q, max(values))
    assert true <= got <= max(7, true * 5 // 4 + 1)


def test_percentile_of_nothing_is_zero() -> None:
    assert histogram_percentile([0] * HISTOGRAM_SIZE, 99, 0) == 0


def test_format_ns_picks_a_unit() -> None:
    assert [format_ns(v) for v in (12, 1500, 2_500_000, 3e9)] == [
        "12 ns",
        "1.5 us",
        "2.5 ms",
        "3 s",
    ]


def _stats(name: str, **kw: int) -> ClassStats:
    base = dict.fromkeys(
        (
            "instances",
            "acquisitions",
            "contended",
            "failed",
            "wait_total_ns",
            "wait_p99_ns",
            "wait_max_ns",
            "hold_total_ns",
            "hold_max_ns",
            "hold_samples",
        ),
        0,
    )
    base.update(kw)
    return ClassStats(name=name, kind="Lock", **base)


def test_a_report_renders_a_ranked_table_and_every_finding() -> None:
    frame = Frame("app.py", 3, "main")
    hot = _stats("app.py:1 in main (Lock)", acquisitions=10, contended=2, wait_total_ns=5000)
    hot = msgspec.structs.replace(hot, top_wait_sites=(SiteWait("app.py:9 in work", 2, 5000),))
    cold = _stats("app.py:2 in main (Lock)", acquisitions=1000, hold_total_ns=10, hold_samples=4)
    edge = OrderEdge("A", "B", "T1", (frame,))
    report = LockReport(
        classes=(hot, cold),
        inversions=(Inversion(classes=("A", "B"), edges=(edge, OrderEdge("B", "A", "T2", ()))),),
        stalls=(
            Stall(
                lock="A #1",
                blocked_ns=2_000_000_000,
                holder=StalledThread("T1", (frame,)),
                waiters=(StalledThread("T2", ()),),
                deadlock=("T1", "T2"),
            ),
        ),
        duration_ns=10**9,
    )
    text = report.render(top=1)
    assert text.splitlines()[0].startswith("lockprof: 2 lock class(es), 1 potential deadlock(s)")
    assert "app.py:1 in main" in text
    assert "app.py:2 in main" not in text.split("... 1 more")[0].split("\n", 3)[3]
    assert "2 wait(s) at app.py:9 in work" in text
    assert "A -> B -> A" in text
    assert "DEADLOCK: wait-for cycle T1 -> T2 -> T1" in text
    assert cold.hold_mean_ns == 2.5
    assert report.hottest(1) == (hot,)
    assert report.find("app.py:2") is cold
    assert json.loads(json.dumps(report.to_builtins()))["classes"][0]["contended"] == 2
