"""One object that holds a process's observability, for ``mailslot serve`` to wire up.

::

    obs = observability_from_env(log_messages=args.log_level == "debug")
    system = ActorSystem("mailslot", instrumentation=obs.instrumentation)
    ...  # hand obs.meters to the collab, store and cluster layers
    app.mount("/", obs.app(system, extra_gauges={...}))
    ...
    obs.shutdown()  # flushes spans

Metrics are always on (their cost is small, see :mod:`mailslot.observe.metrics`); tracing only
when the ``OTEL_*`` variables ask for it; the per-message log only when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from starlette.routing import Router

from mailslot.meters import Meters
from mailslot.observe.app import observe_app
from mailslot.observe.compose import combine
from mailslot.observe.logs import MessageLogInstrumentation
from mailslot.observe.metrics import MetricsInstrumentation, make_registry
from mailslot.observe.tracing import TracingInstrumentation, tracing_from_env
from mailslot.runtime import ActorSystem, Instrumentation

__all__ = ["Observability", "observability_from_env"]


@dataclass
class Observability:
    """Metrics, and optionally tracing and the message log, as one instrumentation.

    ``instrumentation`` (what the actor system is given) calls tracing first, so its span is
    current while the message log binds and logs, then metrics.
    """

    metrics: MetricsInstrumentation = field(default_factory=MetricsInstrumentation)
    meters: Meters = field(default_factory=Meters)
    tracing: TracingInstrumentation | None = None
    message_log: MessageLogInstrumentation | None = None
    instrumentation: Instrumentation = field(init=False)

    def __post_init__(self) -> None:
        combined = combine(self.tracing, self.message_log, self.metrics)
        assert combined is not None
        self.instrumentation = combined

    def registry(self, system: ActorSystem) -> CollectorRegistry:
        """A Prometheus registry for ``system`` (and this process's meters)."""
        return make_registry(system, self.metrics, self.meters)

    def app(
        self,
        system: ActorSystem,
        *,
        extra_gauges: Mapping[str, Callable[[], float]] | None = None,
    ) -> Router:
        """``/metrics``, ``/dashboard`` and ``/dashboard/data`` for ``system``."""
        return observe_app(system, self.metrics, meters=self.meters, extra_gauges=extra_gauges)

    def shutdown(self) -> None:
        """Flush and stop tracing (if on)."""
        if self.tracing is not None:
            self.tracing.shutdown()


def observability_from_env(
    *, log_messages: bool = False, bind_log_context: bool = False, sample_every: int = 64
) -> Observability:
    """Metrics always; tracing if ``OTEL_TRACES_EXPORTER`` asks; the message log if asked.

    Args:
        log_messages: log every message sent and received at debug level.
        bind_log_context: bind actor and message ids to handler log lines even without
            ``log_messages`` (costs per message, like tracing).
        sample_every: see :class:`~mailslot.observe.metrics.MetricsInstrumentation`.

    Raises:
        ConfigError: the environment names a trace exporter that is not installed.
    """
    log = (
        MessageLogInstrumentation(log_messages=log_messages)
        if log_messages or bind_log_context
        else None
    )
    return Observability(
        metrics=MetricsInstrumentation(sample_every=sample_every),
        tracing=tracing_from_env(),
        message_log=log,
    )
