"""The dashboard's JSON: rates between samples, percentiles over a window, hot actor types."""

from __future__ import annotations

from typing import Any

import pytest

from mailslot.meters import Meters
from mailslot.observe.dashboard import Dashboard, build_snapshot, take_sample
from mailslot.observe.metrics import MetricsInstrumentation, TypeView
from mailslot.runtime import Actor
from mailslot.testing import TestKit

BOUNDS = (0.001, 0.01, 0.1)


def view(
    name: str, *, processed: int = 0, counts: tuple[int, ...] = (0, 0, 0, 0), **kw: Any
) -> TypeView:
    base: dict[str, Any] = {
        "actors": 1,
        "mailbox_depth": 0,
        "mailbox_depth_max": 0,
        "mailbox_capacity": 100,
        "mailbox_high_water": 0,
        "fill_ratio": 0.0,
        "outbox_depth": 0,
        "throttled_senders": 0,
        "busy_seconds": 0.0,
        "failures": 0,
        "restarts": 0,
        "started": 1,
        "stopped": 0,
        "histogram_sum": 0.0,
    }
    base.update(kw)
    return TypeView(
        actor_type=name,
        processed=processed,
        histogram_counts=counts,
        histogram_count=sum(counts),
        **base,
    )


def snap(views: list[TypeView], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "now": 10.0,
        "wall": 1_700_000_000.0,
        "system_name": "s",
        "views": views,
        "dispatched": 0,
        "dead_letters": {},
        "dead_letters_by_type": {},
        "slow_downs_by_type": {},
        "gauges": {},
        "previous": None,
        "window_start": None,
        "buckets": BOUNDS,
        "hot_fill": 0.8,
        "slow_p99": 0.05,
    }
    args.update(kw)
    return build_snapshot(**args)


def test_rates_come_from_the_previous_sample() -> None:
    before = take_sample(8.0, [view("A", processed=100)], dispatched=100)
    d = snap([view("A", processed=300)], dispatched=400, previous=before)
    (a,) = d["types"]
    assert a["messages_per_sec"] == pytest.approx(100.0)
    assert d["totals"]["messages_per_sec"] == pytest.approx(150.0)
    assert d["interval"] == pytest.approx(2.0)
    first = snap([view("A", processed=300)])
    assert first["types"][0]["messages_per_sec"] is None
    assert first["interval"] is None


def test_percentiles_cover_only_the_window() -> None:
    # before the window: 100 slow messages; during it: 10 fast ones
    old = take_sample(0.0, [view("A", counts=(0, 0, 100, 0))], dispatched=0)
    d = snap([view("A", counts=(10, 0, 100, 0))], window_start=old)
    a = d["types"][0]
    assert a["samples"] == 10
    assert a["p99"] is not None
    assert a["p99"] <= 0.001
    assert not a["hot"]
    everything = snap([view("A", counts=(10, 0, 100, 0))])
    assert everything["types"][0]["p99"] > 0.01


def test_hot_types_come_first_with_their_reasons() -> None:
    views = [
        view("Calm", processed=5),
        view("Full", fill_ratio=0.9, mailbox_depth=90),
        view("Slow", counts=(0, 0, 0, 5)),
    ]
    d = snap(views)
    order = [t["actor_type"] for t in d["types"]]
    assert order[-1] == "Calm"
    reasons = {t["actor_type"]: t["hot_reasons"] for t in d["types"]}
    assert reasons == {"Calm": [], "Full": ["mailbox"], "Slow": ["slow"]}


def test_idle_types_are_left_out_and_dead_letters_and_gauges_are_passed_on() -> None:
    d = snap(
        [view("Gone", actors=0), view("Live")],
        dead_letters={"overflow": 3},
        dead_letters_by_type={"Live": 3},
        gauges={"sessions": 4.0},
    )
    assert [t["actor_type"] for t in d["types"]] == ["Live"]
    assert d["types"][0]["dead_letters"] == 3
    assert d["dead_letters"] == {"overflow": 3}
    assert d["totals"]["dead_letters"] == 3
    assert d["gauges"] == {"sessions": 4.0}


class Worker(Actor):
    def receive(self, message: Any) -> None:
        pass


async def test_the_dashboard_samples_a_live_system() -> None:
    now = [100.0]
    metrics = MetricsInstrumentation(sample_every=1)
    meters = Meters()
    meters.sessions.set(2)

    def broken() -> float:
        raise RuntimeError("gauge down")

    async with TestKit(instrumentation=metrics) as kit:
        board = Dashboard(
            kit.system,
            metrics,
            meters=meters,
            extra_gauges={"documents open": lambda: 5, "broken": broken},
            clock=lambda: now[0],
            wall=lambda: 1.0,
        )
        w = kit.system.spawn(Worker)
        for i in range(10):
            w.tell(i)
        await kit.settle()
        first = board.snapshot()
        worker = next(t for t in first["types"] if t["actor_type"] == "Worker")
        assert worker["processed"] == 10
        assert worker["messages_per_sec"] is None
        assert first["gauges"]["sessions"] == 2
        assert first["gauges"]["documents open"] == 5
        assert first["gauges"]["broken"] is None
        for i in range(30):
            w.tell(i)
        await kit.settle()
        now[0] += 0.1
        assert board.snapshot() is first  # within min_interval: the cached one
        now[0] += 0.9
        second = board.snapshot()
        worker = next(t for t in second["types"] if t["actor_type"] == "Worker")
        assert worker["processed"] == 40
        assert worker["messages_per_sec"] == pytest.approx(30.0)
        assert worker["p50"] is not None
