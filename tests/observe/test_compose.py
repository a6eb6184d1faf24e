"""Several instrumentations on one system."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mailslot.observe.compose import CompositeInstrumentation, combine
from mailslot.observe.metrics import MetricsInstrumentation, make_registry
from mailslot.observe.tracing import TracingInstrumentation
from mailslot.runtime import Actor, ActorRef, DeadLetter, Envelope, Instrumentation
from mailslot.testing import TestKit


class Log(Instrumentation):
    def __init__(self, name: str, events: list[tuple[str, ...]], per_message: bool) -> None:
        self.name = name
        self.events = events
        self.per_message = per_message

    def message_begin(
        self, ref: ActorRef, actor_type: str, message: Any, envelope: Envelope | None
    ) -> str:
        self.events.append(("begin", self.name))
        return f"token-{self.name}"

    def message_end(
        self, ref: ActorRef, actor_type: str, token: Any, seconds: float, error: Any
    ) -> None:
        self.events.append(("end", self.name, token))

    def outgoing(self, sender: ActorRef | None, target: ActorRef, message: Any) -> str | None:
        self.events.append(("out", self.name))
        return f"trace-{self.name}" if self.name != "a" else None

    def dead_letter(self, letter: DeadLetter) -> None:
        self.events.append(("dead", self.name))


class Broken(Instrumentation):
    per_message = True

    def message_begin(self, *args: Any) -> Any:
        raise RuntimeError("broken begin")

    def batch(self, *args: Any) -> None:
        raise RuntimeError("broken batch")


class Sink(Actor):
    def receive(self, message: Any) -> None:
        if message == "drop":
            self.context.unhandled(message)


def test_combine() -> None:
    m = MetricsInstrumentation()
    assert combine() is None
    assert combine(None, m, None) is m
    both = combine(m, TracingInstrumentation(TracerProvider()))
    assert isinstance(both, CompositeInstrumentation)
    assert both.per_message
    assert both.stamps_envelopes
    with pytest.raises(ValueError, match="at least one"):
        CompositeInstrumentation()


def test_per_message_follows_the_parts() -> None:
    m = MetricsInstrumentation(sample_every=2, seed=0)
    c = CompositeInstrumentation(m, Log("a", [], per_message=False))
    seen = set()
    ref = ActorRef("/user/x", 1)
    for _ in range(20):
        seen.add(c.per_message)
        c.batch(ref, "X", 1, 0.0, 0)
    assert seen == {True, False}
    with pytest.raises(AttributeError):
        c.per_message = True


async def test_hooks_run_in_order_and_a_broken_part_does_not_stop_the_others() -> None:
    events: list[tuple[str, ...]] = []
    composite = CompositeInstrumentation(
        Log("a", events, per_message=True), Broken(), Log("b", events, per_message=True)
    )
    async with TestKit(instrumentation=composite, stamp_envelopes=True) as kit:
        sink = kit.system.spawn(Sink)
        sink.tell("x")
        await kit.settle()
        sink.tell("drop")
        await kit.settle()
    begin_end = [e for e in events if e[0] in {"begin", "end"}][:4]
    assert begin_end == [
        ("begin", "a"),
        ("begin", "b"),
        ("end", "b", "token-b"),
        ("end", "a", "token-a"),
    ]
    assert ("dead", "a") in events
    assert ("dead", "b") in events
    # outgoing: every part is called; the first trace context given wins
    assert composite.outgoing(None, ActorRef("/user/x", 1), "m") == "trace-b"


async def test_metrics_next_to_tracing_time_every_message() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = MetricsInstrumentation(sample_every=16)
    composite = combine(TracingInstrumentation(provider), metrics)
    async with TestKit(instrumentation=composite) as kit:
        registry = make_registry(kit.system, metrics)
        sink = kit.system.spawn(Sink)
        for i in range(50):
            sink.tell(i)
        await kit.settle()
        labels = {"actor_type": "Sink"}
        assert registry.get_sample_value("mailslot_actor_messages_processed_total", labels) == 50
        assert registry.get_sample_value("mailslot_actor_processing_seconds_count", labels) == 50
    assert len(exporter.get_finished_spans()) == 50
    provider.shutdown()
