"""The actor runtime: systems, actors, refs, contexts.

Theory of operation
-------------------
Everything runs on one asyncio event loop thread; nothing here is thread-safe and nothing needs a
lock, because every piece of mutable state belongs to exactly one actor (its ``_Cell``) or to the
system, and only the loop thread touches it.

*Mailboxes and scheduling.* A cell's mailbox is a deque of ``(message, meta)`` items (``meta`` is
the sender's ref, an :class:`Envelope`, or ``None``). ``tell`` appends and, if the cell is not yet
scheduled, puts it on the system's ready queue; one ``call_soon`` per burst wakes the dispatcher,
which runs ready cells in turn. Each turn a cell handles at most ``throughput`` messages (the
fairness budget; a cell with more than twice that waiting handles its whole backlog, since its
senders are waiting on it) and is requeued if more are waiting, and the dispatcher gives the loop
back after ``dispatch_budget`` messages so that sockets and timers are served. No task and no future
is made per message: a plain-function handler runs inline in the dispatcher.

*The gate.* ``tell`` takes its fast path only while ``len(mailbox) < cell.gate``. The gate sits at
the high watermark normally, and at 0 whenever anything needs the careful path: a stopped or
stopping cell, senders being held back, a coalescing mailbox, debug checks, or stamped envelopes. So
the fast path costs one ``len`` and one comparison more than a bare deque append.

*Two cores.* The hot path (``LocalActorRef.tell``, the loop of a turn in ``turn``, and the fields
they touch) is written twice: in Python (``_PyRefCore``, ``_PySystemCore``, ``_PyCellCore``) and in
C (``_speedups.c``, standard C API only), which the install compiles when a C compiler is at hand.
The C core roughly halves the cost of a tell (``mailslot bench runtime``); the Python core is the
reference and the fallback (``MAILSLOT_PURE_RUNTIME=1`` forces it), and the runtime's test suites
run against both. :data:`ACCELERATED` says which one runs.

*Coroutine handlers.* A handler that returns a coroutine makes the cell *busy*: the coroutine runs
in a task owned by the cell, the cell takes no other message until it finishes, then carries on. The
sender of the message being handled stays available (``context.sender``) across its awaits.

*Lifecycle.* Starting, restarting and stopping are sequences of steps (hooks may be coroutines);
they run in the cell's own turn, while the cell is *suspended* from user messages. Children stop
before their parent. Stopping either drains (handles what is queued first) or discards (queued
messages become dead letters), by policy.

*Supervision.* A failing handler suspends its cell and the parent's strategy for that child is
asked, through the pure :func:`~mailslot.runtime.supervision.decide`, whether to resume, restart
(after a backoff), stop or escalate. Escalation fails the parent; past the ``/user`` guardian the
whole system stops and :meth:`ActorSystem.wait` (and leaving ``async with``) raises
:class:`ActorFailed`.

*Backpressure.* When a tell finds the mailbox at or above the high watermark and the sender is an
actor, the sender is *throttled*: it is told :class:`SlowDown` (its ``slowed_down`` hook) and its
further messages to this target wait in a bounded outbox. When the target's mailbox falls to the low
watermark, outboxes are flushed in order and the senders are told :class:`Resume`. A full mailbox
drops droppable messages (dead letter ``overflow``); for critical ones ``tell`` raises
:class:`MailboxFull` and ``await send`` waits for room.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import inspect
import itertools
import logging
import random as _random
import time
import types
import weakref
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Hashable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from mailslot import _native
from mailslot.errors import (
    ActorFailed,
    ActorStopped,
    AskTimeout,
    InvalidActorName,
    MailboxFull,
    MutableMessageError,
    SystemShutdown,
)
from mailslot.runtime.clock import Cancellable, Clock, LoopClock
from mailslot.runtime.instrument import (
    ActorStatistics,
    Instrumentation,
    SystemStatistics,
    TypeStatistics,
)
from mailslot.runtime.mailbox import Coalescing, CoalescingQueue
from mailslot.runtime.messages import (
    DeadLetter,
    DeadLetterReason,
    Envelope,
    ReceiveTimeout,
    Resume,
    SlowDown,
    Terminated,
    is_droppable,
)
from mailslot.runtime.supervision import (
    Directive,
    RestartHistory,
    SupervisorStrategy,
    decide,
)

__all__ = [
    "Actor",
    "ActorRef",
    "ActorSystem",
    "Context",
    "DeadLetters",
    "Scheduler",
]

log = logging.getLogger("mailslot.runtime")

T = TypeVar("T")
A = TypeVar("A", bound="Actor")

_RUNNING: Final = 0
_STOPPING: Final = 1
_STOPPED: Final = 2
_STATE_NAMES: Final = {_RUNNING: "running", _STOPPING: "stopping", _STOPPED: "stopped"}


@types.coroutine
def _as_actor(
    coro: Coroutine[Any, Any, T], system: ActorSystem, ref: ActorRef
) -> Generator[Any, Any, T]:
    """Run ``coro`` step by step with ``system._current`` set to ``ref`` during each step.

    This is how a ``tell`` inside a coroutine handler knows its sender without a context
    variable lookup on every tell (the dispatcher sets ``_current`` for plain handlers).
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        prev = system._current
        system._current = ref
        try:
            yielded = coro.throw(error) if error is not None else coro.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            system._current = prev
        value, error = None, None
        try:
            value = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # delivered into the coroutine on the next step
            error = exc


async def _run_as_actor(coro: Coroutine[Any, Any, T], system: ActorSystem, ref: ActorRef) -> T:
    return await _as_actor(coro, system, ref)


# --------------------------------------------------------------------------------------- actors


class Actor:
    """Base class for actors.

    Subclass it and implement :meth:`receive`. State lives in instance attributes; the runtime calls
    ``receive`` with one message at a time, so no lock is ever needed. ``receive`` may be a plain
    method (fastest) or ``async def``; while a coroutine handler awaits, the actor takes no other
    message.

    Class attributes tune how the actor is hosted:

    - ``mailbox_capacity``: overrides the system default capacity;
    - ``mailbox``: ``Coalescing(key)`` for a coalescing mailbox;
    - ``supervisor_strategy``: how this actor supervises its children by default.

    ``context`` is set before :meth:`started` runs and stays valid across restarts.
    """

    mailbox_capacity: ClassVar[int | None] = None
    mailbox: ClassVar[Coalescing | None] = None
    supervisor_strategy: ClassVar[SupervisorStrategy | None] = None

    context: Context

    def receive(self, message: Any) -> Awaitable[None] | None:
        """Handle one message. Call ``self.context.unhandled(message)`` for ones you do not know."""
        self.context.unhandled(message)
        return None

    def started(self) -> Awaitable[None] | None:
        """Called before the first message of every incarnation (after a restart too)."""
        return None

    def stopping(self) -> Awaitable[None] | None:
        """Called once when the actor stops, after its children have stopped."""
        return None

    def before_restart(self, error: BaseException) -> Awaitable[None] | None:
        """Called on the failed incarnation before it is replaced."""
        return None

    def after_restart(self, error: BaseException) -> Awaitable[None] | None:
        """Called on the new incarnation, after :meth:`started`."""
        return None

    def slowed_down(self, target: ActorRef) -> Awaitable[None] | None:
        """``target`` asked this actor to slow down (its messages to it wait in an outbox)."""
        return None

    def resumed(self, target: ActorRef) -> Awaitable[None] | None:
        """``target`` has room again; the outbox was flushed."""
        return None


Factory = Callable[[], Actor]


# ---------------------------------------------------------------------------------------- cores


class _PyRefCore:
    """The base of every ref: a local ref's cell (``_speedups.RefCore`` is its C twin)."""

    __slots__ = ("_cell",)

    _cell: _Cell


class _PySystemCore:
    """What every tell reads from the system (``_speedups.SystemCore`` is its C twin)."""

    __slots__ = ("_current", "_drain_pending", "_ready")

    _current: ActorRef | None
    _drain_pending: bool
    _ready: deque[_Cell]


class _PyCellCore:
    """An actor's mailbox and what its turn touches (``_speedups.CellCore`` is its C twin)."""

    __slots__ = (
        "gate",
        "meta",
        "queue",
        "receive",
        "scheduled",
        "sysq",
        "system",
        "turn_done",
        "turn_message",
    )

    gate: int
    meta: Any
    queue: Any
    receive: Callable[[Any], Any]
    scheduled: bool
    sysq: deque[Callable[[], None]] | None
    system: ActorSystem
    turn_done: int
    turn_message: Any

    def turn(self, limit: int) -> int:
        """Handle up to ``limit`` queued messages; the number taken.

        Stops after a handler that returns a coroutine (its task is started) and when control
        work arrives. When a handler raises, ``turn_done`` (the messages taken, the failed one
        included) and ``turn_message`` (the failed one) say how far it got, and the error
        propagates.
        """
        recv = self.receive
        pop = self.queue.popleft
        done = 0
        message: Any = None
        try:
            for done in range(1, limit + 1):  # noqa: B007
                message, self.meta = pop()
                r = recv(message)
                if r is not None:
                    self.start_handler_task(r, message)
                    break
                if self.sysq:  # control work (SlowDown, Terminated, ...) ends the turn early
                    break
        except Exception:
            self.turn_done = done
            self.turn_message = message
            raise
        return done

    def start_handler_task(self, r: Any, message: Any) -> Any:
        raise NotImplementedError  # _Cell's


ACCELERATED = False
"""True when the runtime's hot path (a local tell, an actor's turn) runs in C
(``mailslot.runtime._speedups``, built when the package is installed and a C compiler is at hand;
``MAILSLOT_PURE_RUNTIME=1`` turns it off)."""

if TYPE_CHECKING:
    _RefCore = _PyRefCore
    _SystemCore = _PySystemCore
    _CellCore = _PyCellCore
else:
    _RefCore, _SystemCore, _CellCore = _PyRefCore, _PySystemCore, _PyCellCore
    _speedups = _native.load("mailslot.runtime._speedups", "MAILSLOT_PURE_RUNTIME")
    if _speedups is not None:
        _RefCore, _SystemCore, _CellCore = (
            _speedups.RefCore,
            _speedups.SystemCore,
            _speedups.CellCore,
        )
        ACCELERATED = True


# ----------------------------------------------------------------------------------------- refs


class ActorRef(_RefCore):
    """The address of an actor: the only way to talk to it.

    Refs are hashable, ordered and compare by path and incarnation; ``str(ref)`` is the path
    (``/user/docs/d1``). ``tell`` never blocks, ``await send`` waits for room, ``ask`` waits for a
    reply within a timeout.
    """

    __slots__ = ("_uid", "path")

    def __init__(self, path: str, uid: int) -> None:
        self.path = path
        self._uid = uid

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        """Deliver ``message`` without waiting. See the class and module docs for the rules."""
        raise NotImplementedError

    def send(self, message: Any, *, sender: ActorRef | None = None) -> Awaitable[None]:
        """Deliver ``message``, waiting for mailbox room if it is full."""
        raise NotImplementedError

    async def ask(self, message: Any, *, timeout: float) -> Any:
        """Send ``message`` and wait for the reply; :class:`AskTimeout` after ``timeout`` s."""
        raise NotImplementedError

    def deliver(self, message: Any, envelope: Envelope) -> None:
        """Deliver a message that already carries its metadata (transports, expiring messages).

        A message whose ``envelope.expires_at`` passes before it is handled becomes a dead
        letter with reason ``expired``. Never raises for a full mailbox: overflow is a dead letter.
        """
        raise NotImplementedError

    def deliver_from(self, message: Any, sender: ActorRef | None) -> None:
        """:meth:`deliver` with no metadata but the sender (transports: no envelope to build)."""
        self.deliver(message, Envelope(0, 0.0, sender))

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def _key(self) -> tuple[str, int]:
        return (self.path, self._uid)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActorRef):
            return NotImplemented
        return self.path == other.path and self._uid == other._uid

    def __hash__(self) -> int:
        return hash((self.path, self._uid))

    def __lt__(self, other: ActorRef) -> bool:
        if not isinstance(other, ActorRef):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"


class LocalActorRef(ActorRef):
    """A ref to an actor in this process."""

    __slots__ = ()

    def __init__(self, cell: _Cell) -> None:
        super().__init__(cell.path, cell.uid)
        self._cell = cell

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        c = self._cell
        q = c.queue
        if len(q) >= c.gate:
            c.tell_careful(message, sender, False)
            return
        s = c.system
        if sender is None:
            sender = s._current
        q.append((message, sender))
        if not c.scheduled:  # inlined _make_ready: this is the hot path
            c.scheduled = True
            s._ready.append(c)
            if not s._drain_pending:
                s._schedule_drain()

    if ACCELERATED:
        tell = _RefCore._tell_local  # type: ignore[attr-defined]  # the C twin of the above

    def send(self, message: Any, *, sender: ActorRef | None = None) -> Awaitable[None]:
        c = self._cell
        q = c.queue
        s = c.system
        if sender is None:
            sender = s._current
        if len(q) < c.gate:
            q.append((message, sender))
            if not c.scheduled:
                c.scheduled = True
                s._make_ready(c)
            return s._done  # an already completed future: awaiting it does not suspend
        return c.send_careful(message, sender)

    async def ask(self, message: Any, *, timeout: float) -> Any:
        return await self._cell.system._ask(self, message, timeout)

    def deliver(self, message: Any, envelope: Envelope) -> None:
        self._cell.tell_with_envelope(message, envelope)

    def deliver_from(self, message: Any, sender: ActorRef | None) -> None:
        self._cell.tell_meta(message, sender, sender)

    def _stopped(self) -> bool:
        return self._cell.state is _STOPPED


class _AskRef(ActorRef):
    """The temporary sender of an ask: telling it resolves the asker's future."""

    __slots__ = ("_future", "_system")

    def __init__(self, system: ActorSystem, future: asyncio.Future[Any], uid: int) -> None:
        super().__init__(f"/temp/ask-{uid}", uid)
        self._future = future
        self._system = system

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        if self._future.done():
            self._system.dead_letters.publish(
                DeadLetter(message, sender, self, DeadLetterReason.EXPIRED)
            )
            return
        self._future.set_result(message)

    def send(self, message: Any, *, sender: ActorRef | None = None) -> Awaitable[None]:
        self.tell(message, sender)
        return self._system._done

    async def ask(self, message: Any, *, timeout: float) -> Any:
        raise ActorStopped("cannot ask the temporary sender of an ask", actor=self.path)

    def deliver(self, message: Any, envelope: Envelope) -> None:
        self.tell(message, envelope.sender)

    def fail(self, error: BaseException) -> None:
        if not self._future.done():
            self._future.set_exception(error)


# -------------------------------------------------------------------------------------- context


class Context:
    """What an actor can do: its own ref, the sender, children, watches, timers.

    Available as ``self.context`` inside an actor.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: _Cell) -> None:
        self._cell = cell

    @property
    def self(self) -> ActorRef:
        return self._cell.ref

    @property
    def system(self) -> ActorSystem:
        return self._cell.system

    @property
    def parent(self) -> ActorRef | None:
        p = self._cell.parent
        return p.ref if p is not None else None

    @property
    def sender(self) -> ActorRef | None:
        """Who sent the message being handled (``None`` from outside any actor)."""
        meta = self._cell.meta
        if meta is None or isinstance(meta, ActorRef):
            return meta
        if isinstance(meta, Envelope):
            return meta.sender
        return None

    @property
    def envelope(self) -> Envelope | None:
        """The message's envelope when the system stamps envelopes (else ``None``)."""
        meta = self._cell.meta
        return meta if isinstance(meta, Envelope) else None

    def reply(self, message: Any) -> None:
        """Tell the sender of the current message (dead letter if there is none)."""
        sender = self.sender
        if sender is None:
            self._cell.system.dead_letters.publish(
                DeadLetter(message, self._cell.ref, self._cell.ref, DeadLetterReason.NO_RECIPIENT)
            )
            return
        sender.tell(message, self._cell.ref)

    def unhandled(self, message: Any) -> None:
        """Record that this actor does not handle ``message`` (a dead letter, ``unhandled``)."""
        c = self._cell
        c.system.dead_letters.publish(
            DeadLetter(message, self.sender, c.ref, DeadLetterReason.UNHANDLED)
        )

    @property
    def children(self) -> list[ActorRef]:
        return [c.ref for c in self._cell.children.values()]

    def child(self, name: str) -> ActorRef | None:
        """The child called ``name`` if it is running (``None`` once it is stopping)."""
        c = self._cell.children.get(name)
        return c.ref if c is not None and c.state is _RUNNING else None

    def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        mailbox_capacity: int | None = None,
        supervisor: SupervisorStrategy | None = None,
        mailbox: Coalescing | None = None,
    ) -> ActorRef:
        """Start a child. ``factory`` makes a fresh instance (again on every restart)."""
        return self._cell.system._spawn(
            self._cell, factory, name, mailbox_capacity, supervisor, mailbox
        )

    def stop(self, ref: ActorRef | None = None, *, drain: bool | None = None) -> None:
        """Stop ``ref`` (a child, or any local actor), or this actor when ``ref`` is omitted."""
        target = self._cell if ref is None else _cell_of(ref)
        if target is not None:
            target.request_stop(drain)

    def watch(self, ref: ActorRef) -> None:
        """Get :class:`Terminated` when ``ref`` stops (at once if it already has)."""
        self._cell.watch(ref)

    def unwatch(self, ref: ActorRef) -> None:
        self._cell.unwatch(ref)

    def start_single_timer(self, key: Hashable, message: Any, delay: float) -> None:
        """Send ``message`` to self after ``delay`` s; replaces a timer with the same key."""
        self._cell.start_timer(key, message, delay, None)

    def start_periodic_timer(self, key: Hashable, message: Any, interval: float) -> None:
        """Send ``message`` to self every ``interval`` s (first after one interval)."""
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._cell.start_timer(key, message, interval, interval)

    def cancel_timer(self, key: Hashable) -> None:
        self._cell.cancel_timer(key)

    def is_timer_active(self, key: Hashable) -> bool:
        timers = self._cell.timers
        return timers is not None and key in timers

    def set_receive_timeout(self, seconds: float | None) -> None:
        """Get :class:`ReceiveTimeout` after ``seconds`` without a message (``None``: off)."""
        self._cell.set_receive_timeout(seconds)

    def pipe_to_self(
        self,
        awaitable: Awaitable[T],
        on_success: Callable[[T], Any],
        on_failure: Callable[[BaseException], Any],
        *,
        label: str = "",
    ) -> None:
        """Run ``awaitable`` in a task this actor owns; deliver the mapped outcome to self.

        The actor keeps handling messages meanwhile. The task is cancelled if the actor stops;
        a future someone else owns (``asyncio.Future``) is only watched, never cancelled.
        ``label`` names the operation for tracing (a span from here to the result).
        """
        self._cell.pipe_to_self(awaitable, on_success, on_failure, label)


def _cell_of(ref: ActorRef) -> _Cell | None:
    return ref._cell if isinstance(ref, LocalActorRef) else None


# ----------------------------------------------------------------------------------------- cell


class _Cell(_CellCore):
    """The runtime's private record of one actor (all incarnations)."""

    path: str
    uid: int

    __slots__ = (
        "actor",
        "actor_type",
        "busy",
        "capacity",
        "careful",
        "children",
        "configured",
        "context",
        "drain_on_stop",
        "extras",
        "factory",
        "failures",
        "high",
        "high_water",
        "history",
        "in_lifecycle",
        "last_activity",
        "low",
        "name",
        "owned",
        "parent",
        "path",
        "pending_failure",
        "processed",
        "ref",
        "restarts",
        "rt_handle",
        "rt_seconds",
        "space_waiters",
        "state",
        "stop_waiters",
        "strategy",
        "suspended",
        "throttled",
        "timers",
        "uid",
        "watchers",
        "watching",
    )

    def __init__(
        self,
        system: ActorSystem,
        parent: _Cell | None,
        name: str,
        factory: Callable[[], Actor],
        capacity: int,
        strategy: SupervisorStrategy,
        mailbox: Coalescing | None,
    ) -> None:
        self.system = system
        self.parent = parent
        self.name = name
        self.path = f"{parent.path}/{name}" if parent is not None else f"/{name}"
        self.uid = next(system._uids)
        self.factory = factory
        self.capacity = capacity
        self.high = max(1, int(capacity * system.high_watermark))
        self.low = int(capacity * system.low_watermark)
        self.queue: Any = (
            CoalescingQueue(mailbox.key, mailbox.merge) if mailbox is not None else deque()
        )
        self.careful = mailbox is not None or system._always_careful
        self.gate = 0 if self.careful else self.high
        self.ref = LocalActorRef(self)
        self.context = Context(self)
        self.scheduled = False
        self.state: int = _RUNNING
        self.actor: Actor | None = None
        self.actor_type = "?"
        self.receive: Callable[[Any], Any] = _not_started
        self.meta: Any = None
        # rarely used containers are made on first use (memory per idle actor matters)
        self.sysq: deque[Callable[[], None]] | None = None
        self.busy = False
        self.suspended = True  # until started
        self.in_lifecycle = False
        self.pending_failure: BaseException | None = None
        self.children: dict[str, _Cell] = _NO_CHILDREN
        self.watchers: set[_Cell] | None = None
        self.watching: set[_Cell] | None = None
        self.throttled: dict[_Cell, deque[tuple[Any, Any]]] | None = None
        self.space_waiters: deque[asyncio.Future[None]] | None = None
        self.stop_waiters: list[asyncio.Future[None]] | None = None
        self.timers: dict[Hashable, Cancellable] | None = None
        self.rt_seconds: float | None = None
        self.rt_handle: Cancellable | None = None
        self.last_activity = 0.0
        self.owned: set[asyncio.Task[Any]] | None = None
        self.strategy = strategy
        self.history = _NO_HISTORY
        self.drain_on_stop = system.drain_on_stop
        self.processed = 0
        self.failures = 0
        self.restarts = 0
        self.high_water = 0
        self.extras = False  # see after_turn_extras
        self.configured: tuple[bool, bool] | None = (True, True)

    # ---- sending ----------------------------------------------------------------------------

    def refresh_gate(self) -> None:
        if self.careful or self.throttled or self.state is not _RUNNING:
            self.gate = 0
        else:
            self.gate = self.high

    def tell_careful(self, message: Any, sender: ActorRef | None, from_system: bool) -> None:
        """Every case the fast path does not take. ``from_system``: never raise, drop instead."""
        system = self.system
        if sender is None and not from_system:
            sender = system._current
        if self.state is not _RUNNING:
            self.dead_letter(message, sender, DeadLetterReason.STOPPED)
            return
        if system.debug:
            check_immutable(message)
        meta: Any = sender
        if system._stamp:
            trace = system._instr.outgoing(sender, self.ref, message) if system._instr else None
            meta = Envelope(next(system._msg_ids), system.clock.now(), sender, None, trace)
        sender_cell = _cell_of(sender) if sender is not None else None
        throttled = self.throttled
        outbox = (
            throttled.get(sender_cell)
            if throttled is not None and sender_cell is not None
            else None
        )
        if outbox is not None:
            if len(outbox) >= system.outbox_capacity:
                self.overflow(message, sender, from_system, "outbox")
                return
            outbox.append((message, meta))
            return
        q = self.queue
        n = len(q)
        if n >= self.capacity:
            if (
                sender_cell is not None
                and sender_cell is not self
                and sender_cell.state is _RUNNING
                and system.outbox_capacity > 0
            ):
                # an actor sender that was not yet held back: hold it back now
                self.throttle(sender_cell).append((message, meta))
                return
            self.overflow(message, sender, from_system, "mailbox")
            return
        replaced = q.append((message, meta))
        if replaced is not None:
            self.dead_letter(replaced[0], _sender_of(replaced[1]), DeadLetterReason.COALESCED)
        if (
            n + 1 >= self.high
            and sender_cell is not None
            and sender_cell is not self
            and sender_cell.state is _RUNNING
        ):
            self.throttle(sender_cell)
        if not self.scheduled:
            self.scheduled = True
            system._make_ready(self)

    def tell_with_envelope(self, message: Any, envelope: Envelope) -> None:
        """Deliver a message that already carries metadata (ask requests, remote deliveries)."""
        if envelope.expires_at is not None and not self.careful and self.state is _RUNNING:
            self.careful = True
            self.gate = 0
        self.tell_meta(message, envelope, envelope.sender)

    def tell_meta(self, message: Any, meta: Any, sender: ActorRef | None) -> None:
        """Queue ``(message, meta)`` (``meta``: an envelope, or just the sender); never raises:
        what cannot be queued is a dead letter."""
        if self.state is not _RUNNING:
            self.dead_letter(message, sender, DeadLetterReason.STOPPED)
            return
        if self.system.debug:
            check_immutable(message)
        if len(self.queue) >= self.capacity:
            self.dead_letter(message, sender, DeadLetterReason.OVERFLOW)
            return
        replaced = self.queue.append((message, meta))
        if replaced is not None:
            self.dead_letter(replaced[0], _sender_of(replaced[1]), DeadLetterReason.COALESCED)
        if not self.scheduled:
            self.scheduled = True
            self.system._make_ready(self)

    def overflow(
        self, message: Any, sender: ActorRef | None, from_system: bool, where: str
    ) -> None:
        if from_system or is_droppable(message):
            self.dead_letter(message, sender, DeadLetterReason.OVERFLOW)
            return
        size = self.capacity if where == "mailbox" else self.system.outbox_capacity
        raise MailboxFull(
            f"{where} of {self.path} is full ({size} messages) and {type(message).__name__} "
            "is not droppable; use 'await send' to wait",
            actor=self.path,
        )

    def send_careful(self, message: Any, sender: ActorRef | None) -> Awaitable[None]:
        try:
            self.tell_careful(message, sender, False)
        except MailboxFull:
            return self._send_when_room(message, sender)
        return self.system._done

    async def _send_when_room(self, message: Any, sender: ActorRef | None) -> None:
        while True:
            waiter: asyncio.Future[None] = self.system._loop.create_future()
            if self.system._parked is not None:
                self.system._parked.add(waiter)
            if self.space_waiters is None:
                self.space_waiters = deque()
            self.space_waiters.append(waiter)
            self.extras = True
            await waiter
            try:
                self.tell_careful(message, sender, False)
                return
            except MailboxFull:
                continue

    def dead_letter(self, message: Any, sender: ActorRef | None, reason: DeadLetterReason) -> None:
        if isinstance(sender, _AskRef) and reason is not DeadLetterReason.COALESCED:
            sender.fail(ActorStopped(f"{self.path} cannot answer: {reason.value}", actor=self.path))
        self.system.dead_letters.publish(DeadLetter(message, sender, self.ref, reason))

    # ---- backpressure -------------------------------------------------------------------------

    def throttle(self, sender: _Cell) -> deque[tuple[Any, Any]]:
        """Hold ``sender`` back (once); returns its outbox to this cell."""
        if self.throttled is None:
            self.throttled = {}
        outbox = self.throttled.get(sender)
        if outbox is not None:
            return outbox
        outbox = self.throttled[sender] = deque()
        self.gate = 0
        self.extras = True
        instr = self.system._instr
        if instr is not None:
            _safe(instr.backpressure, self.ref, sender.ref, True)
        sender.post(functools.partial(sender.run_hook_named, "slowed_down", SlowDown(self.ref)))
        return outbox

    def release_senders(self) -> None:
        """At the low watermark: flush outboxes in order while there is room, resume senders."""
        q = self.queue
        assert self.throttled is not None
        for sender, outbox in list(self.throttled.items()):
            while outbox and len(q) < self.capacity:
                item = outbox.popleft()
                replaced = q.append(item)
                if replaced is not None:
                    self.dead_letter(
                        replaced[0], _sender_of(replaced[1]), DeadLetterReason.COALESCED
                    )
            if outbox:
                break
            del self.throttled[sender]
            instr = self.system._instr
            if instr is not None:
                _safe(instr.backpressure, self.ref, sender.ref, False)
            if sender.state is _RUNNING:
                sender.post(functools.partial(sender.run_hook_named, "resumed", Resume(self.ref)))
        self.refresh_gate()

    # ---- running ------------------------------------------------------------------------------

    def post(self, work: Callable[[], None]) -> None:
        """Queue control work to run in this cell's next turn, before user messages."""
        if self.sysq is None:
            self.sysq = deque()
        self.sysq.append(work)
        if not self.scheduled:
            self.scheduled = True
            self.system._make_ready(self)

    def run(self) -> int:
        """One turn: control work, then up to ``throughput`` messages. Returns messages handled."""
        sysq = self.sysq
        if sysq is not None:
            while sysq and not self.busy and self.state is not _STOPPED:
                sysq.popleft()()
            if not sysq and self.sysq is sysq:
                self.sysq = None  # control work is rare: do not keep an empty deque per actor
        if self.busy or self.suspended or self.state is _STOPPED:
            if self.state is _STOPPED:
                self.sysq = None
            self.scheduled = False
            return 0
        q = self.queue
        n = len(q)
        if n > self.high_water:
            self.high_water = n
        system = self.system
        instr = system._instr
        if self.careful or (instr is not None and instr.per_message):
            return self.run_careful()
        # a congested actor (above its high watermark) works down to its low watermark in one
        # turn: it is the bottleneck, and catching up ends the SlowDown for its senders sooner
        budget = _budget(system.throughput, n)
        # an instrumentation that only wants batches keeps this path: one call per turn
        started = time.perf_counter() if instr is not None else 0.0
        try:
            # the messages present now, up to the budget; self-tells wait for the next turn
            done = self.turn(n if n < budget else budget)
        except Exception as exc:
            done, message = self.turn_done, self.turn_message
            self.turn_message = None
            self.processed += done
            if instr is not None:
                _safe(instr.batch, self.ref, self.actor_type, done, 0.0, len(q))
            self.scheduled = False
            self.handler_failed(exc, message)
            return done
        self.processed += done
        if instr is not None:
            try:  # inline rather than through _safe: this runs once per turn
                instr.batch(self.ref, self.actor_type, done, time.perf_counter() - started, len(q))
            except Exception:
                log.exception("instrumentation hook batch raised; ignored")
        if self.extras:
            self.after_turn_extras()
        if (q or self.sysq) and not self.busy and not self.suspended:
            system._ready.append(self)  # stays scheduled
        else:
            self.scheduled = False
        return done

    def run_careful(self) -> int:
        """The turn with expiry checks and per-message instrumentation (see ``run``)."""
        system = self.system
        instr = system._instr
        per_message = instr is not None and instr.per_message
        q = self.queue
        n = len(q)
        budget = _budget(system.throughput, n)
        done = 0
        started = time.perf_counter()
        message: Any = None
        try:
            while q and done < budget and not self.busy and not self.sysq:
                message, meta = q.popleft()
                self.meta = meta
                if (
                    isinstance(meta, Envelope)
                    and meta.expires_at is not None
                    and system.clock.now() >= meta.expires_at
                ):
                    self.dead_letter(message, meta.sender, DeadLetterReason.EXPIRED)
                    continue
                done += 1
                if per_message:
                    assert instr is not None
                    self.invoke_instrumented(instr, message, meta)
                else:
                    r = self.receive(message)
                    if r is not None:
                        self.start_handler_task(r, message)
        except Exception as exc:
            self.processed += done
            if instr is not None and done:
                _safe(instr.batch, self.ref, self.actor_type, done, 0.0, len(q))
            self.scheduled = False
            self.handler_failed(exc, message)
            return done
        self.processed += done
        if instr is not None and done:
            _safe(
                instr.batch, self.ref, self.actor_type, done, time.perf_counter() - started, len(q)
            )
        self.after_turn()
        return done

    def invoke_instrumented(self, instr: Instrumentation, message: Any, meta: Any) -> None:
        env = meta if isinstance(meta, Envelope) else None
        token = _safe(instr.message_begin, self.ref, self.actor_type, message, env)
        t0 = time.perf_counter()
        try:
            r = self.receive(message)
        except BaseException as exc:
            _safe(
                instr.message_end, self.ref, self.actor_type, token, time.perf_counter() - t0, exc
            )
            raise
        if r is None:
            _safe(
                instr.message_end, self.ref, self.actor_type, token, time.perf_counter() - t0, None
            )
            return

        def finished(task: asyncio.Task[Any]) -> None:
            err = None if task.cancelled() else task.exception()
            _safe(
                instr.message_end, self.ref, self.actor_type, token, time.perf_counter() - t0, err
            )

        self.start_handler_task(r, message).add_done_callback(finished)

    def after_turn(self) -> None:
        if self.extras:
            self.after_turn_extras()
        if (self.queue or self.sysq) and not self.busy and not self.suspended:
            self.system._ready.append(self)  # stays scheduled
        else:
            self.scheduled = False

    def after_turn_extras(self) -> None:
        """The rare end-of-turn work: senders to resume, ``send`` s waiting for room, the
        receive timeout's clock, a stop to finish. ``extras`` says whether any may apply."""
        q = self.queue
        n = len(q)
        if self.throttled and n <= self.low:
            self.release_senders()
            n = len(q)
        if self.space_waiters and n < self.capacity:
            self.wake_space_waiters(self.space_waiters)
        if self.rt_seconds is not None:
            self.last_activity = self.system.clock.now()
        if self.state is _STOPPING and not self.busy:
            self.system._progress_stop(self)
        self.extras = bool(
            self.throttled
            or self.space_waiters
            or self.rt_seconds is not None
            or self.state is _STOPPING
        )

    def wake_space_waiters(self, waiters: deque[asyncio.Future[None]]) -> None:
        room = self.capacity - len(self.queue)
        while waiters and room > 0:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)
                room -= 1

    def start_handler_task(self, awaitable: Any, message: Any) -> asyncio.Task[Any]:
        if not asyncio.iscoroutine(awaitable):
            raise TypeError(
                f"{self.actor_type}.receive returned {type(awaitable).__name__}; "
                "a handler must return None or be 'async def'"
            )
        self.busy = True
        task = self.system._create_task(awaitable, self)
        meta = self.meta
        task.add_done_callback(lambda t: self.handler_task_done(t, message, meta))
        return task

    def handler_task_done(self, task: asyncio.Task[Any], message: Any, meta: Any) -> None:
        self.busy = False
        if task.cancelled():
            if self.state is _RUNNING:
                self.handler_failed(asyncio.CancelledError("handler task was cancelled"), message)
                return
        else:
            exc = task.exception()
            if exc is not None:
                self.meta = meta
                self.handler_failed(exc, message)
                return
        self.continue_after_busy()

    def continue_after_busy(self) -> None:
        if self.pending_failure is not None:
            exc, self.pending_failure = self.pending_failure, None
            self.handler_failed(exc, None)
            return
        if self.rt_seconds is not None:
            self.last_activity = self.system.clock.now()
        if self.state is _STOPPING:
            self.system._progress_stop(self)
        if (self.queue or self.sysq) and not self.scheduled and not self.suspended:
            self.scheduled = True
            self.system._make_ready(self)

    # ---- hooks and lifecycle ----------------------------------------------------------------

    def run_hook_named(self, hook: str, signal: SlowDown | Resume) -> None:
        """Call ``slowed_down``/``resumed`` in this cell's turn (they may be coroutines)."""
        if self.actor is None or self.state is _STOPPED:
            return
        fn = getattr(self.actor, hook)
        try:
            r = fn(signal.target)
        except Exception as exc:
            self.handler_failed(exc, signal)
            return
        if r is not None:
            self.start_handler_task(r, signal)

    def deliver_system_message(self, message: Any, envelope: Envelope | None = None) -> None:
        """Hand a runtime message (Terminated, a piped result) to ``receive`` in this turn."""
        if self.actor is None or self.state is _STOPPED:
            return
        self.meta = envelope
        instr = self.system._instr
        try:
            if instr is not None and instr.per_message:
                self.invoke_instrumented(instr, message, envelope)
                return
            r = self.receive(message)
        except Exception as exc:
            self.handler_failed(exc, message)
            return
        if r is not None:
            self.start_handler_task(r, message)

    def incarnate(self) -> Actor:
        actor = self.factory()
        if not isinstance(actor, Actor):
            raise TypeError(
                f"the factory for {self.path} returned {type(actor).__name__}, not an Actor"
            )
        if self.configured is not None:
            self.configure_from_class(type(actor), *self.configured)
            self.configured = None
        actor.context = self.context
        self.actor = actor
        self.actor_type = type(actor).__name__
        self.receive = actor.receive
        return actor

    def lifecycle(self, steps: Generator[Any, Any, None]) -> None:
        """Drive a lifecycle generator: it yields awaitables (hook coroutines, futures).

        The cell is suspended from user messages meanwhile; when the generator ends, the cell
        carries on (the generator decides whether it stays suspended).
        """
        self.suspended = True
        self.in_lifecycle = True
        self._step(steps, None, None)

    def _step(
        self, steps: Generator[Any, Any, None], value: Any, error: BaseException | None
    ) -> None:
        while True:
            try:
                awaited = steps.throw(error) if error is not None else steps.send(value)
            except StopIteration:
                self.in_lifecycle = False
                if self.state is not _STOPPED:
                    self.continue_after_busy()
                return
            value, error = None, None
            if awaited is None:
                continue
            if isinstance(awaited, asyncio.Future):
                fut: asyncio.Future[Any] = awaited
            elif asyncio.iscoroutine(awaited):
                fut = self.system._create_task(awaited, self)
            else:
                error = TypeError(f"lifecycle hook returned {type(awaited).__name__}")
                continue
            if fut.done():
                if fut.cancelled():
                    error = asyncio.CancelledError()
                else:
                    error = fut.exception()
                    value = None if error is not None else fut.result()
                continue
            fut.add_done_callback(lambda f: self._resume_step(steps, f))
            return

    def _resume_step(self, steps: Generator[Any, Any, None], fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self._step(steps, None, asyncio.CancelledError())
        elif fut.exception() is not None:
            self._step(steps, None, fut.exception())
        else:
            self._step(steps, fut.result(), None)

    def start_steps(self) -> Generator[Any, Any, None]:
        if self.state is _STOPPING:
            self.suspended = False
            return
        try:
            actor = self.incarnate()
            yield actor.started()
        except Exception as exc:
            self.in_lifecycle = False
            self.handler_failed(exc, None)
            return
        instr = self.system._instr
        if instr is not None:
            _safe(instr.spawned, self.ref, self.actor_type)
        self.suspended = False

    def restart_steps(self, error: BaseException) -> Generator[Any, Any, None]:
        old = self.actor
        if old is not None:
            try:
                yield old.before_restart(error)
            except Exception:
                log.exception("%s: before_restart raised; restarting anyway", self.path)
        self.cancel_all_timers()
        self.set_receive_timeout(None)
        self.cancel_owned()
        if self.children:
            children = list(self.children.values())
            for child in children:
                child.request_stop(False)
            yield self.system._all_stopped(children)
        if self.state is not _RUNNING:
            self.suspended = False
            return
        try:
            actor = self.incarnate()
            yield actor.started()
            yield actor.after_restart(error)
        except Exception as exc:
            self.in_lifecycle = False
            self.handler_failed(exc, None)
            return
        self.restarts += 1
        instr = self.system._instr
        if instr is not None:
            _safe(instr.restarted, self.ref, self.actor_type, error)
        self.suspended = False

    def configure_from_class(
        self, cls: type[Actor], capacity_given: bool, mailbox_given: bool
    ) -> None:
        """Apply the actor class's ``mailbox_capacity``/``mailbox`` unless spawn set them."""
        if not capacity_given and cls.mailbox_capacity is not None:
            if cls.mailbox_capacity < 1:
                raise ValueError(
                    f"{cls.__name__}.mailbox_capacity must be >= 1, got {cls.mailbox_capacity}"
                )
            self.capacity = cls.mailbox_capacity
            self.high = max(1, int(self.capacity * self.system.high_watermark))
            self.low = int(self.capacity * self.system.low_watermark)
        if not mailbox_given and cls.mailbox is not None:
            old = self.queue
            self.queue = CoalescingQueue(cls.mailbox.key, cls.mailbox.merge)
            self.careful = True
            while old:
                replaced = self.queue.append(old.popleft())
                if replaced is not None:
                    self.dead_letter(
                        replaced[0], _sender_of(replaced[1]), DeadLetterReason.COALESCED
                    )
        self.refresh_gate()

    # ---- failure and supervision -------------------------------------------------------------

    def handler_failed(self, exc: BaseException, message: Any) -> None:
        self.failures += 1
        sender = _sender_of(self.meta)
        if isinstance(sender, _AskRef):
            sender.fail(exc)
        instr = self.system._instr
        if instr is not None:
            _safe(instr.failed, self.ref, self.actor_type, exc)
        if self.state is not _RUNNING:
            log.error("%s failed while stopping: %r", self.path, exc, exc_info=exc)
            if not self.in_lifecycle:
                self.suspended = False
                self.system._progress_stop(self)
            return
        log.warning(
            "%s (%s) failed %s: %r",
            self.path,
            self.actor_type,
            f"handling {type(message).__name__}" if message is not None else "(hook or child)",
            exc,
            exc_info=exc,
        )
        self.suspended = True
        self.system._supervise(self, exc)

    def fail_from_child(self, exc: BaseException) -> None:
        """A child escalated: this cell fails with its error (once idle)."""
        if self.busy:
            self.pending_failure = exc
            return
        self.handler_failed(exc, None)

    # ---- stopping ----------------------------------------------------------------------------

    def request_stop(self, drain: bool | None) -> None:
        if self.state is not _RUNNING:
            return
        self.state = _STOPPING
        self.extras = True
        if drain is not None:
            self.drain_on_stop = drain
        self.refresh_gate()
        self.cancel_all_timers()
        self.set_receive_timeout(None)
        for child in list(self.children.values()):
            child.request_stop(drain)
        if not self.drain_on_stop or self.suspended:
            self.discard_mailbox()
        self.system._progress_stop(self)

    def discard_mailbox(self) -> None:
        q = self.queue
        while q:
            message, meta = q.popleft()
            self.dead_letter(message, _sender_of(meta), DeadLetterReason.STOPPED)
        if self.throttled:
            for outbox in self.throttled.values():
                while outbox:
                    message, meta = outbox.popleft()
                    self.dead_letter(message, _sender_of(meta), DeadLetterReason.STOPPED)
            self.throttled = None

    def finish_stop_steps(self) -> Generator[Any, Any, None]:
        actor = self.actor
        if actor is not None:
            try:
                yield actor.stopping()
            except Exception as exc:
                log.error("%s: stopping hook raised %r", self.path, exc, exc_info=exc)
        self.system._finalize_stop(self)

    # ---- watch, timers, receive timeout, owned tasks ------------------------------------------

    def watch(self, ref: ActorRef) -> None:
        target = _cell_of(ref)
        if target is None or target is self:
            return
        if target.state is _STOPPED:
            self.post(lambda: self.deliver_system_message(Terminated(ref)))
            return
        if target.watchers is None:
            target.watchers = set()
        target.watchers.add(self)
        if self.watching is None:
            self.watching = set()
        self.watching.add(target)

    def unwatch(self, ref: ActorRef) -> None:
        target = _cell_of(ref)
        if target is not None:
            if target.watchers is not None:
                target.watchers.discard(self)
            if self.watching is not None:
                self.watching.discard(target)

    def start_timer(
        self, key: Hashable, message: Any, delay: float, interval: float | None
    ) -> None:
        self.cancel_timer(key)
        if self.state is not _RUNNING:
            return
        clock = self.system.clock
        due = clock.now() + delay

        def fire(due: float) -> None:
            if self.state is not _RUNNING:
                return
            timers = self.timers
            assert timers is not None
            if interval is None:
                timers.pop(key, None)
            else:
                nxt = due + interval
                timers[key] = clock.call_later(nxt - clock.now(), fire, nxt)
            self.tell_careful(message, self.ref, True)

        if self.timers is None:
            self.timers = {}
        self.timers[key] = clock.call_later(delay, fire, due)

    def cancel_timer(self, key: Hashable) -> None:
        if self.timers is None:
            return
        h = self.timers.pop(key, None)
        if h is not None:
            h.cancel()

    def cancel_all_timers(self) -> None:
        if self.timers:
            for h in self.timers.values():
                h.cancel()
        self.timers = None

    def set_receive_timeout(self, seconds: float | None) -> None:
        if self.rt_handle is not None:
            self.rt_handle.cancel()
            self.rt_handle = None
        if seconds is not None and seconds <= 0:
            raise ValueError(f"receive timeout must be > 0 seconds, got {seconds}")
        self.rt_seconds = seconds
        if seconds is None or self.state is not _RUNNING:
            return
        self.extras = True
        clock = self.system.clock
        self.last_activity = clock.now()
        self.rt_handle = clock.call_later(seconds, self.check_receive_timeout)

    def check_receive_timeout(self) -> None:
        self.rt_handle = None
        seconds = self.rt_seconds
        if seconds is None or self.state is not _RUNNING:
            return
        clock = self.system.clock
        idle = clock.now() - self.last_activity
        if idle >= seconds and not self.queue and not self.busy:
            self.last_activity = clock.now()
            self.rt_handle = clock.call_later(seconds, self.check_receive_timeout)
            self.post(lambda: self.deliver_system_message(ReceiveTimeout()))
        else:
            self.rt_handle = clock.call_later(
                max(seconds - idle, seconds / 100), self.check_receive_timeout
            )

    def pipe_to_self(
        self,
        awaitable: Awaitable[T],
        on_success: Callable[[T], Any],
        on_failure: Callable[[BaseException], Any],
        label: str = "",
    ) -> None:
        incarnation = self.restarts
        instr = self.system._instr
        token = (
            _safe(instr.pipe_begin, self.ref, self.actor_type, label)
            if instr is not None and instr.per_message
            else None
        )

        def done(f: asyncio.Future[T]) -> None:
            if isinstance(f, asyncio.Task) and self.owned is not None:
                self.owned.discard(f)
            else:
                self.system._external.discard(f)
            if f.cancelled() and inspect.iscoroutine(awaitable):
                awaitable.close()  # cancelled before it started: no "never awaited" warning
            if f.cancelled() or self.state is _STOPPED or self.restarts != incarnation:
                return  # nobody to tell (a restarted actor does not get its past's results)
            exc = f.exception()
            envelope = None
            if token is not None and instr is not None:
                trace = _safe(instr.pipe_end, token, exc)
                envelope = Envelope(0, self.system.clock.now(), self.ref, None, trace)
            try:
                message = on_failure(exc) if exc is not None else on_success(f.result())
            except Exception as map_exc:
                self.post(functools.partial(self.handler_failed, map_exc, None))
                return
            # through the control queue: a result is never dropped for a full mailbox
            self.post(lambda: self.deliver_system_message(message, envelope))

        if isinstance(awaitable, asyncio.Future):
            # someone else's future (a commit, a reply): watch it, no task; never cancel it
            self.system._external.add(awaitable)
            awaitable.add_done_callback(done)
            return

        async def run() -> T:
            return await awaitable

        task = self.system._create_task(run(), self)
        if self.owned is None:
            self.owned = set()
        self.owned.add(task)
        task.add_done_callback(done)

    def cancel_owned(self) -> None:
        if self.owned:
            for t in list(self.owned):
                t.cancel()
        self.owned = None

    def add_stop_waiter(self, fut: asyncio.Future[None]) -> None:
        if self.stop_waiters is None:
            self.stop_waiters = []
        self.stop_waiters.append(fut)

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            path=self.path,
            actor_type=self.actor_type,
            state=_STATE_NAMES[self.state],
            mailbox_depth=len(self.queue),
            mailbox_capacity=self.capacity,
            mailbox_high_water=max(self.high_water, len(self.queue)),
            processed=self.processed,
            failures=self.failures,
            restarts=self.restarts,
            throttled_senders=len(self.throttled or ()),
            outbox_depth=sum(len(o) for o in (self.throttled or {}).values()),
            children=len(self.children),
        )


_NO_CHILDREN: dict[str, _Cell] = {}  # shared by childless cells; never mutated
_NO_HISTORY = RestartHistory()


def _budget(throughput: int, n: int) -> int:
    """Messages one turn may handle: the fairness budget, or the whole backlog of an actor that
    has fallen behind (more than twice the budget waiting).

    An actor with a backlog is the one its senders wait on (fan-in): handling what is there in
    one go keeps it below its high watermark, so its senders are not slowed down, and costs the
    others nothing they would not wait for anyway. The dispatcher still gives the loop back
    after ``dispatch_budget`` messages.
    """
    if n > 2 * throughput:
        return n
    return throughput


def _not_started(message: Any) -> None:  # pragma: no cover - guarded by `suspended`
    raise RuntimeError("actor not started")


def _sender_of(meta: Any) -> ActorRef | None:
    if meta is None or isinstance(meta, ActorRef):
        return meta
    if isinstance(meta, Envelope):
        return meta.sender
    return None


def _safe(fn: Callable[..., T], *args: Any) -> T | None:
    try:
        return fn(*args)
    except Exception:
        log.exception("instrumentation hook %s raised; ignored", getattr(fn, "__name__", fn))
        return None


_IMMUTABLE_SCALARS = (str, bytes, int, float, complex, bool, type(None), range, enum.Enum)


def check_immutable(message: Any, _depth: int = 0) -> None:
    """Debug mode's check: raise :class:`MutableMessageError` unless ``message`` is immutable.

    Immutable means: a scalar, an :class:`ActorRef`, a tuple or frozenset of immutables, a frozen
    dataclass or frozen ``msgspec.Struct`` whose fields are immutable (checked a few levels deep).
    """
    if isinstance(message, (*_IMMUTABLE_SCALARS, ActorRef)):
        return
    if _depth > 6:
        return
    if isinstance(message, tuple | frozenset):
        for item in message:
            check_immutable(item, _depth + 1)
        return
    cls = type(message)
    struct_config = getattr(cls, "__struct_config__", None)
    if struct_config is not None:
        if not struct_config.frozen:
            raise MutableMessageError(
                f"{cls.__name__} is a msgspec.Struct without frozen=True; "
                "messages must be immutable"
            )
        for field in getattr(cls, "__struct_fields__", ()):
            _check_field(cls, field, getattr(message, field), _depth)
        return
    if dataclasses.is_dataclass(message):
        params = getattr(cls, "__dataclass_params__", None)
        if params is None or not params.frozen:
            raise MutableMessageError(
                f"{cls.__name__} is a dataclass without frozen=True; messages must be immutable"
            )
        for f in dataclasses.fields(message):
            _check_field(cls, f.name, getattr(message, f.name), _depth)
        return
    raise MutableMessageError(
        f"{cls.__name__} is not an immutable message: use a frozen msgspec.Struct, a frozen "
        "dataclass, a tuple or a scalar"
    )


def _check_field(cls: type, name: str, value: Any, depth: int) -> None:
    try:
        check_immutable(value, depth + 1)
    except MutableMessageError as exc:
        raise MutableMessageError(f"{cls.__name__}.{name}: {exc}") from None


# ---------------------------------------------------------------------------------- dead letters


class DeadLetters:
    """Counts dead letters by reason and hands each to its subscribers."""

    __slots__ = ("_instr", "_subscribers", "counts")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._subscribers: list[Callable[[DeadLetter], None]] = []
        self._instr: Instrumentation | None = None

    def subscribe(self, subscriber: Callable[[DeadLetter], None] | ActorRef) -> Callable[[], None]:
        """Call ``subscriber(letter)`` (or tell it, for a ref) for every dead letter.

        Returns a function that unsubscribes.
        """
        fn: Callable[[DeadLetter], None]
        if isinstance(subscriber, ActorRef):
            ref = subscriber
            fn = lambda letter: ref.tell(letter)  # noqa: E731
        else:
            fn = subscriber
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def publish(self, letter: DeadLetter) -> None:
        self.counts[letter.reason.value] += 1
        if self._instr is not None:
            _safe(self._instr.dead_letter, letter)
        for fn in list(self._subscribers):
            try:
                fn(letter)
            except MailboxFull:
                self.counts["subscriber_overflow"] += 1
            except Exception:
                log.exception("dead-letter subscriber raised; ignored")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# -------------------------------------------------------------------------------------- system


class Scheduler:
    """Chooses which ready actor runs next. FIFO; :class:`mailslot.testing` seeds a shuffle."""

    def pick(self, ready: deque[_Cell]) -> _Cell:
        return ready.popleft()


class _Guardian(Actor):
    def receive(self, message: Any) -> None:
        self.context.unhandled(message)


class ActorSystem(_SystemCore):
    """Owns every actor it spawns; use it as an async context manager.

    Args:
        name: shown in statistics and logs.
        mailbox_capacity: the default capacity of a mailbox.
        high_watermark: fraction of capacity at which senders are told to slow down.
        low_watermark: fraction at which they are told to resume.
        outbox_capacity: how many messages a slowed-down sender may hold per target.
        throughput: messages an actor handles per turn before others get a go (an actor with a
            backlog of more than twice this handles all of it).
        dispatch_budget: messages handled before the loop gets a turn for I/O and timers.
        drain_on_stop: default stop policy: handle queued messages first (True) or discard them.
        supervisor: the strategy for top-level actors.
        clock: the time source (the loop's by default; :class:`mailslot.testing.VirtualClock`).
        scheduler: the ready-queue policy (FIFO by default; seeded shuffle in tests).
        seed: seeds the backoff jitter (and nothing else).
        debug: reject mutable messages with :class:`MutableMessageError`.
        instrumentation: hooks for metrics and tracing (see :mod:`mailslot.runtime.instrument`).
        stamp_envelopes: stamp every message with an :class:`Envelope` (id, time, trace).
        shutdown_timeout: seconds a graceful shutdown waits before cancelling handlers.
    """

    def __init__(
        self,
        name: str = "mailslot",
        *,
        mailbox_capacity: int = 1000,
        high_watermark: float = 0.8,
        low_watermark: float = 0.5,
        outbox_capacity: int = 1000,
        throughput: int = 64,
        dispatch_budget: int = 4096,
        drain_on_stop: bool = True,
        supervisor: SupervisorStrategy | None = None,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
        seed: int | None = None,
        debug: bool = False,
        instrumentation: Instrumentation | None = None,
        stamp_envelopes: bool = False,
        shutdown_timeout: float = 10.0,
    ) -> None:
        if mailbox_capacity < 1:
            raise ValueError(f"mailbox_capacity must be >= 1, got {mailbox_capacity}")
        if not 0 < low_watermark < high_watermark <= 1:
            raise ValueError(
                f"need 0 < low_watermark < high_watermark <= 1, got {low_watermark}, "
                f"{high_watermark}"
            )
        if throughput < 1 or dispatch_budget < 1:
            raise ValueError("throughput and dispatch_budget must be >= 1")
        self.name = name
        self.mailbox_capacity = mailbox_capacity
        self.high_watermark = high_watermark
        self.low_watermark = low_watermark
        self.outbox_capacity = outbox_capacity
        self.throughput = throughput
        self.dispatch_budget = dispatch_budget
        self.drain_on_stop = drain_on_stop
        self.supervisor = supervisor or SupervisorStrategy()
        self._clock_arg = clock
        self.clock: Clock = clock  # type: ignore[assignment]  # bound in start()
        self.scheduler = scheduler
        self.debug = debug
        self.shutdown_timeout = shutdown_timeout
        self.dead_letters = DeadLetters()
        self._instr = instrumentation
        self.dead_letters._instr = instrumentation
        self._stamp = stamp_envelopes or bool(instrumentation and instrumentation.stamps_envelopes)
        self._always_careful = debug or self._stamp
        self._random = _random.Random(seed)
        self._uids = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self._ask_ids = itertools.count(1)
        self._ready: deque[_Cell] = deque()
        self._drain_pending = False
        self._current: ActorRef | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._root: _Cell | None = None
        self._user: _Cell | None = None
        self._system_guardian: _Cell | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # futures piped to actors that something outside the system completes (commits)
        self._external: set[asyncio.Future[Any]] = set()
        self._failure: BaseException | None = None
        self._failure_raised = False
        self._terminated: asyncio.Future[None] | None = None
        self._stopped_totals = Counter[str]()
        self._live = 0
        self._started = False
        self._done: asyncio.Future[None] = None  # type: ignore[assignment]  # bound in start()
        self.messages_dispatched = 0
        # futures only virtual time or other actors can complete (the test kit sets this set)
        self._parked: weakref.WeakSet[asyncio.Future[Any]] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> ActorSystem:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()
        if exc_info[0] is None:
            self._raise_failure()

    def start(self) -> None:
        """Bind to the running loop and create the guardians (``async with`` does this)."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        if self._clock_arg is None:
            self.clock = LoopClock(self._loop)
        self._terminated = self._loop.create_future()
        self._done = self._loop.create_future()
        self._done.set_result(None)
        root = _Cell(self, None, "", _Guardian, 1_000_000, self.supervisor, None)
        root.path = ""
        self._root = root
        self._start_cell(root)
        self._user = self._new_child(root, "user", _Guardian, 1_000_000, self.supervisor, None)
        self._system_guardian = self._new_child(
            root, "system", _Guardian, 1_000_000, self.supervisor, None
        )
        self._started = True

    @property
    def running(self) -> bool:
        return self._started and self._root is not None and self._root.state is _RUNNING

    @property
    def failure(self) -> BaseException | None:
        """The error that escalated past the root, if one did."""
        return self._failure

    async def wait(self) -> None:
        """Wait until the system has stopped; raise :class:`ActorFailed` if an error escalated."""
        assert self._terminated is not None, "system not started"
        await asyncio.shield(self._terminated)
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None and not self._failure_raised:
            self._failure_raised = True
            raise ActorFailed(
                f"an actor failure escalated past the root: {self._failure!r}"
            ) from self._failure

    async def shutdown(self, *, drain: bool | None = None) -> None:
        """Stop every actor, children before parents; waits up to ``shutdown_timeout``."""
        if not self._started or self._root is None:
            return
        root = self._root
        if root.state is _RUNNING:
            user = self._user
            assert user is not None
            user.request_stop(drain)
            await self._wait_stopped(user, self.shutdown_timeout)
            root.request_stop(drain)
        await self._wait_stopped(root, self.shutdown_timeout)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _wait_stopped(self, cell: _Cell, timeout: float) -> None:
        if cell.state is _STOPPED:
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        cell.add_stop_waiter(fut)

        def overdue() -> None:
            if fut.done():
                return
            log.error(
                "%s: actors still stopping after %ss; cancelling their handlers",
                cell.path or "/",
                timeout,
            )
            for t in list(self._tasks):
                t.cancel()

        timer = self.clock.call_later(timeout, overdue)
        try:
            await asyncio.shield(fut)
        finally:
            timer.cancel()

    # ---- spawning -----------------------------------------------------------------------------

    def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        mailbox_capacity: int | None = None,
        supervisor: SupervisorStrategy | None = None,
        mailbox: Coalescing | None = None,
    ) -> ActorRef:
        """Start a top-level actor under ``/user``."""
        if not self.running:
            raise SystemShutdown(f"actor system {self.name!r} is not running")
        assert self._user is not None
        return self._spawn(self._user, factory, name, mailbox_capacity, supervisor, mailbox)

    def spawn_system(self, factory: Callable[[], Actor], *, name: str | None = None) -> ActorRef:
        """Start an actor under ``/system`` (probes, runtime helpers)."""
        if not self.running:
            raise SystemShutdown(f"actor system {self.name!r} is not running")
        assert self._system_guardian is not None
        return self._spawn(self._system_guardian, factory, name, None, None, None)

    def _spawn(
        self,
        parent: _Cell,
        factory: Callable[[], Actor],
        name: str | None,
        capacity: int | None,
        supervisor: SupervisorStrategy | None,
        mailbox: Coalescing | None,
    ) -> ActorRef:
        if parent.state is not _RUNNING:
            raise SystemShutdown(f"{parent.path or '/'} is stopping; cannot spawn children")
        if name is None:
            name = f"${next(self._uids)}"
        elif not name or "/" in name or name.startswith("$"):
            raise InvalidActorName(
                f"invalid actor name {name!r}: must be non-empty, without '/', "
                "not starting with '$'",
                actor=parent.path,
            )
        existing = parent.children.get(name)
        if existing is not None:
            raise InvalidActorName(
                f"{parent.path}/{name} already exists ({_STATE_NAMES[existing.state]})",
                actor=f"{parent.path}/{name}",
            )
        if capacity is not None and capacity < 1:
            raise ValueError(f"mailbox capacity must be >= 1, got {capacity}")
        parent_strategy = parent.actor.supervisor_strategy if parent.actor is not None else None
        strategy = supervisor or parent_strategy or self.supervisor
        cell = self._new_child(
            parent, name, factory, capacity or self.mailbox_capacity, strategy, mailbox
        )
        # the actor class may still set the capacity or the mailbox kind (see _Cell.incarnate)
        cell.configured = (capacity is not None, mailbox is not None)
        return cell.ref

    def _new_child(
        self,
        parent: _Cell,
        name: str,
        factory: Callable[[], Actor],
        capacity: int,
        strategy: SupervisorStrategy,
        mailbox: Coalescing | None,
    ) -> _Cell:
        cell = _Cell(self, parent, name, factory, capacity, strategy, mailbox)
        if parent.children is _NO_CHILDREN:
            parent.children = {}
        parent.children[name] = cell
        self._start_cell(cell)
        return cell

    def _start_cell(self, cell: _Cell) -> None:
        self._live += 1
        cell.post(lambda: cell.lifecycle(cell.start_steps()))

    # ---- dispatch -----------------------------------------------------------------------------

    def _make_ready(self, cell: _Cell) -> None:
        self._ready.append(cell)
        if not self._drain_pending:
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        self._drain_pending = True
        self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        ready = self._ready
        budget = self.dispatch_budget
        done = 0
        pick = self.scheduler.pick if self.scheduler is not None else None
        try:
            while ready and done < budget:
                cell = ready.popleft() if pick is None else pick(ready)
                self._current = cell.ref
                done += cell.run()
        finally:
            self._current = None
            self.messages_dispatched += done
            if ready:
                self._loop.call_soon(self._drain)
            else:
                self._drain_pending = False

    def _create_task(self, coro: Coroutine[Any, Any, T], cell: _Cell) -> asyncio.Task[T]:
        task = self._loop.create_task(_run_as_actor(coro, self, cell.ref))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- ask ----------------------------------------------------------------------------------

    async def _ask(self, ref: LocalActorRef, message: Any, timeout: float) -> Any:
        if timeout is None or timeout <= 0:
            raise ValueError(f"ask needs a timeout > 0 seconds, got {timeout!r}")
        fut: asyncio.Future[Any] = self._loop.create_future()
        if self._parked is not None:
            self._parked.add(fut)
        asker = _AskRef(self, fut, next(self._ask_ids))
        ref.tell(message, asker)
        if fut.done():
            return fut.result()
        handle = self.clock.call_later(timeout, _expire_ask, fut, ref, timeout)
        try:
            return await fut
        finally:
            handle.cancel()

    # ---- supervision --------------------------------------------------------------------------

    def _supervise(self, child: _Cell, exc: BaseException) -> None:
        parent = child.parent
        if parent is None or parent is self._root:
            # a guardian failed: the system goes down
            self._fail_system(exc)
            return
        decision, child.history = decide(
            child.strategy, child.history, exc, now=self.clock.now(), random=self._random.random()
        )
        log.info(
            "%s: supervisor decision %s (%s)", child.path, decision.directive.value, decision.reason
        )
        d = decision.directive
        if d is Directive.RESUME:
            child.suspended = False
            child.continue_after_busy()
        elif d is Directive.RESTART:
            self.clock.call_later(decision.delay, self._restart, child, exc)
        elif d is Directive.STOP:
            child.suspended = False
            child.request_stop(False)
        else:
            if parent is self._user:
                self._fail_system(exc)
            else:
                parent.fail_from_child(exc)

    def _restart(self, child: _Cell, exc: BaseException) -> None:
        if child.state is not _RUNNING:
            return
        child.post(lambda: child.lifecycle(child.restart_steps(exc)))

    def _fail_system(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            log.error(
                "actor system %r stops: a failure escalated past the root: %r", self.name, exc
            )
        root = self._root
        if root is not None and root.state is _RUNNING:
            root.request_stop(False)

    # ---- stopping -----------------------------------------------------------------------------

    def _progress_stop(self, cell: _Cell) -> None:
        """Called whenever a stopping cell might be able to finish."""
        if cell.state is not _STOPPING or cell.busy or cell.in_lifecycle or cell.children:
            return
        if cell.queue and cell.drain_on_stop and not cell.suspended:
            if not cell.scheduled:
                cell.scheduled = True
                self._make_ready(cell)
            return
        cell.discard_mailbox()
        cell.lifecycle(cell.finish_stop_steps())

    def _finalize_stop(self, cell: _Cell) -> None:
        if cell.state is _STOPPED:
            return
        cell.discard_mailbox()
        cell.state = _STOPPED
        cell.gate = 0
        cell.cancel_owned()
        for w in cell.space_waiters or ():
            if not w.done():
                w.set_result(None)  # they retry and get a dead letter
        cell.space_waiters = None
        totals = self._stopped_totals
        totals["processed"] += cell.processed
        totals["failures"] += cell.failures
        totals["restarts"] += cell.restarts
        self._live -= 1
        instr = self._instr
        if instr is not None and cell.actor is not None:
            _safe(instr.stopped, cell.ref, cell.actor_type)
        for target in cell.watching or ():
            if target.watchers is not None:
                target.watchers.discard(cell)
        cell.watching = None
        for watcher in list(cell.watchers or ()):
            if watcher.state is _RUNNING:
                if watcher.watching is not None:
                    watcher.watching.discard(cell)
                watcher.post(
                    functools.partial(watcher.deliver_system_message, Terminated(cell.ref))
                )
        cell.watchers = None
        for w in cell.stop_waiters or ():
            if not w.done():
                w.set_result(None)
        cell.stop_waiters = None
        parent = cell.parent
        if parent is not None:
            if parent.children.get(cell.name) is cell:
                del parent.children[cell.name]
            self._progress_stop(parent)
        if cell is self._root and self._terminated is not None and not self._terminated.done():
            self._terminated.set_result(None)

    def _all_stopped(self, cells: list[_Cell]) -> asyncio.Future[None]:
        """A future done when every one of ``cells`` has stopped."""
        fut: asyncio.Future[None] = self._loop.create_future()
        pending = [c for c in cells if c.state is not _STOPPED]
        if not pending:
            fut.set_result(None)
            return fut
        remaining = len(pending)

        def one_done(_: asyncio.Future[None]) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0 and not fut.done():
                fut.set_result(None)

        for c in pending:
            w: asyncio.Future[None] = self._loop.create_future()
            w.add_done_callback(one_done)
            c.add_stop_waiter(w)
        return fut

    async def stop(self, ref: ActorRef, *, drain: bool | None = None) -> None:
        """Stop an actor and wait until it (and its children) have stopped."""
        cell = _cell_of(ref)
        if cell is None or cell.state is _STOPPED:
            return
        waiter = self._all_stopped([cell])
        cell.request_stop(drain)
        await waiter

    # ---- introspection ------------------------------------------------------------------------

    def _cells(self) -> Iterator[_Cell]:
        stack = [self._user] if self._user is not None else []
        while stack:
            c = stack.pop()
            assert c is not None
            yield c
            stack.extend(c.children.values())

    def lookup(self, path: str) -> ActorRef | None:
        """The ref of the live actor at ``path`` (``/user/a/b``), or ``None``."""
        if self._root is None:
            return None
        cell: _Cell | None = self._root
        for part in path.strip("/").split("/"):
            if cell is None:
                return None
            cell = cell.children.get(part)
        return cell.ref if cell is not None and cell.state is not _STOPPED else None

    def notify_backpressure(self, sender: ActorRef, target: ActorRef, *, slow: bool) -> None:
        """Tell a local ``sender`` that ``target`` wants it to slow down, or that it may resume.

        For refs that are not mailboxes (a cluster transport's remote refs): the sender's
        ``slowed_down``/``resumed`` hook runs in its next turn, as for a full local mailbox.
        Does nothing for a sender that is not a live local actor.
        """
        cell = _cell_of(sender)
        if cell is None or cell.state is _STOPPED:
            return
        signal = SlowDown(target) if slow else Resume(target)
        hook = "slowed_down" if slow else "resumed"
        cell.post(functools.partial(cell.run_hook_named, hook, signal))

    def actor_statistics(self) -> list[ActorStatistics]:
        """A snapshot of every live actor under ``/user``."""
        return [c.statistics() for c in self._cells() if c is not self._user]

    def statistics(self) -> SystemStatistics:
        """A snapshot of the system: totals, dead letters by reason, per-type figures."""
        by_type: dict[str, list[int]] = {}
        processed = self._stopped_totals["processed"]
        failures = self._stopped_totals["failures"]
        restarts = self._stopped_totals["restarts"]
        actors = 0
        for c in self._cells():
            if c is self._user:
                continue
            actors += 1
            processed += c.processed
            failures += c.failures
            restarts += c.restarts
            t = by_type.setdefault(c.actor_type, [0, 0, 0, 0, 0, 0])
            t[0] += 1
            t[1] += len(c.queue)
            t[2] = max(t[2], c.high_water, len(c.queue))
            t[3] += c.processed
            t[4] += c.failures
            t[5] += c.restarts
        return SystemStatistics(
            name=self.name,
            actors=actors,
            processed=processed,
            failures=failures,
            restarts=restarts,
            dead_letters=dict(self.dead_letters.counts),
            by_type={k: TypeStatistics(*v) for k, v in by_type.items()},
        )

    def idle(self) -> bool:
        """True when no actor is ready to run and no handler is in flight."""
        return (
            not self._ready
            and not self._drain_pending
            and not any(not t.done() for t in self._tasks)
        )


def _expire_ask(fut: asyncio.Future[Any], ref: ActorRef, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(
            AskTimeout(
                f"no reply from {ref.path} within {timeout:g}s", actor=ref.path, timeout=timeout
            )
        )
