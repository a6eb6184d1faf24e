"""A span per handled message, parented through the envelope; failures recorded on the span."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from mailslot.errors import ConfigError
from mailslot.observe.tracing import (
    TracingInstrumentation,
    format_traceparent,
    parse_traceparent,
    tracer_provider_from_env,
    tracing_enabled,
    tracing_from_env,
)
from mailslot.runtime import Actor, ActorRef, Envelope
from mailslot.testing import TestKit


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    yield p
    p.shutdown()


class Relay(Actor):
    def __init__(self, to: ActorRef | None) -> None:
        self.to = to

    def receive(self, message: Any) -> None:
        if message == "boom":
            raise ValueError("relay broke")
        if self.to is not None:
            self.to.tell(message)


class AsyncRelay(Actor):
    """Awaits (virtual time) before passing the message on: the span must stay current."""

    def __init__(self, to: ActorRef) -> None:
        self.to = to

    async def receive(self, message: Any) -> None:
        await self.context.system.clock.sleep(1)
        if message == "boom":
            raise RuntimeError("async relay broke")
        self.to.tell(message)


def by_actor(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {str(s.attributes["mailslot.actor.path"]): s for s in spans if s.attributes}


async def test_a_chain_of_three_actors_is_one_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = TracingInstrumentation(provider)
    async with TestKit(instrumentation=tracing) as kit:
        c = kit.system.spawn(lambda: Relay(None), name="c")
        b = kit.system.spawn(lambda: Relay(c), name="b")
        a = kit.system.spawn(lambda: Relay(b), name="a")
        with provider.get_tracer("test").start_as_current_span("client edit") as root:
            a.tell("edit")
        await kit.settle()
    spans = exporter.get_finished_spans()
    actors = by_actor(spans)
    sa, sb, sc = actors["/user/a"], actors["/user/b"], actors["/user/c"]
    trace_id = root.get_span_context().trace_id
    assert {s.context.trace_id for s in (sa, sb, sc)} == {trace_id}
    assert sa.parent is not None
    assert sa.parent.span_id == root.get_span_context().span_id
    assert sb.parent is not None
    assert sb.parent.span_id == sa.context.span_id
    assert sc.parent is not None
    assert sc.parent.span_id == sb.context.span_id
    assert sa.name == "process Relay"
    assert sb.kind is SpanKind.CONSUMER
    assert sb.attributes is not None
    assert sb.attributes["messaging.system"] == "mailslot"
    assert sb.attributes["messaging.operation.type"] == "process"
    assert sb.attributes["mailslot.message.type"] == "str"
    assert sb.attributes["mailslot.message.sender"] == "/user/a"
    assert int(str(sb.attributes["messaging.message.id"])) > 0
    assert len(tracing._attached) == 0


async def test_a_message_from_outside_any_span_starts_a_new_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with TestKit(instrumentation=TracingInstrumentation(provider)) as kit:
        a = kit.system.spawn(lambda: Relay(None), name="a")
        a.tell("x")
        a.tell("y")
        await kit.settle()
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    assert all(s.parent is None and s.kind is SpanKind.INTERNAL for s in spans)
    assert spans[0].context.trace_id != spans[1].context.trace_id


async def test_a_coroutine_handler_keeps_its_span_across_awaits(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = TracingInstrumentation(provider)
    async with TestKit(instrumentation=tracing) as kit:
        c = kit.system.spawn(lambda: Relay(None), name="c")
        b = kit.system.spawn(lambda: AsyncRelay(c), name="b")
        a = kit.system.spawn(lambda: Relay(b), name="a")
        other = kit.system.spawn(lambda: Relay(None), name="other")
        a.tell("edit")
        await kit.settle()
        # b is awaiting: its span is open, and no longer attached in the dispatcher
        assert len(tracing._attached) == 0
        assert not trace.get_current_span().get_span_context().is_valid
        other.tell("unrelated")  # handled while b awaits: its own trace
        await kit.settle()
        await kit.advance(1)
    actors = by_actor(exporter.get_finished_spans())
    sa, sb, sc = actors["/user/a"], actors["/user/b"], actors["/user/c"]
    assert sb.parent is not None
    assert sb.parent.span_id == sa.context.span_id
    assert sc.parent is not None
    assert sc.parent.span_id == sb.context.span_id
    assert sc.context.trace_id == sa.context.trace_id
    assert actors["/user/other"].parent is None
    assert actors["/user/other"].context.trace_id != sa.context.trace_id
    assert sb.end_time is not None
    assert sc.start_time is not None
    assert sb.end_time >= sc.start_time  # b's span covered its awaits, up to telling c


async def test_failures_are_recorded_on_the_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with TestKit(instrumentation=TracingInstrumentation(provider)) as kit:
        c = kit.system.spawn(lambda: Relay(None), name="c")
        sync = kit.system.spawn(lambda: Relay(None), name="sync")
        coro = kit.system.spawn(lambda: AsyncRelay(c), name="coro")
        sync.tell("boom")
        coro.tell("boom")
        await kit.advance(1)
    actors = by_actor(exporter.get_finished_spans())
    for path, error in (("/user/sync", "ValueError"), ("/user/coro", "RuntimeError")):
        span = actors[path]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is not None
        assert error in span.status.description
        assert span.attributes is not None
        assert span.attributes["error.type"] == error
        assert [e.name for e in span.events] == ["exception"]


def test_the_span_is_current_in_a_task_made_during_the_message_and_not_after() -> None:
    """The mechanism the runtime relies on, without the runtime: attach, copy, detach in batch."""
    provider = TracerProvider()
    tracing = TracingInstrumentation(provider)

    async def scenario() -> None:
        ref = ActorRef("/user/x", 1)
        seen: list[int] = []

        async def handler() -> None:
            await asyncio.sleep(0)
            seen.append(trace.get_current_span().get_span_context().span_id)

        before = otel_context.get_current()
        token = tracing.message_begin(ref, "X", "m", None)
        task = asyncio.get_running_loop().create_task(handler())  # copies the context now
        tracing.batch(ref, "X", 1, 0.0, 0)  # end of the turn, in the dispatcher
        assert otel_context.get_current() == before
        await task
        tracing.message_end(ref, "X", token, 0.0, None)
        assert seen == [token.span.get_span_context().span_id]
        assert not token.span.is_recording()  # ended

    asyncio.run(scenario())
    provider.shutdown()


async def test_a_malformed_trace_context_from_outside_starts_a_new_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with TestKit(instrumentation=TracingInstrumentation(provider)) as kit:
        a = kit.system.spawn(lambda: Relay(None), name="a")
        a.deliver("x", Envelope(message_id=1, timestamp=0.0, trace="00-not-a-trace-01"))
        good = format_traceparent(0xABC, 0xDEF, 1)
        a.deliver("y", Envelope(message_id=2, timestamp=0.0, trace=good))
        await kit.settle()
    spans = {
        str((s.attributes or {})["messaging.message.id"]): s for s in exporter.get_finished_spans()
    }
    assert spans["1"].parent is None
    parent = spans["2"].parent
    assert parent is not None
    assert parent.trace_id == 0xABC
    assert parent.span_id == 0xDEF


# ---------------------------------------------------------------------------- traceparent


@given(
    trace_id=st.integers(min_value=1, max_value=2**128 - 1),
    span_id=st.integers(min_value=1, max_value=2**64 - 1),
    flags=st.integers(min_value=0, max_value=255),
)
def test_traceparent_round_trips(trace_id: int, span_id: int, flags: int) -> None:
    text = format_traceparent(trace_id, span_id, flags)
    assert len(text) == 55
    assert parse_traceparent(text) == (trace_id, span_id, flags)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # uppercase
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # v00 has 4 fields
        " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ],
)
def test_malformed_traceparents_are_rejected(text: str) -> None:
    assert parse_traceparent(text) is None


def test_a_later_version_may_append_fields() -> None:
    text = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-more"
    assert parse_traceparent(text) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        1,
    )


# -------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": " "}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none,otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_off_unless_the_environment_names_an_exporter(
    env: dict[str, str], enabled: bool
) -> None:
    assert tracing_enabled(env) is enabled


def test_provider_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert tracer_provider_from_env() is None
    assert tracing_from_env() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = tracer_provider_from_env()
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "mailslot"
    provider.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "editor-eu")
    instr = tracing_from_env()
    assert instr is not None
    assert isinstance(instr.tracer_provider, TracerProvider)
    assert instr.tracer_provider.resource.attributes["service.name"] == "editor-eu"
    instr.shutdown()


def test_an_exporter_that_is_not_installed_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin-json-nope")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    with pytest.raises(ConfigError, match="zipkin-json-nope"):
        tracer_provider_from_env()
