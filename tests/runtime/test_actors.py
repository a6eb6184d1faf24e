"""Actors, refs, tell/send/ask, lifecycle hooks and coroutine handlers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from mailslot.errors import (
    ActorStopped,
    AskTimeout,
    InvalidActorName,
    MutableMessageError,
    SystemShutdown,
)
from mailslot.runtime import Actor, ActorRef, ActorSystem
from mailslot.testing import TestKit


class Echo(Actor):
    def receive(self, message: Any) -> None:
        self.context.reply(("echo", message))


class Recorder(Actor):
    """Records every message and lifecycle event in a list shared with the test."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def started(self) -> None:
        self.log.append("started")

    def stopping(self) -> None:
        self.log.append("stopping")

    def receive(self, message: Any) -> None:
        self.log.append(message)


async def test_tell_and_ask_round_trip() -> None:
    async with TestKit() as kit:
        echo = kit.system.spawn(Echo, name="echo")
        assert await kit.run(echo.ask("hi", timeout=1)) == ("echo", "hi")
        probe = kit.probe()
        probe.tell(echo, 42)
        assert await probe.expect(("echo", 42)) == ("echo", 42)
        assert probe.last_sender == echo


async def test_refs_are_paths_hashable_and_ordered() -> None:
    async with TestKit() as kit:

        class Parent(Actor):
            def started(self) -> None:
                self.context.spawn(Echo, name="d1")

            def receive(self, message: Any) -> None:
                self.context.reply(self.context.child("d1"))

        docs = kit.system.spawn(Parent, name="docs")
        child = await kit.run(docs.ask("which", timeout=1))
        assert str(docs) == "/user/docs"
        assert str(child) == "/user/docs/d1"
        assert repr(child) == "<LocalActorRef /user/docs/d1>"
        assert child.name == "d1"
        assert kit.system.lookup("/user/docs/d1") == child
        assert len({docs, child, kit.system.lookup("/user/docs")}) == 2
        assert sorted([child, docs]) == [docs, child]


async def test_names_are_validated() -> None:
    async with TestKit() as kit:
        kit.system.spawn(Echo, name="a")
        with pytest.raises(InvalidActorName, match="already exists"):
            kit.system.spawn(Echo, name="a")
        for bad in ("", "a/b", "$x"):
            with pytest.raises(InvalidActorName, match="invalid actor name"):
                kit.system.spawn(Echo, name=bad)


async def test_messages_from_one_sender_arrive_in_order_one_at_a_time() -> None:
    log: list[Any] = []
    async with TestKit() as kit:
        ref = kit.system.spawn(lambda: Recorder(log))
        for i in range(500):
            ref.tell(i)
        await kit.settle()
    assert log[0] == "started"
    assert log[1:501] == list(range(500))
    assert log[-1] == "stopping"


class SlowAsync(Actor):
    """A coroutine handler: while it awaits, no other message is taken."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.active = 0

    async def receive(self, message: Any) -> None:
        self.active += 1
        assert self.active == 1, "two messages handled at once"
        self.log.append(("begin", message))
        await self.context.system.clock.sleep(1.0)
        self.log.append(("end", message))
        self.active -= 1
        self.context.reply(message)


async def test_coroutine_handler_takes_no_other_message_while_awaiting() -> None:
    log: list[Any] = []
    async with TestKit() as kit:
        ref = kit.system.spawn(lambda: SlowAsync(log))
        probe = kit.probe()
        for i in range(3):
            probe.tell(ref, i)
        await kit.advance(0.5)
        assert log == [("begin", 0)]
        assert await probe.expect(0, within=1) == 0
        assert await probe.expect(1, within=1) == 1
        assert await probe.expect(2, within=1) == 2
        assert kit.clock.now() == pytest.approx(3.0)
    assert log == [(kind, i) for i in range(3) for kind in ("begin", "end")]


async def test_sender_is_known_inside_coroutine_handlers_after_awaits() -> None:
    class Forwarder(Actor):
        def __init__(self, target: ActorRef) -> None:
            self.target = target

        async def receive(self, message: Any) -> None:
            await asyncio.sleep(0)
            self.target.tell(("via", message))  # sender is this actor
            self.context.reply("done")

    async with TestKit() as kit:
        sink = kit.probe("sink")
        fwd = kit.system.spawn(lambda: Forwarder(sink.ref), name="fwd")
        caller = kit.probe("caller")
        caller.tell(fwd, 1)
        assert await sink.expect(("via", 1)) == ("via", 1)
        assert sink.last_sender == fwd
        assert await caller.expect("done") == "done"


async def test_ask_times_out_with_ask_timeout_which_is_a_timeout_error() -> None:
    class Silent(Actor):
        def receive(self, message: Any) -> None:
            pass

    async with TestKit() as kit:
        ref = kit.system.spawn(Silent, name="silent")
        with pytest.raises(AskTimeout, match=r"no reply from /user/silent within 2s") as info:
            await kit.run(ref.ask("?", timeout=2))
        assert isinstance(info.value, TimeoutError)
        assert kit.clock.now() == pytest.approx(2.0)
        with pytest.raises(ValueError, match="timeout > 0"):
            await ref.ask("?", timeout=0)


async def test_ask_a_stopped_actor_fails_fast_and_tell_does_not_raise() -> None:
    async with TestKit() as kit:
        ref = kit.system.spawn(Echo)
        await kit.system.stop(ref)
        ref.tell("into the void")  # no exception
        with pytest.raises(ActorStopped, match="cannot answer: stopped"):
            await ref.ask("?", timeout=1)
        assert kit.system.dead_letters.counts["stopped"] == 2


async def test_handler_error_fails_the_ask_and_the_actor_is_supervised() -> None:
    class Boom(Actor):
        def receive(self, message: Any) -> None:
            raise KeyError(message)

    async with TestKit() as kit:
        ref = kit.system.spawn(Boom)
        with pytest.raises(KeyError):
            await kit.run(ref.ask("x", timeout=1))
        stats = kit.system.statistics()
        assert stats.failures == 1


async def test_send_waits_for_room_instead_of_raising() -> None:
    log: list[Any] = []
    async with TestKit(mailbox_capacity=4) as kit:
        ref = kit.system.spawn(lambda: Recorder(log))

        async def producer() -> None:
            for i in range(20):
                await ref.send(i)

        await kit.run(producer())
        await kit.settle()
    assert log[1:21] == list(range(20))


async def test_lifecycle_hooks_may_be_coroutines() -> None:
    log: list[Any] = []

    class AsyncHooks(Actor):
        async def started(self) -> None:
            await asyncio.sleep(0)
            log.append("started")

        async def stopping(self) -> None:
            await asyncio.sleep(0)
            log.append("stopping")

        def receive(self, message: Any) -> None:
            log.append(message)

    async with TestKit() as kit:
        ref = kit.system.spawn(AsyncHooks)
        ref.tell("m")  # queued while started() awaits
        await kit.settle()
        await kit.system.stop(ref)
    assert log == ["started", "m", "stopping"]


async def test_system_rejects_spawn_after_shutdown() -> None:
    system = ActorSystem()
    async with system:
        pass
    with pytest.raises(SystemShutdown, match="not running"):
        system.spawn(Echo)


async def test_debug_mode_rejects_mutable_messages_with_a_clear_error() -> None:
    class FrozenStruct(msgspec.Struct, frozen=True):
        items: tuple[int, ...]

    class MutableStruct(msgspec.Struct):
        x: int

    @dataclass(frozen=True)
    class Holder:
        payload: Any

    async with TestKit(debug=True) as kit:
        ref = kit.system.spawn(Echo)
        ref.tell(FrozenStruct((1, 2)))
        ref.tell(("tuple", 1, frozenset({2})))
        with pytest.raises(
            MutableMessageError, match=r"MutableStruct is a msgspec\.Struct without"
        ):
            ref.tell(MutableStruct(1))
        with pytest.raises(MutableMessageError, match=r"Holder.payload: list is not an immutable"):
            ref.tell(Holder([1]))
        with pytest.raises(MutableMessageError, match="dict is not an immutable message"):
            ref.tell({"a": 1})


async def test_works_on_the_real_clock_too() -> None:
    async with ActorSystem() as system:
        echo = system.spawn(Echo)
        assert await echo.ask(1, timeout=5) == ("echo", 1)
        stats = system.statistics()
        assert stats.actors == 1
        assert stats.by_type["Echo"].processed == 1
