"""The runtime's two cores: C (``mailslot.runtime._speedups``) and pure Python.

The runtime's suites run in this process against the core in use (C when it was built) and, below,
in a child process against the pure-Python core, so both keep the same behaviour. The tests here
hold the contract between ``_Cell.run`` and the core's ``turn``, and what the C core must do that
Python does by itself (argument checks, garbage collection of cycles through its fields).
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections import deque
from typing import Any

import pytest

from mailslot.runtime import Actor, ActorRef, ActorSystem, core
from mailslot.testing import TestKit
from tests.twins import assert_pure_twin_passes, require_c_core


def test_the_c_core_is_built_where_a_compiler_is() -> None:
    require_c_core(core.ACCELERATED, "mailslot.runtime._speedups", "MAILSLOT_PURE_RUNTIME")
    from mailslot.runtime import _speedups

    assert core._Cell.__mro__[1] is _speedups.CellCore
    assert core.ActorSystem.__mro__[1] is _speedups.SystemCore
    assert core.LocalActorRef.tell is _speedups.RefCore.__dict__["_tell_local"]


class Recorder(Actor):
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def receive(self, message: Any) -> None:
        self.log.append((message, self.context.sender))


async def test_tell_takes_its_arguments_as_declared() -> None:
    async with TestKit() as kit:
        log: list[Any] = []
        ref = kit.system.spawn(lambda: Recorder(log), name="rec")
        other = kit.system.spawn(lambda: Recorder([]), name="other")
        ref.tell(1)
        ref.tell(2, other)
        ref.tell(3, sender=other)
        ref.tell(4, None)
        ref.tell(message=5)
        ref.tell(sender=other, message=6)
        with pytest.raises(TypeError):
            ref.tell()  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            ref.tell(7, other, other)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            ref.tell(8, recipient=other)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            ref.tell(9, message=10)  # type: ignore[misc]
        with pytest.raises(TypeError):
            ref.tell(11, other, sender=other)  # type: ignore[misc]
        with pytest.raises(TypeError):
            ref.tell(sender=other)  # type: ignore[call-arg]
        assert ref.tell(12) is None
        await kit.settle()
        assert log == [
            (1, None),
            (2, other),
            (3, other),
            (4, None),
            (5, None),
            (6, other),
            (12, None),
        ]


class _Cell(core._Cell):
    """A cell outside any system, to drive ``turn`` by hand."""

    def __init__(self, receive: Any) -> None:
        self.queue = deque()
        self.receive = receive
        self.sysq = None
        self.meta = None
        self.tasks: list[tuple[Any, Any]] = []

    def start_handler_task(self, r: Any, message: Any) -> None:
        self.tasks.append((r, message))


def _fill(cell: _Cell, *messages: Any) -> None:
    for i, m in enumerate(messages):
        cell.queue.append((m, f"sender-{i}"))


def test_a_turn_takes_up_to_its_limit_and_keeps_each_sender() -> None:
    seen: list[Any] = []
    cell = _Cell(lambda m: seen.append((m, cell.meta)))
    _fill(cell, "a", "b", "c")
    assert cell.turn(2) == 2
    assert seen == [("a", "sender-0"), ("b", "sender-1")]
    assert list(cell.queue) == [("c", "sender-2")]
    assert cell.turn(0) == 0
    assert cell.turn(1) == 1
    assert seen[-1] == ("c", "sender-2")
    assert not cell.queue


def test_a_failing_handler_says_how_far_the_turn_got() -> None:
    def receive(m: Any) -> None:
        if m == "bad":
            raise ValueError(m)

    cell = _Cell(receive)
    _fill(cell, "ok", "bad", "later")
    with pytest.raises(ValueError, match="bad"):
        cell.turn(3)
    assert cell.turn_done == 2
    assert cell.turn_message == "bad"
    assert list(cell.queue) == [("later", "sender-2")]


def test_a_turn_stops_at_a_coroutine_handler_and_at_control_work() -> None:
    marker = object()

    def receive(m: Any) -> Any:
        if m == "async":
            return marker
        if m == "control":
            cell.sysq = deque([lambda: None])
        return None

    cell = _Cell(receive)
    _fill(cell, "async", "x", "control", "y")
    assert cell.turn(4) == 1
    assert cell.tasks == [(marker, "async")]
    assert cell.turn(4) == 2
    assert list(cell.queue) == [("y", "sender-3")]


def test_a_turn_unpacks_any_pair_and_rejects_other_entries() -> None:
    seen: list[Any] = []
    cell = _Cell(lambda m: seen.append((m, cell.meta)))
    cell.queue.append(["listed", "s"])
    cell.queue.append(("a", "b", "c"))
    with pytest.raises(ValueError, match="expected 2"):
        cell.turn(2)
    assert seen == [("listed", "s")]
    assert cell.turn_done == 2


def test_only_an_exception_is_recorded_as_the_turn_s_failure() -> None:
    def receive(m: Any) -> None:
        raise KeyboardInterrupt

    cell = _Cell(receive)
    cell.turn_done, cell.turn_message = 0, None
    _fill(cell, "interrupted")
    with pytest.raises(KeyboardInterrupt):
        cell.turn(1)
    assert (cell.turn_done, cell.turn_message) == (0, None)  # nothing holds on to the message


class _System(core._SystemCore):
    """Just what a tell reads from a system."""

    def __init__(self) -> None:
        self._current = None
        self._ready = deque()
        self._drain_pending = True


def _ref_to(cell: _Cell) -> core.LocalActorRef:
    ref = core.LocalActorRef.__new__(core.LocalActorRef)
    ref._cell = cell
    return ref


def test_a_tell_holds_what_it_uses_while_python_code_runs() -> None:
    """A mailbox's __len__ or a flag's __bool__ may rebind the cell's fields, or the ref's
    cell, and drop the last reference to what the tell was using."""
    cell = _Cell(lambda m: None)
    cell.system = _System()  # type: ignore[assignment]
    cell.gate = 10
    cell.scheduled = False

    class Rebinding:
        def __init__(self) -> None:
            self.appended: list[Any] = []

        def __len__(self) -> int:
            cell.queue = deque()  # drops the last reference to this mailbox
            return 0

        def append(self, item: Any) -> None:
            self.appended.append(item)

    cell.queue = Rebinding()
    _ref_to(cell).tell("m")
    assert list(cell.queue) == []

    class Flag:
        def __bool__(self) -> bool:
            ref._cell = _Cell(None)  # drops the last reference to the cell being told
            return False

    other = _Cell(lambda m: None)
    other.system = _System()  # type: ignore[assignment]
    other.gate = 10
    other.scheduled = Flag()  # type: ignore[assignment]
    ref = _ref_to(other)
    system = other.system
    del other
    ref.tell("m")
    assert len(system._ready) == 1


def test_a_turn_calls_any_callable_receive() -> None:
    class Handler:
        def __init__(self) -> None:
            self.seen: list[Any] = []

        def __call__(self, m: Any) -> None:
            self.seen.append(m)

    handler = Handler()
    cell = _Cell(handler)
    _fill(cell, 1, 2)
    assert cell.turn(2) == 2
    assert handler.seen == [1, 2]


async def test_actors_systems_and_refs_are_garbage_collected() -> None:
    class Holder(Actor):
        def receive(self, message: Any) -> None:
            self.context.reply(self)  # the actor leaves its system only as a weak reference

    async def use_a_system() -> tuple[weakref.ref[Any], weakref.ref[ActorSystem]]:
        async with ActorSystem("gc") as system:
            ref = system.spawn(Holder, name="h")
            return weakref.ref(await ref.ask("who", timeout=5)), weakref.ref(system)

    actor, system = await use_a_system()
    await asyncio.sleep(0)  # the loop lets go of the handle that woke this task with the actor
    gc.collect()
    assert actor() is None
    assert system() is None


async def test_a_ref_whose_cell_is_not_a_cell_fails_cleanly() -> None:
    ref = core.LocalActorRef.__new__(core.LocalActorRef)
    ref._cell = object()  # type: ignore[assignment]
    with pytest.raises((TypeError, AttributeError)):
        ref.tell("x")
    assert isinstance(ref, ActorRef)


def test_the_pure_python_core_passes_the_runtime_suites() -> None:
    if not core.ACCELERATED:
        pytest.skip("the pure-Python core is the one in use: the suites above ran against it")
    assert_pure_twin_passes(
        "MAILSLOT_PURE_RUNTIME",
        "mailslot.runtime.core:ACCELERATED",
        ["tests/runtime", "tests/test_testing.py"],
    )
