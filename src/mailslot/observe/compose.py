"""Several instrumentations on one system: :class:`CompositeInstrumentation` and :func:`combine`.

An actor system takes one :class:`~mailslot.runtime.Instrumentation`. To run metrics and tracing
(and the message log) together, the composite calls each part's hook in turn: ``message_begin`` in
order, ``message_end`` in reverse order (so a tracing part listed first has its span current while
later parts run), ``outgoing`` returns the first trace context a part gives. A part that raises is
logged and skipped; the others still run, and each gets back the token it returned.

``per_message`` is true while any part wants per-message hooks (read by the dispatcher once per
turn, so a sampling part can switch it); every part then sees every message, and a
:class:`~mailslot.observe.metrics.MetricsInstrumentation` next to a tracer times every message
exactly. :func:`combine` returns a lone instrumentation itself, so the metrics-only path pays
for no fan-out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from mailslot.runtime import ActorRef, DeadLetter, Envelope, Instrumentation

__all__ = ["CompositeInstrumentation", "combine"]

log = logging.getLogger("mailslot.observe")

T = TypeVar("T")


def _call(fn: Callable[..., T], *args: Any) -> T | None:
    try:
        return fn(*args)
    except Exception:
        log.exception("instrumentation hook %s raised; ignored", getattr(fn, "__qualname__", fn))
        return None


class CompositeInstrumentation(Instrumentation):
    """Calls every part's hooks (see the module docs for the order)."""

    def __init__(self, *parts: Instrumentation) -> None:
        if not parts:
            raise ValueError("a composite instrumentation needs at least one part")
        self.parts = parts
        self.stamps_envelopes = any(p.stamps_envelopes for p in parts)

    @property
    def per_message(self) -> bool:
        return any(p.per_message for p in self.parts)

    @per_message.setter
    def per_message(self, value: bool) -> None:
        raise AttributeError("a composite's per_message follows its parts")

    def spawned(self, ref: ActorRef, actor_type: str) -> None:
        for p in self.parts:
            _call(p.spawned, ref, actor_type)

    def stopped(self, ref: ActorRef, actor_type: str) -> None:
        for p in self.parts:
            _call(p.stopped, ref, actor_type)

    def restarted(self, ref: ActorRef, actor_type: str, error: BaseException) -> None:
        for p in self.parts:
            _call(p.restarted, ref, actor_type, error)

    def failed(self, ref: ActorRef, actor_type: str, error: BaseException) -> None:
        for p in self.parts:
            _call(p.failed, ref, actor_type, error)

    def batch(self, ref: ActorRef, actor_type: str, count: int, seconds: float, depth: int) -> None:
        for p in self.parts:
            _call(p.batch, ref, actor_type, count, seconds, depth)

    def message_begin(
        self, ref: ActorRef, actor_type: str, message: Any, envelope: Envelope | None
    ) -> tuple[Any, ...]:
        return tuple(_call(p.message_begin, ref, actor_type, message, envelope) for p in self.parts)

    def message_end(
        self,
        ref: ActorRef,
        actor_type: str,
        token: Any,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        tokens = token if isinstance(token, tuple) else (None,) * len(self.parts)
        for p, t in zip(reversed(self.parts), reversed(tokens), strict=True):
            _call(p.message_end, ref, actor_type, t, seconds, error)

    def outgoing(self, sender: ActorRef | None, target: ActorRef, message: Any) -> str | None:
        found: str | None = None
        for p in self.parts:
            trace = _call(p.outgoing, sender, target, message)
            if found is None:
                found = trace
        return found

    def pipe_begin(self, ref: ActorRef, actor_type: str, label: str) -> tuple[Any, ...]:
        return tuple(_call(p.pipe_begin, ref, actor_type, label) for p in self.parts)

    def pipe_end(self, token: Any, error: BaseException | None) -> str | None:
        tokens = token if isinstance(token, tuple) else (None,) * len(self.parts)
        found: str | None = None
        for p, t in zip(self.parts, tokens, strict=True):
            trace = _call(p.pipe_end, t, error)
            if found is None:
                found = trace
        return found

    def dead_letter(self, letter: DeadLetter) -> None:
        for p in self.parts:
            _call(p.dead_letter, letter)

    def backpressure(self, target: ActorRef, sender: ActorRef, slow: bool) -> None:
        for p in self.parts:
            _call(p.backpressure, target, sender, slow)


def combine(*parts: Instrumentation | None) -> Instrumentation | None:
    """The parts that are not ``None`` as one instrumentation (itself if only one, or ``None``)."""
    present = [p for p in parts if p is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return CompositeInstrumentation(*present)
