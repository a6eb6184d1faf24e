"""Observability adapters over the runtime's instrumentation hook.

Prometheus metrics (:mod:`.metrics`), OpenTelemetry traces (:mod:`.tracing`), structlog logs
(:mod:`.logs`), the live dashboard (:mod:`.dashboard`, :mod:`.app`) and the glue that puts them
on one system (:mod:`.compose`, :mod:`.wiring`). The runtime never imports this package; the
layers above the runtime report through :class:`mailslot.meters.Meters` instead. See
``docs/observability.md``.
"""

from __future__ import annotations

from mailslot.observe.app import observe_app, observe_routes
from mailslot.observe.compose import CompositeInstrumentation, combine
from mailslot.observe.dashboard import Dashboard
from mailslot.observe.logs import MessageLogInstrumentation, configure_logging
from mailslot.observe.metrics import (
    MetricsCollector,
    MetricsInstrumentation,
    exposition,
    make_registry,
    metrics_instrumentation,
)
from mailslot.observe.tracing import (
    TracingInstrumentation,
    tracer_provider_from_env,
    tracing_enabled,
    tracing_from_env,
)
from mailslot.observe.wiring import Observability, observability_from_env

__all__ = [
    "CompositeInstrumentation",
    "Dashboard",
    "MessageLogInstrumentation",
    "MetricsCollector",
    "MetricsInstrumentation",
    "Observability",
    "TracingInstrumentation",
    "combine",
    "configure_logging",
    "exposition",
    "make_registry",
    "metrics_instrumentation",
    "observability_from_env",
    "observe_app",
    "observe_routes",
    "tracer_provider_from_env",
    "tracing_enabled",
    "tracing_from_env",
]
