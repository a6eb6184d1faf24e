"""observability_from_env: metrics always, tracing and the message log when asked."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mailslot.observe import (
    CompositeInstrumentation,
    MessageLogInstrumentation,
    MetricsInstrumentation,
    TracingInstrumentation,
    observability_from_env,
)
from mailslot.runtime import Actor
from mailslot.testing import TestKit


class Worker(Actor):
    def receive(self, message: Any) -> None:
        pass


def test_metrics_alone_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    obs = observability_from_env()
    assert obs.tracing is None
    assert obs.message_log is None
    assert isinstance(obs.instrumentation, MetricsInstrumentation)
    assert obs.instrumentation is obs.metrics
    obs.shutdown()


def test_tracing_and_the_message_log_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    obs = observability_from_env(log_messages=True)
    assert isinstance(obs.tracing, TracingInstrumentation)
    assert isinstance(obs.message_log, MessageLogInstrumentation)
    combined = obs.instrumentation
    assert isinstance(combined, CompositeInstrumentation)
    assert combined.parts == (obs.tracing, obs.message_log, obs.metrics)
    obs.shutdown()


async def test_the_app_serves_the_meters_and_the_system(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    obs = observability_from_env()
    async with TestKit(instrumentation=obs.instrumentation) as kit:
        kit.system.spawn(Worker).tell(1)
        await kit.settle()
        obs.meters.doc_ops_applied.inc(3)
        registry = obs.registry(kit.system)
        assert registry.get_sample_value("mailslot_doc_ops_applied_total") == 3
        transport = httpx.ASGITransport(app=obs.app(kit.system))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            text = (await http.get("/metrics")).text
    assert "mailslot_doc_ops_applied_total 3.0" in text
    assert 'mailslot_actor_messages_processed_total{actor_type="Worker"} 1.0' in text
