"""Time, as the runtime sees it.

Every timer in the runtime (actor timers, receive timeouts, ask timeouts, restart backoff) goes
through a :class:`Clock`, so that the test kit can swap in a virtual clock
(:class:`mailslot.testing.VirtualClock`) on which time only moves when a test says so, and every
timeout runs instantly and exactly. :class:`LoopClock` is the real one: asyncio's loop time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Cancellable", "Clock", "LoopClock"]


class Cancellable(Protocol):
    """A scheduled callback that can be cancelled (asyncio's TimerHandle fits)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The runtime's source of time and timers."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Cancellable:
        """Run ``callback(*args)`` after ``delay`` seconds (at once if ``delay <= 0``)."""
        ...

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds of this clock's time."""
        ...


class LoopClock:
    """The real clock: the running asyncio loop's ``time()`` and ``call_later``."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()

    def now(self) -> float:
        return self._loop.time()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Cancellable:
        if delay <= 0:
            return self._loop.call_soon(callback, *args)
        return self._loop.call_later(delay, callback, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)
