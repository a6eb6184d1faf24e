"""The messages and records the runtime itself produces.

All are immutable: frozen, slotted dataclasses, and ``Envelope`` a named tuple. ``Terminated``,
``ReceiveTimeout``, ``SlowDown`` and ``Resume`` reach actors; ``DeadLetter`` reaches dead-letter
subscribers; ``Envelope`` is the metadata a message carries when the system stamps it (see
:class:`mailslot.runtime.ActorSystem`'s ``envelopes``).

A message type declares itself *droppable* (presence-like traffic that may be shed under load) with
the :func:`droppable` class decorator or a ``__mailslot_droppable__ = True`` class attribute. Every
other message is *critical*: it is never dropped for overflow; instead ``tell`` raises
``MailboxFull`` and ``await send`` waits for room.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    from mailslot.runtime.core import ActorRef

__all__ = [
    "DeadLetter",
    "DeadLetterReason",
    "Envelope",
    "ReceiveTimeout",
    "Resume",
    "SlowDown",
    "Terminated",
    "droppable",
    "is_droppable",
]

T = TypeVar("T", bound=type)


def droppable(cls: T) -> T:
    """Class decorator: messages of this type may be dropped under overload (and say so)."""
    setattr(cls, "__mailslot_droppable__", True)  # noqa: B010
    return cls


def is_droppable(message: object) -> bool:
    """True if the message's type was declared droppable."""
    return bool(getattr(type(message), "__mailslot_droppable__", False))


class DeadLetterReason(enum.StrEnum):
    """Why a message could not be delivered."""

    STOPPED = "stopped"  #: the target had stopped (or was stopping and discarding)
    OVERFLOW = "overflow"  #: a droppable message met a full mailbox or outbox
    EXPIRED = "expired"  #: its time to live ran out before it was handled
    COALESCED = "coalesced"  #: a newer message with the same key replaced it
    UNHANDLED = "unhandled"  #: the actor said it does not handle it (``context.unhandled``)
    NO_RECIPIENT = "no_recipient"  #: a reply to a message that had no sender


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that was not delivered, with the reason."""

    message: Any
    sender: ActorRef | None
    recipient: ActorRef
    reason: DeadLetterReason


@dataclass(frozen=True, slots=True)
class Terminated:
    """Sent to every watcher of ``actor`` when it has stopped."""

    actor: ActorRef


@dataclass(frozen=True, slots=True)
class ReceiveTimeout:
    """Sent to an actor that set a receive timeout and got no message for that long."""


@dataclass(frozen=True, slots=True)
class SlowDown:
    """``target``'s mailbox passed its high watermark while this actor was sending to it.

    The runtime already holds this actor's further messages to ``target`` in a bounded outbox; the
    actor's ``slowed_down`` hook is told so that it can stop producing (a WebSocket session stops
    reading its socket).
    """

    target: ActorRef


@dataclass(frozen=True, slots=True)
class Resume:
    """``target``'s mailbox fell to its low watermark and this actor's outbox was flushed."""

    target: ActorRef


class Envelope(NamedTuple):
    """A message's metadata when the system stamps it.

    Immutable. A named tuple rather than a frozen dataclass: one is made per stamped message and
    per message a cluster node delivers, and a frozen dataclass costs about 4x as much to build
    (every field goes through ``object.__setattr__``).

    Attributes:
        message_id: unique within the system run (and with ``system_id``, across runs).
        timestamp: the clock's time when the message was sent.
        sender: who sent it, or ``None`` from outside any actor.
        correlation_id: set for ask requests; the reply carries the same id.
        trace: a W3C ``traceparent`` (or any trace context an instrumentation puts there).
        expires_at: the clock time after which the message becomes a dead letter, or ``None``.
    """

    message_id: int
    timestamp: float
    sender: ActorRef | None = None
    correlation_id: int | None = None
    trace: str | None = None
    expires_at: float | None = None
