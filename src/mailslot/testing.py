"""The deterministic test kit: a virtual clock, a seeded scheduler and probes.

Theory of operation
-------------------
A :class:`TestKit` owns an :class:`~mailslot.runtime.ActorSystem` whose clock is a
:class:`VirtualClock` and whose ready queue is picked by a :class:`SeededScheduler`. Virtual time
stands still until the test moves it, so timers, backoff, receive timeouts and ask timeouts fire
instantly and exactly, and a test never sleeps.

:meth:`TestKit.settle` lets the system run until nothing is left to do *at the current virtual
time*: no actor ready, no handler task that could still make progress. A task waiting only for
virtual time or for another actor (an ask, ``await send``, ``clock.sleep``) is *parked*; a task
waiting on real I/O (a database thread, a socket) keeps ``settle`` waiting (up to a real-time
limit, scaled by the ``MAILSLOT_TEST_TIMEOUT_FACTOR`` environment variable).
:meth:`TestKit.advance` moves time forward timer by timer, settling after each, so that a timer set
by a handler that another timer woke fires at its exact time.

The seeded scheduler permutes the order in which ready actors run (each mailbox stays FIFO), so a
property test can run one scenario under many interleavings, and the same seed always replays the
same interleaving.

:class:`Probe` is an actor whose messages the test inspects: ``await probe.expect(Pong, within=1)``
advances virtual time up to the bound and fails with a clear message if nothing matching arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import random
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from mailslot.runtime import Actor, ActorRef, ActorSystem, Scheduler
from mailslot.runtime.core import _Cell

__all__ = ["Probe", "SeededScheduler", "TestKit", "VirtualClock"]

T = TypeVar("T")

_FACTOR = float(os.environ.get("MAILSLOT_TEST_TIMEOUT_FACTOR", "1"))


class _VirtualTimer:
    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A clock whose time moves only when told (see :meth:`TestKit.advance`)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _VirtualTimer]] = []
        self._seq = itertools.count()
        self.parked: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> _VirtualTimer:
        timer = _VirtualTimer(self._now + max(0.0, delay), callback, args)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.parked.add(fut)
        self.call_later(delay, _resolve, fut)
        await fut

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire_due(self) -> int:
        """Run every timer due at the current time, in order; returns how many ran."""
        fired = 0
        heap = self._heap
        while heap and heap[0][0] <= self._now:
            _, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            timer.cancelled = True
            timer.callback(*timer.args)
            fired += 1
        return fired

    def set_time(self, when: float) -> None:
        if when < self._now:
            raise ValueError(f"virtual time cannot go back from {self._now} to {when}")
        self._now = when


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class SeededScheduler(Scheduler):
    """Runs ready actors in a pseudo-random order fixed by ``seed``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def pick(self, ready: deque[_Cell]) -> _Cell:
        n = len(ready)
        if n == 1:
            return ready.popleft()
        i = self._rng.randrange(n)
        ready.rotate(-i)
        cell = ready.popleft()
        ready.rotate(i)
        return cell


class _ProbeActor(Actor):
    def __init__(self, probe: Probe) -> None:
        self._probe = probe

    def receive(self, message: Any) -> None:
        self._probe._inbox.append((message, self.context.sender))


Matcher = type | Callable[[Any], bool] | Any


class Probe:
    """An actor whose received messages a test can expect, in virtual time."""

    def __init__(self, kit: TestKit, name: str | None) -> None:
        self._kit = kit
        self._inbox: deque[tuple[Any, ActorRef | None]] = deque()
        self.last_sender: ActorRef | None = None
        self.ref = kit.system.spawn_system(lambda: _ProbeActor(self), name=name)

    def tell(self, target: ActorRef, message: Any) -> None:
        """Send ``message`` to ``target`` with this probe as the sender."""
        target.tell(message, self.ref)

    def reply(self, message: Any) -> None:
        """Answer the sender of the last message received."""
        if self.last_sender is None:
            raise AssertionError("the probe has received no message with a sender to reply to")
        self.last_sender.tell(message, self.ref)

    @property
    def pending(self) -> list[Any]:
        return [m for m, _ in self._inbox]

    async def expect(self, matcher: Matcher = None, *, within: float = 1.0) -> Any:
        """Wait (in virtual time, at most ``within`` s) for the next message and check it.

        ``matcher`` is a type (isinstance), a predicate, a value (==) or ``None`` (anything).
        """
        await self._kit.run_until(lambda: bool(self._inbox), within=within, what=None)
        if not self._inbox:
            raise AssertionError(
                f"{self.ref.path} received no message within {within}s of virtual time"
                + (f" (expected {_describe(matcher)})" if matcher is not None else "")
            )
        message, sender = self._inbox.popleft()
        self.last_sender = sender
        if not _matches(matcher, message):
            raise AssertionError(f"{self.ref.path} expected {_describe(matcher)}, got {message!r}")
        return message

    async def expect_no_message(self, *, within: float) -> None:
        """Assert that nothing arrives for ``within`` s of virtual time."""
        await self._kit.run_until(lambda: bool(self._inbox), within=within, what=None)
        if self._inbox:
            raise AssertionError(f"{self.ref.path} expected no message, got {self._inbox[0][0]!r}")


def _matches(matcher: Matcher, message: Any) -> bool:
    if matcher is None:
        return True
    if isinstance(matcher, type):
        return isinstance(message, matcher)
    if callable(matcher):
        return bool(matcher(message))
    return bool(message == matcher)


def _describe(matcher: Matcher) -> str:
    if isinstance(matcher, type):
        return f"a {matcher.__name__}"
    if callable(matcher):
        return f"a message matching {getattr(matcher, '__name__', matcher)}"
    return repr(matcher)


class TestKit:
    """An actor system on a virtual clock and a seeded scheduler, with helpers to drive it.

    Use it as an async context manager; extra keyword arguments go to
    :class:`~mailslot.runtime.ActorSystem`.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, *, seed: int = 0, start: float = 0.0, **system_options: Any) -> None:
        self.clock = VirtualClock(start)
        self.scheduler = SeededScheduler(seed)
        self.system = ActorSystem(
            clock=self.clock, scheduler=self.scheduler, seed=seed, **system_options
        )
        self.system._parked = self.clock.parked
        self._probes = itertools.count(1)
        self._holding = False

    async def __aenter__(self) -> TestKit:
        await self.system.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        # shut down while driving virtual time, so handlers waiting on timers can finish
        await self.run(self.system.shutdown(), within=self.system.shutdown_timeout + 1)
        if exc_info[0] is None:
            self.system._raise_failure()

    def probe(self, name: str | None = None) -> Probe:
        """A new probe actor (under ``/system``)."""
        return Probe(self, name or f"probe-{next(self._probes)}")

    # ---- driving --------------------------------------------------------------------------

    def _active_tasks(self) -> list[asyncio.Future[Any]]:
        parked = self.clock.parked
        active: list[asyncio.Future[Any]] = []
        for t in self.system._tasks:
            if t.done():
                continue
            waiter = getattr(t, "_fut_waiter", None)
            if waiter is not None and (waiter in parked or self._holding):
                continue
            active.append(t)
        if not self._holding:
            # results piped to actors from outside (commits): wait for those too
            active.extend(f for f in self.system._external if not f.done())
        return active

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """While inside, tasks waiting on I/O count as parked.

        For tests that hold something back on purpose (a store whose commits wait for the test):
        :meth:`settle` would otherwise wait for that I/O until its real-time limit.
        """
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    async def settle(self, *, real_timeout: float = 10.0) -> None:
        """Run until nothing can progress without virtual time moving."""
        system = self.system
        deadline = time.monotonic() + real_timeout * _FACTOR
        quiet = 0
        while quiet < 3:
            await asyncio.sleep(0)
            if system._ready or system._drain_pending or self._active_tasks():
                quiet = 0
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"the system did not settle within {real_timeout * _FACTOR}s of real "
                        f"time; active tasks: {self._active_tasks()!r}"
                    )
            else:
                quiet += 1

    async def advance(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds``, firing timers in order."""
        if seconds < 0:
            raise ValueError(f"cannot advance by a negative time ({seconds})")
        await self.advance_to(self.clock.now() + seconds)

    async def advance_to(self, when: float) -> None:
        await self.settle()
        clock = self.clock
        while True:
            nxt = clock.next_deadline()
            if nxt is None or nxt > when:
                break
            clock.set_time(max(nxt, clock.now()))
            clock.fire_due()
            await self.settle()
        clock.set_time(max(when, clock.now()))
        await self.settle()

    async def run_until(
        self, condition: Callable[[], bool], *, within: float, what: str | None = "the condition"
    ) -> None:
        """Advance virtual time timer by timer until ``condition()`` or ``within`` s pass.

        Raises AssertionError on timeout when ``what`` names what was awaited; returns quietly
        when ``what`` is ``None``.
        """
        clock = self.clock
        deadline = clock.now() + within
        await self.settle()
        while not condition():
            nxt = clock.next_deadline()
            if nxt is None or nxt > deadline:
                await self.advance_to(deadline)
                if condition() or what is None:
                    return
                raise AssertionError(f"no {what} within {within}s of virtual time")
            await self.advance_to(nxt)

    async def run(self, awaitable: Awaitable[T], *, within: float = 60.0) -> T:
        """Await ``awaitable`` while driving virtual time (for asks and the like from a test)."""

        async def wrapper() -> T:
            return await awaitable

        task = asyncio.ensure_future(wrapper())
        try:
            await self.run_until(task.done, within=within, what="result")
        except AssertionError:
            task.cancel()
            raise
        return task.result()
