"""A short, narrated tour of the runtime: ``mailslot demo``.

Three scenes, each printing what happens as it happens:

1. actors that own their state, and ask with a timeout;
2. a supervisor restarting a crashing child with backoff, then giving up and escalating;
3. backpressure: a fast producer is told to slow down by a slow consumer and resumes later,
   with nothing lost.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from mailslot.errors import AskTimeout
from mailslot.runtime import (
    Actor,
    ActorRef,
    ActorSystem,
    Directive,
    SupervisorStrategy,
    Terminated,
)

__all__ = ["main"]


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Balance:
    pass


class Account(Actor):
    """Private state, one message at a time: no lock anywhere."""

    def __init__(self) -> None:
        self.balance = 0

    def receive(self, message: Any) -> None:
        match message:
            case Deposit(amount):
                self.balance += amount
            case Balance():
                self.context.reply(self.balance)
            case _:
                self.context.unhandled(message)


class Flaky(Actor):
    def __init__(self, out: _Printer) -> None:
        self.out = out
        self.handled = 0

    def started(self) -> None:
        self.out(f"  {self.context.self} started (a fresh instance, handled=0)")

    def receive(self, message: Any) -> None:
        if message == "crash":
            raise RuntimeError("the child tripped over a bad message")
        self.handled += 1
        self.out(f"  {self.context.self} handled {message!r} (handled={self.handled})")


class Supervisor(Actor):
    supervisor_strategy = SupervisorStrategy(
        directive=Directive.RESTART, max_restarts=2, within=10, min_backoff=0.05, jitter=0.5
    )

    def __init__(self, out: _Printer) -> None:
        self.out = out

    def started(self) -> None:
        child = self.context.spawn(lambda: Flaky(self.out), name="worker")
        self.context.watch(child)

    def receive(self, message: Any) -> None:
        if isinstance(message, Terminated):
            self.out(f"  supervisor saw {message.actor} terminate")
            return
        worker = self.context.child("worker")
        if worker is not None:
            worker.tell(message)


class SlowConsumer(Actor):
    mailbox_capacity = 50

    def __init__(self, out: _Printer, done: asyncio.Future[int], total: int) -> None:
        self.out = out
        self.done = done
        self.total = total
        self.count = 0

    async def receive(self, message: Any) -> None:
        await asyncio.sleep(0.0005)  # pretend to write to a disk
        self.count += 1
        if self.count == self.total and not self.done.done():
            self.done.set_result(self.count)


class FastProducer(Actor):
    def __init__(self, out: _Printer, target: ActorRef, total: int) -> None:
        self.out = out
        self.target = target
        self.total = total
        self.sent = 0
        self.paused = False
        self.pauses = 0

    def receive(self, message: Any) -> None:
        if self.paused:
            return
        for _ in range(25):
            if self.sent == self.total:
                self.out(f"  producer finished sending {self.total} messages")
                return
            self.target.tell(("item", self.sent))
            self.sent += 1
        self.context.self.tell("more")

    def slowed_down(self, target: ActorRef) -> None:
        self.paused = True
        self.pauses += 1
        if self.pauses <= 3:
            self.out(f"  producer: {target} said SlowDown after {self.sent} sent; pausing")

    def resumed(self, target: ActorRef) -> None:
        self.paused = False
        if self.pauses <= 3:
            self.out(f"  producer: {target} said Resume; carrying on from {self.sent}")
        self.context.self.tell("more")


class _Printer:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.3f}s] {text}", flush=True)


async def _tour(out: _Printer) -> None:
    out("scene 1: actors own their state; ask always has a timeout")
    async with ActorSystem("demo") as system:
        account = system.spawn(Account, name="account")
        for amount in (10, 20, 12):
            account.tell(Deposit(amount))
        out(f"  deposited 10, 20 and 12; balance is {await account.ask(Balance(), timeout=1)}")
        silent = system.spawn(Account, name="silent")
        try:
            await silent.ask("an unknown question", timeout=0.1)
        except AskTimeout as exc:
            out(f"  AskTimeout (also a TimeoutError): {exc}")
        out(f"  dead letters so far: {dict(system.dead_letters.counts)}")

    out("scene 2: a supervisor restarts a crashing child, with backoff, then escalates")
    system = ActorSystem("demo", supervisor=SupervisorStrategy(directive=Directive.STOP))
    async with system:
        sup = system.spawn(lambda: Supervisor(out), name="supervisor")
        for message in ("job-1", "crash", "job-2", "crash", "job-3", "crash"):
            out(f"  -> {message}")
            sup.tell(message)
            await asyncio.sleep(0.3)
        out(f"  restarts: {system.statistics().restarts}; the third crash was one too many,")
        out("  so the supervisor escalated and its own parent's strategy (stop) stopped it")

    out("scene 3: backpressure slows a fast producer down; nothing is lost")
    async with ActorSystem("demo") as system:
        total = 1000
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        consumer = system.spawn(lambda: SlowConsumer(out, done, total), name="consumer")
        producer = system.spawn(lambda: FastProducer(out, consumer, total), name="producer")
        producer.tell("more")
        handled = await asyncio.wait_for(done, 30)
        stats = {s.path: s for s in system.actor_statistics()}
        c = stats["/user/consumer"]
        out(
            f"  consumer handled {handled} of {total}; its mailbox never held more than "
            f"{c.mailbox_high_water} (capacity {c.mailbox_capacity}); dead letters: "
            f"{system.dead_letters.total}"
        )


class _OneLine(logging.Formatter):
    """The runtime logs failures with their traceback; the tour shows one line each."""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_info = None
        record.exc_text = None
        return f"         log {record.levelname.lower()}: {record.getMessage()}"


def main(*, seed: int = 7) -> int:
    """Run the tour; returns the process exit status."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_OneLine())
    runtime_log = logging.getLogger("mailslot.runtime")
    runtime_log.addHandler(handler)
    runtime_log.setLevel(logging.WARNING)
    runtime_log.propagate = False
    out = _Printer()
    out(f"mailslot runtime demo (seed {seed})")
    asyncio.run(_tour(out))
    out("done")
    return 0
