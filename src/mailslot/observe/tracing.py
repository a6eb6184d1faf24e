"""OpenTelemetry tracing for actors: a span per handled message, the context in the envelope.

Theory of operation
-------------------
:class:`TracingInstrumentation` asks the runtime for per-message hooks and for envelopes on every
message. When a message is sent, ``outgoing`` writes the *current* span context (the span of the
message being handled, or whatever span the sending code outside the actors has open) into the
envelope's ``trace`` slot as a W3C ``traceparent`` string. When a message is handled,
``message_begin`` starts a span ``process {ActorType}`` whose parent is read from that string and
nothing else (so a span never inherits a context that leaked into the dispatcher), and attaches it
as the current OpenTelemetry context; tells made by the handler then carry it on. One client edit
is thus one trace across actors, and across RabbitMQ when the cluster layer copies the string into
its message headers and back into the envelope of each logical message (the messaging semantic
conventions' "one process span per message, parented by its creation context").

*Sync and coroutine handlers.* The runtime calls ``message_begin``, then the handler. A plain
handler returns and ``message_end`` ends the span and detaches the context, right there. A
coroutine handler becomes a task; asyncio copies the current context into the task when it is
created, that is while the span is attached, so the span is current across all the handler's
awaits. The dispatcher, though, must not keep it: ``message_end`` only comes when the task is done,
so ``batch`` (called at the end of every turn, in the dispatcher) detaches whatever this turn left
attached, and the later ``message_end`` only ends the span.

*Cost.* None unless installed: :func:`tracing_from_env` returns ``None`` unless
``OTEL_TRACES_EXPORTER`` names an exporter (and ``OTEL_SDK_DISABLED`` is not ``true``). Installed,
each message costs a span (the SDK's ``start_span``/``end``, a few microseconds) plus an envelope.
Only ``traceparent`` is carried: a ``tracestate`` is dropped.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from mailslot import __version__
from mailslot.errors import ConfigError
from mailslot.observe.scopes import Scope, ScopeStack
from mailslot.runtime import ActorRef, Envelope, Instrumentation

__all__ = [
    "TracingInstrumentation",
    "format_traceparent",
    "parse_traceparent",
    "tracer_provider_from_env",
    "tracing_enabled",
    "tracing_from_env",
]

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """A W3C ``traceparent`` (version 00) for these ids."""
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xFF:02x}"


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """``(trace_id, span_id, flags)`` from a W3C ``traceparent``, or ``None`` if it is not one.

    Follows the W3C rules: lowercase hex, version ``ff`` invalid, version ``00`` exactly four
    fields, later versions may append fields, all-zero ids invalid. Never raises: a trace context
    from outside (an AMQP header) that is malformed just starts a new trace.
    """
    m = _TRACEPARENT.fullmatch(value)
    if m is None:
        return None
    version, tid, sid, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(tid, 16), int(sid, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, int(flags, 16)


@dataclass(frozen=True, slots=True)
class _Active:
    """A span started by ``message_begin``, and the scope that detaches it."""

    span: Span
    scope: Scope


_EMPTY = Context()


class TracingInstrumentation(Instrumentation):
    """One span per handled message, parented by the sender's span (see the module docs).

    Args:
        tracer_provider: where spans go; the global provider when ``None``.
    """

    per_message = True
    stamps_envelopes = True

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer_provider = tracer_provider
        self._tracer = trace.get_tracer(
            "mailslot.runtime", __version__, tracer_provider=tracer_provider
        )
        self._attached = ScopeStack()

    def outgoing(self, sender: ActorRef | None, target: ActorRef, message: Any) -> str | None:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format_traceparent(ctx.trace_id, ctx.span_id, ctx.trace_flags)

    def message_begin(
        self, ref: ActorRef, actor_type: str, message: Any, envelope: Envelope | None
    ) -> _Active:
        parent = _EMPTY
        kind = SpanKind.INTERNAL
        attributes: dict[str, str | int] = {
            "messaging.system": "mailslot",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": ref.path,
            "messaging.destination.template": actor_type,
            "mailslot.actor.path": ref.path,
            "mailslot.actor.type": actor_type,
            "mailslot.message.type": type(message).__name__,
        }
        if envelope is not None:
            attributes["messaging.message.id"] = str(envelope.message_id)
            if envelope.correlation_id is not None:
                attributes["messaging.message.conversation_id"] = str(envelope.correlation_id)
            if envelope.sender is not None:
                attributes["mailslot.message.sender"] = envelope.sender.path
            parsed = parse_traceparent(envelope.trace) if envelope.trace else None
            if parsed is not None:
                trace_id, span_id, flags = parsed
                remote = SpanContext(trace_id, span_id, True, TraceFlags(flags))
                parent = trace.set_span_in_context(NonRecordingSpan(remote), _EMPTY)
                kind = SpanKind.CONSUMER
        span = self._tracer.start_span(
            f"process {actor_type}", context=parent, kind=kind, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span, _EMPTY))
        return _Active(span, self._attached.open(functools.partial(otel_context.detach, token)))

    def message_end(
        self,
        ref: ActorRef,
        actor_type: str,
        token: Any,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        if not isinstance(token, _Active):
            return
        span = token.span
        if error is not None:
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()
        self._attached.close(token.scope)  # a plain handler's: still attached, and on top

    def pipe_begin(self, ref: ActorRef, actor_type: str, label: str) -> Span:
        """A span for an operation an actor waits on (a store commit), child of the current
        message's span; its result is delivered in this span's context."""
        return self._tracer.start_span(
            label or f"wait {actor_type}",
            kind=SpanKind.INTERNAL,
            attributes={"mailslot.actor.path": ref.path, "mailslot.actor.type": actor_type},
        )

    def pipe_end(self, token: Any, error: BaseException | None) -> str | None:
        if not isinstance(token, Span):
            return None
        if error is not None:
            token.record_exception(error)
            token.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        token.end()
        ctx = token.get_span_context()
        return format_traceparent(ctx.trace_id, ctx.span_id, ctx.trace_flags)

    def batch(self, ref: ActorRef, actor_type: str, count: int, seconds: float, depth: int) -> None:
        # the end of a turn, in the dispatcher: a coroutine handler's span stays current in its
        # task (which copied the context), but not here
        self._attached.close_all()

    def shutdown(self) -> None:
        """Flush and stop the tracer provider, if this instrumentation made or was given one."""
        shutdown = getattr(self.tracer_provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


# ------------------------------------------------------------------------------ configuration


def tracing_enabled(environ: dict[str, str] | None = None) -> bool:
    """True when the standard ``OTEL_*`` variables ask for traces to be exported.

    mailslot's default is *off* (the OpenTelemetry default exporter, OTLP, would need a
    collector): set ``OTEL_TRACES_EXPORTER`` (``console``, ``otlp``, ...) to turn tracing on.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return any(n and n.lower() != "none" for n in names)


def _exporter(name: str) -> SpanExporter:
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        hint = " (pip install 'mailslot[otlp]')" if name.startswith("otlp") else ""
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={name!r}: no span exporter of that name is installed{hint}"
        )
    exporter_class = next(iter(found)).load()
    exporter = exporter_class()
    if not isinstance(exporter, SpanExporter):
        raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r} did not make a span exporter")
    return exporter


def tracer_provider_from_env() -> TracerProvider | None:
    """An SDK tracer provider configured by the standard ``OTEL_*`` variables, or ``None``.

    ``OTEL_TRACES_EXPORTER`` (a comma-separated list of exporter entry points, for instance
    ``console`` or ``otlp``), ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (the service
    defaults to ``mailslot``), ``OTEL_TRACES_SAMPLER``/``_ARG`` and ``OTEL_BSP_*`` are honoured;
    the exporters read their own variables (``OTEL_EXPORTER_OTLP_ENDPOINT``, ...).

    Raises:
        ConfigError: an exporter is named that is not installed.
    """
    if not tracing_enabled():
        return None
    names = [n.strip().lower() for n in os.environ["OTEL_TRACES_EXPORTER"].split(",")]
    exporters = [_exporter(n) for n in names if n and n != "none"]
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource.create({"service.name": "mailslot"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracing_from_env() -> TracingInstrumentation | None:
    """A :class:`TracingInstrumentation` when the environment asks for traces, else ``None``."""
    provider = tracer_provider_from_env()
    return TracingInstrumentation(provider) if provider is not None else None
