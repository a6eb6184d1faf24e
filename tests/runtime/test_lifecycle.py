"""Supervision at run time, stopping, death watch, timers and receive timeouts."""

from __future__ import annotations

from typing import Any

import pytest

from mailslot.errors import ActorFailed
from mailslot.runtime import (
    Actor,
    ActorRef,
    Directive,
    ReceiveTimeout,
    SupervisorStrategy,
    Terminated,
)
from mailslot.testing import TestKit


class Flaky(Actor):
    """Counts messages; fails on "boom". Reports each incarnation to the shared log."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.count = 0

    def started(self) -> None:
        self.log.append("started")

    def before_restart(self, error: BaseException) -> None:
        self.log.append(("before_restart", repr(error)))

    def after_restart(self, error: BaseException) -> None:
        self.log.append(("after_restart", repr(error)))

    def receive(self, message: Any) -> None:
        if message == "boom":
            raise RuntimeError("boom")
        self.count += 1
        self.context.reply(self.count)


def spawn_flaky(kit: TestKit, log: list[Any], **strategy: Any) -> ActorRef:
    return kit.system.spawn(
        lambda: Flaky(log), name="flaky", supervisor=SupervisorStrategy(**strategy)
    )


async def test_restart_makes_a_fresh_instance_after_the_backoff() -> None:
    log: list[Any] = []
    async with TestKit() as kit:
        ref = spawn_flaky(kit, log, min_backoff=2.0, jitter=0.0)
        probe = kit.probe()
        probe.tell(ref, "a")
        assert await probe.expect(1) == 1
        probe.tell(ref, "boom")
        probe.tell(ref, "b")  # waits in the mailbox during the backoff
        await probe.expect_no_message(within=1.9)
        assert await probe.expect(1, within=0.2) == 1  # fresh state: count starts again
        assert kit.clock.now() == pytest.approx(2.0)
        assert kit.system.actor_statistics()[0].restarts == 1
    assert log == [
        "started",
        ("before_restart", "RuntimeError('boom')"),
        "started",
        ("after_restart", "RuntimeError('boom')"),
    ]


async def test_resume_keeps_state_and_drops_only_the_failed_message() -> None:
    async with TestKit() as kit:
        ref = spawn_flaky(kit, [], directive=Directive.RESUME)
        probe = kit.probe()
        for m in ("a", "boom", "b"):
            probe.tell(ref, m)
        assert await probe.expect(1) == 1
        assert await probe.expect(2) == 2
        assert kit.system.statistics().failures == 1


async def test_stop_directive_stops_the_child() -> None:
    async with TestKit() as kit:
        ref = spawn_flaky(kit, [], directive=Directive.STOP)
        watcher = kit.probe()

        class Watcher(Actor):
            def started(self) -> None:
                self.context.watch(ref)

            def receive(self, message: Any) -> None:
                watcher.ref.tell(message)

        kit.system.spawn(Watcher)
        await kit.settle()
        ref.tell("boom")
        assert await watcher.expect(Terminated) == Terminated(ref)
        assert kit.system.lookup("/user/flaky") is None


async def test_too_many_restarts_escalate_past_the_root_and_stop_the_system() -> None:
    log: list[Any] = []
    kit = TestKit()

    async def scenario() -> None:
        async with kit:
            ref = spawn_flaky(kit, log, max_restarts=2, min_backoff=0.1, jitter=0)
            for _ in range(3):
                ref.tell("boom")
                await kit.advance(1.0)
            await kit.system.wait()

    with pytest.raises(ActorFailed, match="escalated past the root") as info:
        await scenario()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert log.count("started") == 3  # the first incarnation and two restarts
    assert not kit.system.running


async def test_escalate_fails_the_parent_whose_supervisor_restarts_it() -> None:
    log: list[Any] = []

    class Parent(Actor):
        supervisor_strategy = SupervisorStrategy(directive=Directive.ESCALATE)

        def started(self) -> None:
            log.append("parent started")
            self.context.spawn(lambda: Flaky(log), name="child")

        def receive(self, message: Any) -> None:
            child = self.context.child("child")
            assert child is not None
            child.tell(message, self.context.sender)

    async with TestKit() as kit:
        parent = kit.system.spawn(
            Parent, name="parent", supervisor=SupervisorStrategy(min_backoff=0, jitter=0)
        )
        probe = kit.probe()
        probe.tell(parent, "a")
        assert await probe.expect(1) == 1
        probe.tell(parent, "boom")
        await kit.settle()
        probe.tell(parent, "b")
        assert await probe.expect(1) == 1  # a new child under a new parent
    assert log.count("parent started") == 2
    assert kit.system.statistics().restarts >= 1


async def test_children_stop_before_parents() -> None:
    order: list[str] = []

    class Node(Actor):
        def __init__(self, name: str, depth: int) -> None:
            self.name, self.depth = name, depth

        def started(self) -> None:
            if self.depth:
                for i in range(2):
                    self.context.spawn(
                        lambda i=i: Node(f"{self.name}.{i}", self.depth - 1), name=str(i)
                    )

        def stopping(self) -> None:
            order.append(self.name)

    async with TestKit() as kit:
        kit.system.spawn(lambda: Node("r", 2), name="r")
        await kit.settle()
    assert len(order) == 7
    for name in order:
        children = [
            n for n in order if n.startswith(name + ".") and n.count(".") == name.count(".") + 1
        ]
        assert all(order.index(c) < order.index(name) for c in children)


async def test_stop_drains_or_discards_by_policy() -> None:
    for drain, expected_handled, expected_dead in ((True, 10, 0), (False, 0, 10)):
        handled: list[int] = []

        class Sink(Actor):
            def __init__(self, handled: list[int] = handled) -> None:
                self.handled = handled

            def receive(self, message: Any) -> None:
                self.handled.append(message)

        async with TestKit() as kit:
            ref = kit.system.spawn(Sink)
            await kit.settle()
            for i in range(10):
                ref.tell(i)
            await kit.system.stop(ref, drain=drain)
            ref.tell("late")
            assert len(handled) == expected_handled
            assert kit.system.dead_letters.counts["stopped"] == expected_dead + 1


async def test_watch_an_already_stopped_actor_gets_terminated_at_once() -> None:
    async with TestKit() as kit:
        target = kit.system.spawn(lambda: Flaky([]))
        await kit.system.stop(target)
        probe = kit.probe()

        class Watcher(Actor):
            def started(self) -> None:
                self.context.watch(target)

            def receive(self, message: Any) -> None:
                probe.ref.tell(message)

        kit.system.spawn(Watcher)
        assert await probe.expect(Terminated) == Terminated(target)


async def test_unwatch_means_no_terminated() -> None:
    async with TestKit() as kit:
        target = kit.system.spawn(lambda: Flaky([]))
        probe = kit.probe()

        class Watcher(Actor):
            def started(self) -> None:
                self.context.watch(target)
                self.context.unwatch(target)

            def receive(self, message: Any) -> None:
                probe.ref.tell(message)

        kit.system.spawn(Watcher)
        await kit.settle()
        await kit.system.stop(target)
        await probe.expect_no_message(within=1)


class Timed(Actor):
    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def receive(self, message: Any) -> None:
        ctx = self.context
        match message:
            case ("once", key, delay):
                ctx.start_single_timer(key, ("fired", key), delay)
            case ("every", key, interval):
                ctx.start_periodic_timer(key, ("tick", key), interval)
            case ("cancel", key):
                ctx.cancel_timer(key)
            case ("idle", seconds):
                ctx.set_receive_timeout(seconds)
            case _:
                self.probe.tell((message, round(ctx.system.clock.now(), 6)))


async def test_single_and_periodic_timers_fire_at_exact_virtual_times() -> None:
    async with TestKit() as kit:
        probe = kit.probe()
        ref = kit.system.spawn(lambda: Timed(probe.ref))
        ref.tell(("once", "a", 1.5))
        ref.tell(("every", "b", 1.0))
        assert await probe.expect(within=1.0) == (("tick", "b"), 1.0)
        assert await probe.expect(within=0.5) == (("fired", "a"), 1.5)
        assert await probe.expect(within=0.5) == (("tick", "b"), 2.0)
        assert await probe.expect(within=1.0) == (("tick", "b"), 3.0)
        ref.tell(("cancel", "b"))
        await probe.expect_no_message(within=10)


async def test_restarting_a_single_timer_with_the_same_key_replaces_it() -> None:
    async with TestKit() as kit:
        probe = kit.probe()
        ref = kit.system.spawn(lambda: Timed(probe.ref))
        ref.tell(("once", "k", 1.0))
        await kit.advance(0.5)
        ref.tell(("once", "k", 1.0))
        assert await probe.expect(within=5) == (("fired", "k"), 1.5)
        await probe.expect_no_message(within=5)


async def test_receive_timeout_fires_after_idleness_only() -> None:
    async with TestKit() as kit:
        probe = kit.probe()
        ref = kit.system.spawn(lambda: Timed(probe.ref))
        ref.tell(("idle", 2.0))
        await kit.advance(1.5)
        ref.tell("poke")  # activity resets the idle clock
        assert await probe.expect() == ("poke", 1.5)
        message, when = await probe.expect(within=5)
        assert isinstance(message, ReceiveTimeout)
        assert when == pytest.approx(3.5)
