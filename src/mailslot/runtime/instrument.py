"""The runtime's instrumentation hook, and its statistics snapshots.

The runtime never imports Prometheus, OpenTelemetry or structlog; :mod:`mailslot.observe` implements
:class:`Instrumentation` and installs it on a system. With none installed the hot path pays nothing
(the dispatcher checks one attribute per batch, not per message).

Hooks are called on the event loop thread, synchronously, at the moment the event happens; they must
be cheap and must not raise (an exception from a hook is logged and otherwise ignored, so a broken
exporter never breaks the actors it watches).

Per-message hooks (``message_begin``/``message_end``) cost a call per message, so the system only
makes them when ``per_message`` is true; otherwise it reports whole batches through ``batch``.
``outgoing`` lets a tracer attach its context to every message sent while it handles one; when an
instrumentation has ``stamps_envelopes`` true, the system stamps every message with an
:class:`~mailslot.runtime.messages.Envelope`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailslot.runtime.core import ActorRef
    from mailslot.runtime.messages import DeadLetter, Envelope

__all__ = ["ActorStatistics", "Instrumentation", "SystemStatistics", "TypeStatistics"]


class Instrumentation:
    """Base class with a no-op for every hook; override the ones you need."""

    #: call ``message_begin``/``message_end`` around every message (else only ``batch``)
    per_message: bool = False
    #: stamp every message with an Envelope and call ``outgoing`` for its trace slot
    stamps_envelopes: bool = False

    def spawned(self, ref: ActorRef, actor_type: str) -> None:
        """An actor started (first incarnation)."""

    def stopped(self, ref: ActorRef, actor_type: str) -> None:
        """An actor stopped for good."""

    def restarted(self, ref: ActorRef, actor_type: str, error: BaseException) -> None:
        """A fresh incarnation replaced a failed one."""

    def failed(self, ref: ActorRef, actor_type: str, error: BaseException) -> None:
        """A handler or lifecycle hook raised; the supervisor decides next."""

    def batch(self, ref: ActorRef, actor_type: str, count: int, seconds: float, depth: int) -> None:
        """``count`` messages were handled in ``seconds``; ``depth`` were left in the mailbox."""

    def message_begin(
        self, ref: ActorRef, actor_type: str, message: Any, envelope: Envelope | None
    ) -> Any:
        """A message is about to be handled; the return value is passed to ``message_end``."""
        return None

    def message_end(
        self,
        ref: ActorRef,
        actor_type: str,
        token: Any,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        """The message's handler returned (or its coroutine finished)."""

    def outgoing(self, sender: ActorRef | None, target: ActorRef, message: Any) -> str | None:
        """A message is being sent; return a trace context to carry, or ``None``."""
        return None

    def pipe_begin(self, ref: ActorRef, actor_type: str, label: str) -> Any:
        """An actor started waiting for an operation (``pipe_to_self``); with ``per_message``."""
        return None

    def pipe_end(self, token: Any, error: BaseException | None) -> str | None:
        """The operation finished; return the trace context its result is delivered in."""
        return None

    def dead_letter(self, letter: DeadLetter) -> None:
        """A message could not be delivered (stopped target, overflow, expiry, coalescing)."""

    def backpressure(self, target: ActorRef, sender: ActorRef, slow: bool) -> None:
        """``target`` told ``sender`` to slow down (``slow``) or to resume."""


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    """A snapshot of one actor."""

    path: str
    actor_type: str
    state: str
    mailbox_depth: int
    mailbox_capacity: int
    mailbox_high_water: int
    processed: int
    failures: int
    restarts: int
    throttled_senders: int
    outbox_depth: int
    children: int


@dataclass(frozen=True, slots=True)
class TypeStatistics:
    """Totals over the live actors of one type."""

    actors: int
    mailbox_depth: int
    mailbox_high_water: int
    processed: int
    failures: int
    restarts: int


@dataclass(frozen=True, slots=True)
class SystemStatistics:
    """A snapshot of a whole system."""

    name: str
    actors: int
    processed: int
    failures: int
    restarts: int
    dead_letters: Mapping[str, int]
    by_type: Mapping[str, TypeStatistics]
