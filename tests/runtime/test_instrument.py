"""The instrumentation hook sees spawns, batches, failures, restarts, drops and signals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailslot.runtime import (
    Actor,
    ActorRef,
    DeadLetter,
    Envelope,
    Instrumentation,
    SupervisorStrategy,
    droppable,
)
from mailslot.testing import TestKit


class Recording(Instrumentation):
    def __init__(self, per_message: bool = False, stamps: bool = False) -> None:
        self.per_message = per_message
        self.stamps_envelopes = stamps
        self.events: list[tuple[Any, ...]] = []

    def spawned(self, ref: ActorRef, actor_type: str) -> None:
        self.events.append(("spawned", actor_type))

    def stopped(self, ref: ActorRef, actor_type: str) -> None:
        self.events.append(("stopped", actor_type))

    def restarted(self, ref: ActorRef, actor_type: str, error: BaseException) -> None:
        self.events.append(("restarted", actor_type, type(error).__name__))

    def failed(self, ref: ActorRef, actor_type: str, error: BaseException) -> None:
        self.events.append(("failed", actor_type, type(error).__name__))

    def batch(self, ref: ActorRef, actor_type: str, count: int, seconds: float, depth: int) -> None:
        assert seconds >= 0
        self.events.append(("batch", actor_type, count))

    def message_begin(
        self, ref: ActorRef, actor_type: str, message: Any, envelope: Envelope | None
    ) -> Any:
        self.events.append(("begin", actor_type, message, envelope and envelope.trace))
        return message

    def message_end(
        self,
        ref: ActorRef,
        actor_type: str,
        token: Any,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        self.events.append(("end", actor_type, token, error is not None))

    def outgoing(self, sender: ActorRef | None, target: ActorRef, message: Any) -> str | None:
        return f"trace-from-{sender.name if sender else 'outside'}"

    def dead_letter(self, letter: DeadLetter) -> None:
        self.events.append(("dead", letter.reason.value))

    def backpressure(self, target: ActorRef, sender: ActorRef, slow: bool) -> None:
        self.events.append(("slow" if slow else "resume", target.name, sender.name))


@droppable
@dataclass(frozen=True)
class Tick:
    n: int


class Worker(Actor):
    def receive(self, message: Any) -> None:
        if message == "boom":
            raise ValueError("boom")


async def test_batches_failures_restarts_and_dead_letters_are_reported() -> None:
    instr = Recording()
    async with TestKit(instrumentation=instr) as kit:
        ref = kit.system.spawn(Worker, supervisor=SupervisorStrategy(min_backoff=0))
        for i in range(5):
            ref.tell(i)
        await kit.settle()
        ref.tell("boom")
        await kit.advance(1)
        await kit.system.stop(ref)
        ref.tell(Tick(1))
    kinds = [e[0] for e in instr.events]
    assert ("spawned", "Worker") in instr.events
    assert sum(e[2] for e in instr.events if e[0] == "batch" and e[1] == "Worker") == 6
    assert ("failed", "Worker", "ValueError") in instr.events
    assert ("restarted", "Worker", "ValueError") in instr.events
    assert ("stopped", "Worker") in instr.events
    assert ("dead", "stopped") in instr.events
    assert kinds.index("failed") < kinds.index("restarted")


async def test_per_message_hooks_and_envelope_trace_propagation() -> None:
    instr = Recording(per_message=True, stamps=True)

    class Relay(Actor):
        def __init__(self, to: ActorRef) -> None:
            self.to = to

        def receive(self, message: Any) -> None:
            self.to.tell(("relayed", message))

    async with TestKit(instrumentation=instr) as kit:
        sink = kit.system.spawn(Worker, name="sink")
        relay = kit.system.spawn(lambda: Relay(sink), name="relay")
        relay.tell("x")
        await kit.settle()
    begins = [e for e in instr.events if e[0] == "begin"]
    assert ("begin", "Relay", "x", "trace-from-outside") in begins
    assert ("begin", "Worker", ("relayed", "x"), "trace-from-relay") in begins
    assert ("end", "Relay", "x", False) in instr.events


async def test_backpressure_signals_are_reported() -> None:
    instr = Recording()

    class Hold(Actor):
        async def receive(self, message: Any) -> None:
            if message == "hold":
                await self.context.system.clock.sleep(5)

    class Burst(Actor):
        def __init__(self, to: ActorRef) -> None:
            self.to = to

        def receive(self, message: Any) -> None:
            for i in range(10):
                self.to.tell(i)

    async with TestKit(instrumentation=instr, mailbox_capacity=5) as kit:
        target = kit.system.spawn(Hold, name="target")
        target.tell("hold")
        await kit.settle()
        kit.system.spawn(lambda: Burst(target), name="burst").tell("go")
        await kit.advance(10)
    assert ("slow", "target", "burst") in instr.events
    assert ("resume", "target", "burst") in instr.events


async def test_a_broken_hook_never_breaks_the_actors() -> None:
    class Broken(Instrumentation):
        def batch(self, *args: Any) -> None:
            raise RuntimeError("exporter down")

    async with TestKit(instrumentation=Broken()) as kit:
        ref = kit.system.spawn(Worker)
        probe = kit.probe()

        class Echo(Actor):
            def receive(self, message: Any) -> None:
                self.context.reply(message)

        echo = kit.system.spawn(Echo)
        probe.tell(echo, 1)
        assert await probe.expect(1) == 1
        ref.tell(2)
        await kit.settle()
        assert kit.system.statistics().failures == 0
