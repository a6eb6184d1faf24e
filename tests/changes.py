"""Waiting for something to change without sleeping: whatever changes pokes, waiters wake."""

from __future__ import annotations

import asyncio


class Changes:
    """Wakes every waiter at the next :meth:`poke`.

    Take the waiter (:meth:`next`) before looking at the state, then await it: a poke between the
    look and the wait is not lost.
    """

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future[None]] = []

    def poke(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def next(self) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter
