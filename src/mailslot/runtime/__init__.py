"""The lock-free actor runtime (standard library only).

Actors own private state and handle one message at a time; they talk only through
:class:`ActorRef` s. See :mod:`mailslot.runtime.core` for the theory of operation.
"""

from __future__ import annotations

from mailslot.runtime.clock import Cancellable, Clock, LoopClock
from mailslot.runtime.core import Actor, ActorRef, ActorSystem, Context, DeadLetters, Scheduler
from mailslot.runtime.instrument import (
    ActorStatistics,
    Instrumentation,
    SystemStatistics,
    TypeStatistics,
)
from mailslot.runtime.mailbox import Coalescing
from mailslot.runtime.messages import (
    DeadLetter,
    DeadLetterReason,
    Envelope,
    ReceiveTimeout,
    Resume,
    SlowDown,
    Terminated,
    droppable,
    is_droppable,
)
from mailslot.runtime.supervision import (
    Decision,
    Directive,
    RestartHistory,
    SupervisorStrategy,
    decide,
)

__all__ = [
    "Actor",
    "ActorRef",
    "ActorStatistics",
    "ActorSystem",
    "Cancellable",
    "Clock",
    "Coalescing",
    "Context",
    "DeadLetter",
    "DeadLetterReason",
    "DeadLetters",
    "Decision",
    "Directive",
    "Envelope",
    "Instrumentation",
    "LoopClock",
    "ReceiveTimeout",
    "RestartHistory",
    "Resume",
    "Scheduler",
    "SlowDown",
    "SupervisorStrategy",
    "SystemStatistics",
    "Terminated",
    "TypeStatistics",
    "decide",
    "droppable",
    "is_droppable",
]
