"""One client edit is one trace: session, document manager, document, store commit, hub, and the
sessions the op reaches (an in-process server, real sockets, the SDK's in-memory exporter)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mailslot.observe import Observability
from mailslot.observe.tracing import TracingInstrumentation
from mailslot.server import Node, NodeConfig, RunningServer, start_server
from tests.wsclient import connect

WAIT = 10.0


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    obs = Observability(tracing=TracingInstrumentation(tracer_provider=provider))
    config = NodeConfig(port=0, db=f"sqlite:///{tmp_path}/trace.db")
    running = await start_server(config, node=Node(config, observability=obs))
    try:
        yield running, exporter
    finally:
        await running.stop()
        provider.shutdown()


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


async def test_one_edit_is_one_trace(traced: tuple[RunningServer, InMemorySpanExporter]) -> None:
    server, exporter = traced
    ann, bob = await connect(server.ws_url), await connect(server.ws_url)
    await ann.send(json.dumps({"a": "op", "c": "docs", "d": "t", "seq": 1,
                               "create": {"type": "text-unicode", "data": "hi"}}))  # fmt: skip
    await ann.until(a="op")
    await bob.send(json.dumps({"a": "s", "c": "docs", "d": "t"}))
    await bob.until(a="s")
    exporter.clear()

    await ann.send(json.dumps({"a": "op", "c": "docs", "d": "t", "v": 1, "seq": 2, "op": ["!"]}))
    await ann.until(a="op", seq=2)
    await bob.until(a="op", seq=2)
    await ann.close()
    await bob.close()

    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    frame = next(
        s for s in spans
        if attr(s, "mailslot.actor.type") == "SessionActor"
        and attr(s, "mailslot.message.type") == "ClientFrame"
    )  # fmt: skip
    trace_id = frame.context.trace_id
    edit = [s for s in spans if s.context.trace_id == trace_id]

    def parent_of(span: ReadableSpan) -> ReadableSpan | None:
        return by_id.get(span.parent.span_id) if span.parent is not None else None

    def chain(span: ReadableSpan) -> list[str]:
        names = []
        node: ReadableSpan | None = span
        while node is not None:
            message = attr(node, "mailslot.message.type")
            names.append(f"{attr(node, 'mailslot.actor.type')}:{message}" if message else node.name)
            node = parent_of(node)
        return list(reversed(names))

    broadcast = next(s for s in edit if attr(s, "mailslot.message.type") == "OpBroadcast")
    ack = next(s for s in edit if attr(s, "mailslot.message.type") == "OpAcked")
    assert chain(broadcast) == [
        "SessionActor:ClientFrame",
        "DocumentManager:SubmitOp",
        "DocumentActor:SubmitOp",
        "store commit",
        "DocumentActor:_Committed",
        "Hub:Publish",
        "SessionActor:OpBroadcast",
    ]
    assert chain(ack)[:5] == chain(broadcast)[:5]
    assert chain(ack)[-1] == "SessionActor:OpAcked"
    assert attr(broadcast, "mailslot.actor.path") != attr(ack, "mailslot.actor.path")
