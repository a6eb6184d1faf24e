"""Metrics change as messages flow, drop, fail and restart (read back through the registry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailslot.meters import CATALOGUE, Meters, MetricKind
from mailslot.observe.metrics import (
    UNKNOWN_TYPE,
    MetricsInstrumentation,
    exposition,
    make_registry,
    metrics_instrumentation,
)
from mailslot.runtime import Actor, ActorRef, SupervisorStrategy, droppable
from mailslot.testing import TestKit


class Worker(Actor):
    def receive(self, message: Any) -> None:
        if message == "boom":
            raise ValueError("boom")
        if message == "what?":
            self.context.unhandled(message)


class Other(Actor):
    def receive(self, message: Any) -> None:
        pass


class Sleeper(Actor):
    """Holds each message for one virtual second (a coroutine handler)."""

    async def receive(self, message: Any) -> None:
        await self.context.system.clock.sleep(1)


@droppable
@dataclass(frozen=True)
class Tick:
    n: int


def value(registry: Any, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, labels)
    return 0.0 if v is None else float(v)


async def test_processed_counts_and_the_histogram_follow_the_messages() -> None:
    metrics = MetricsInstrumentation(sample_every=1)
    async with TestKit(instrumentation=metrics) as kit:
        registry = make_registry(kit.system, metrics)
        w = kit.system.spawn(Worker)
        o = kit.system.spawn(Other)
        for i in range(30):
            w.tell(i)
        for i in range(7):
            o.tell(i)
        await kit.settle()
        assert value(registry, "mailslot_actor_messages_processed_total", actor_type="Worker") == 30
        assert value(registry, "mailslot_actor_messages_processed_total", actor_type="Other") == 7
        # every message timed when sample_every=1
        assert value(registry, "mailslot_actor_processing_seconds_count", actor_type="Worker") == 30
        inf = value(
            registry, "mailslot_actor_processing_seconds_bucket", actor_type="Worker", le="+Inf"
        )
        assert inf == 30
        assert value(registry, "mailslot_actors", actor_type="Worker") == 1
        assert value(registry, "mailslot_actor_started_total", actor_type="Other") == 1
        assert value(registry, "mailslot_actor_busy_seconds_total", actor_type="Worker") > 0
        assert value(registry, "mailslot_messages_dispatched_total") >= 37
        await kit.system.stop(o)
        assert value(registry, "mailslot_actors", actor_type="Other") == 0
        assert value(registry, "mailslot_actor_stopped_total", actor_type="Other") == 1
        # counters survive the actor: they come from the hooks, not from live statistics
        assert value(registry, "mailslot_actor_messages_processed_total", actor_type="Other") == 7


async def test_mailbox_depth_and_high_water_while_an_actor_is_busy() -> None:
    metrics = MetricsInstrumentation()
    async with TestKit(instrumentation=metrics, mailbox_capacity=20) as kit:
        registry = make_registry(kit.system, metrics)
        s = kit.system.spawn(Sleeper)
        for i in range(6):
            s.tell(i)
        await kit.settle()  # the first message is being handled; five wait
        assert value(registry, "mailslot_actor_mailbox_depth", actor_type="Sleeper") == 5
        assert value(registry, "mailslot_actor_mailbox_depth_max", actor_type="Sleeper") == 5
        assert value(registry, "mailslot_actor_mailbox_fill_ratio", actor_type="Sleeper") == 0.25
        await kit.advance(10)
        assert value(registry, "mailslot_actor_mailbox_depth", actor_type="Sleeper") == 0
        assert value(registry, "mailslot_actor_mailbox_high_water", actor_type="Sleeper") == 6
        assert value(registry, "mailslot_actor_messages_processed_total", actor_type="Sleeper") == 6


async def test_a_coroutine_handler_is_timed_when_it_finishes() -> None:
    metrics = MetricsInstrumentation(sample_every=1)
    async with TestKit(instrumentation=metrics) as kit:
        registry = make_registry(kit.system, metrics)
        s = kit.system.spawn(Sleeper)
        s.tell("x")
        await kit.settle()
        assert value(registry, "mailslot_actor_processing_seconds_count", actor_type="Sleeper") == 0
        await kit.advance(1)
        assert value(registry, "mailslot_actor_processing_seconds_count", actor_type="Sleeper") == 1


async def test_dead_letters_by_recipient_type_and_reason() -> None:
    metrics = MetricsInstrumentation()
    async with TestKit(instrumentation=metrics, mailbox_capacity=4) as kit:
        registry = make_registry(kit.system, metrics)
        s = kit.system.spawn(Sleeper)
        s.tell(Tick(0))
        await kit.settle()  # busy with Tick(0): the mailbox fills up
        for i in range(1, 10):
            s.tell(Tick(i))  # droppable: the ones that do not fit are dropped
        w = kit.system.spawn(Worker)
        w.tell("what?")
        await kit.settle()
        overflow = value(
            registry, "mailslot_dead_letters_total", actor_type="Sleeper", reason="overflow"
        )
        assert overflow == 5
        unhandled = value(
            registry, "mailslot_dead_letters_total", actor_type="Worker", reason="unhandled"
        )
        assert unhandled == 1
        await kit.system.stop(w)
        w.tell("late")
        stopped = value(
            registry, "mailslot_dead_letters_total", actor_type=UNKNOWN_TYPE, reason="stopped"
        )
        assert stopped == 1


async def test_failures_and_restarts() -> None:
    metrics = MetricsInstrumentation()
    async with TestKit(instrumentation=metrics) as kit:
        registry = make_registry(kit.system, metrics)
        w = kit.system.spawn(Worker, supervisor=SupervisorStrategy(min_backoff=0.5))
        w.tell("boom")
        await kit.settle()
        assert value(registry, "mailslot_actor_failures_total", actor_type="Worker") == 1
        assert value(registry, "mailslot_actor_restarts_total", actor_type="Worker") == 0
        await kit.advance(5)
        assert value(registry, "mailslot_actor_restarts_total", actor_type="Worker") == 1
        w.tell("boom")
        await kit.advance(5)
        assert value(registry, "mailslot_actor_failures_total", actor_type="Worker") == 2
        assert value(registry, "mailslot_actor_restarts_total", actor_type="Worker") == 2


async def test_slow_down_and_resume_signals() -> None:
    metrics = MetricsInstrumentation()

    class Burst(Actor):
        def __init__(self, to: ActorRef) -> None:
            self.to = to

        def receive(self, message: Any) -> None:
            for i in range(10):
                self.to.tell(i)

    async with TestKit(instrumentation=metrics, mailbox_capacity=5) as kit:
        registry = make_registry(kit.system, metrics)
        target = kit.system.spawn(Sleeper)
        target.tell("hold")
        await kit.settle()
        kit.system.spawn(lambda: Burst(target)).tell("go")
        await kit.settle()
        assert (
            value(
                registry,
                "mailslot_backpressure_signals_total",
                actor_type="Sleeper",
                signal="slow_down",
            )
            == 1
        )
        assert value(registry, "mailslot_actor_throttled_senders", actor_type="Sleeper") == 1
        assert value(registry, "mailslot_actor_outbox_depth", actor_type="Sleeper") > 0
        assert (
            value(
                registry,
                "mailslot_backpressure_signals_total",
                actor_type="Sleeper",
                signal="resume",
            )
            == 0
        )
        await kit.advance(30)
        assert (
            value(
                registry,
                "mailslot_backpressure_signals_total",
                actor_type="Sleeper",
                signal="resume",
            )
            == 1
        )
        assert value(registry, "mailslot_actor_throttled_senders", actor_type="Sleeper") == 0


NO_TIME_FLOOR = {"sample_interval": float("inf")}


async def test_sampling_times_some_turns_and_counts_all_messages() -> None:
    metrics = MetricsInstrumentation(sample_every=4, seed=3, **NO_TIME_FLOOR)
    async with TestKit(instrumentation=metrics) as kit:
        registry = make_registry(kit.system, metrics)
        w = kit.system.spawn(Worker)
        for i in range(200):
            w.tell(i)
            await kit.settle()  # one message per turn
        processed = value(registry, "mailslot_actor_messages_processed_total", actor_type="Worker")
        sampled = value(registry, "mailslot_actor_processing_seconds_count", actor_type="Worker")
        assert processed == 200
        # about one turn in four, with random gaps: well away from none and from all
        assert 25 <= sampled <= 100
        assert metrics.per_message in (True, False)


async def test_sampling_does_not_alias_onto_one_of_two_alternating_actors() -> None:
    metrics = MetricsInstrumentation(sample_every=2, seed=1, **NO_TIME_FLOOR)

    class Ping(Actor):
        def __init__(self) -> None:
            self.peer: ActorRef | None = None

        def receive(self, message: Any) -> None:
            if isinstance(message, ActorRef):
                self.peer = message
            elif message > 0 and self.peer is not None:
                self.peer.tell(message - 1)

    class Pong(Ping):
        pass

    async with TestKit(instrumentation=metrics) as kit:
        registry = make_registry(kit.system, metrics)
        a, b = kit.system.spawn(Ping), kit.system.spawn(Pong)
        a.tell(b)
        b.tell(a)
        await kit.settle()
        a.tell(400)
        await kit.settle()
        ping = value(registry, "mailslot_actor_processing_seconds_count", actor_type="Ping")
        pong = value(registry, "mailslot_actor_processing_seconds_count", actor_type="Pong")
        assert ping > 20
        assert pong > 20


async def test_quiet_systems_get_a_sample_per_interval() -> None:
    now = [0.0]
    metrics = MetricsInstrumentation(sample_every=10_000, sample_interval=1.0, clock=lambda: now[0])
    async with TestKit(instrumentation=metrics) as kit:
        registry = make_registry(kit.system, metrics)
        w = kit.system.spawn(Worker)
        for second in range(50):
            now[0] = float(second)
            for i in range(20):  # twenty one-message turns a second
                w.tell(i)
                await kit.settle()
        sampled = value(registry, "mailslot_actor_processing_seconds_count", actor_type="Worker")
        # about one sampled turn per interval (the checks come every few turns)
        assert 40 <= sampled <= 60


async def test_actor_types_past_the_limit_are_folded_into_other() -> None:
    metrics = MetricsInstrumentation(max_types=2)  # the guardians' type and one more
    async with TestKit(instrumentation=metrics) as kit:
        registry = make_registry(kit.system, metrics)
        await kit.settle()  # the guardians start first
        w = kit.system.spawn(Worker)
        w.tell(1)
        await kit.settle()
        o = kit.system.spawn(Other)
        o.tell(1)
        o.tell(2)
        await kit.settle()
        assert value(registry, "mailslot_actor_messages_processed_total", actor_type="other") >= 2
        assert value(registry, "mailslot_actor_messages_processed_total", actor_type="Other") == 0
        assert value(registry, "mailslot_metrics_label_overflow_total", metric="actor_type") > 0


async def test_upper_layer_meters_are_exposed() -> None:
    metrics = MetricsInstrumentation()
    meters = Meters()
    async with TestKit(instrumentation=metrics) as kit:
        registry = make_registry(kit.system, metrics, meters)
        meters.gateway_closes.labels("1000").inc()
        meters.gateway_frames.labels("in").inc(3)
        meters.store_commit_seconds.observe(0.003)
        meters.store_commit_seconds.observe(0.2)
        meters.cluster_batch_size.labels("publish").observe(10)
        meters.sessions.set(4)
        meters.cluster_shards_owned.set_function(lambda: 16)
        assert value(registry, "mailslot_gateway_closes_total", code="1000") == 1
        assert value(registry, "mailslot_gateway_frames_total", direction="in") == 3
        assert value(registry, "mailslot_store_commit_seconds_count") == 2
        assert value(registry, "mailslot_store_commit_seconds_bucket", le="0.005") == 1
        assert value(registry, "mailslot_store_commit_seconds_bucket", le="0.25") == 2
        assert value(registry, "mailslot_store_commit_seconds_sum") == pytest.approx(0.203)
        assert (
            value(registry, "mailslot_cluster_batch_size_bucket", direction="publish", le="16.0")
            == 1
        )
        assert (
            value(registry, "mailslot_cluster_batch_size_bucket", direction="publish", le="8.0")
            == 0
        )
        assert value(registry, "mailslot_sessions") == 4
        assert value(registry, "mailslot_cluster_shards_owned") == 16


async def test_the_exposition_declares_every_catalogue_metric_and_parses() -> None:
    metrics = metrics_instrumentation()
    async with TestKit(instrumentation=metrics) as kit:
        kit.system.spawn(Worker).tell(1)
        await kit.settle()
        text = exposition(make_registry(kit.system, metrics, Meters())).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, spec in CATALOGUE.items():
        base = name.removesuffix("_total") if spec.kind is MetricKind.COUNTER else name
        assert base in families, name
        assert families[base].type == spec.kind.value
    # each registry is separate: nothing leaks between systems
    other = MetricsInstrumentation()
    async with TestKit(instrumentation=other) as kit2:
        reg2 = make_registry(kit2.system, other)
        assert value(reg2, "mailslot_actor_messages_processed_total", actor_type="Worker") == 0


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="sample_every"):
        MetricsInstrumentation(sample_every=0)
    with pytest.raises(ValueError, match="max_types"):
        MetricsInstrumentation(max_types=0)
