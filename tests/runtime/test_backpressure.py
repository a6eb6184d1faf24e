"""Bounded mailboxes, SlowDown/Resume, outboxes, overflow, coalescing and dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from mailslot.errors import MailboxFull
from mailslot.runtime import (
    Actor,
    ActorRef,
    Coalescing,
    DeadLetter,
    DeadLetterReason,
    Envelope,
    droppable,
)
from mailslot.testing import TestKit


@droppable
@dataclass(frozen=True)
class Cursor:
    user: str
    pos: int


@dataclass(frozen=True)
class Edit:
    n: int


class Gate(Actor):
    """Handles nothing until opened (a consumer that is momentarily slow)."""

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    async def receive(self, message: Any) -> None:
        if message == "hold":
            await self.context.system.clock.sleep(10)
            return
        self.seen.append(message)


class Producer(Actor):
    """Sends ``n`` edits to ``target`` in bursts, pausing while told to slow down."""

    def __init__(self, target: ActorRef, n: int, signals: list[Any]) -> None:
        self.target = target
        self.n = n
        self.next = 0
        self.paused = False
        self.signals = signals

    def receive(self, message: Any) -> None:
        if message == "go" and not self.paused:
            burst = min(50, self.n - self.next)
            for _ in range(burst):
                self.target.tell(Edit(self.next))
                self.next += 1
            if self.next < self.n:
                self.context.self.tell("go")

    def slowed_down(self, target: ActorRef) -> None:
        self.paused = True
        self.signals.append(("slow", self.next))

    def resumed(self, target: ActorRef) -> None:
        self.paused = False
        self.signals.append(("resume", self.next))
        self.context.self.tell("go")


async def test_fast_producer_is_slowed_down_and_resumed_without_losing_anything() -> None:
    seen: list[Any] = []
    signals: list[Any] = []
    async with TestKit(mailbox_capacity=100, outbox_capacity=1000) as kit:
        consumer = kit.system.spawn(lambda: Gate(seen), name="consumer")
        consumer.tell("hold")  # the consumer is busy for 10 virtual seconds
        producer = kit.system.spawn(lambda: Producer(consumer, 1000, signals), name="producer")
        producer.tell("go")
        await kit.settle()
        stats = {s.path: s for s in kit.system.actor_statistics()}
        c = stats["/user/consumer"]
        assert c.mailbox_depth <= c.mailbox_capacity == 100
        assert c.throttled_senders == 1
        assert signals
        assert signals[0][0] == "slow"
        await kit.advance(10)
        await kit.settle()
    assert [e.n for e in seen] == list(range(1000))
    assert "resume" in {kind for kind, _ in signals}
    assert kit.system.dead_letters.total == 0


async def test_full_mailbox_drops_droppable_and_raises_for_critical() -> None:
    seen: list[Any] = []
    letters: list[DeadLetter] = []
    async with TestKit(mailbox_capacity=3) as kit:
        kit.system.dead_letters.subscribe(letters.append)
        ref = kit.system.spawn(lambda: Gate(seen))
        ref.tell("hold")
        await kit.settle()
        for i in range(3):
            ref.tell(Edit(i))
        ref.tell(Cursor("ann", 1))  # droppable: a dead letter, no exception
        with pytest.raises(MailboxFull, match=r"mailbox of /user/\$\d+ is full \(3 messages\)"):
            ref.tell(Edit(3))
        await kit.advance(10)
    assert [letter.reason for letter in letters] == [DeadLetterReason.OVERFLOW]
    assert letters[0].message == Cursor("ann", 1)
    assert kit.system.dead_letters.counts == {"overflow": 1}


async def test_outbox_of_a_slowed_sender_is_bounded() -> None:
    raised: list[str] = []

    class Blaster(Actor):
        def __init__(self, target: ActorRef) -> None:
            self.target = target

        def receive(self, message: Any) -> None:
            try:
                for i in range(100):
                    self.target.tell(Edit(i))
                for i in range(5):
                    self.target.tell(Cursor("x", i))
            except MailboxFull as exc:
                raised.append(str(exc))

    async with TestKit(mailbox_capacity=10, outbox_capacity=20) as kit:
        target = kit.system.spawn(lambda: Gate([]), name="t")
        target.tell("hold")
        await kit.settle()
        kit.system.spawn(lambda: Blaster(target)).tell("go")
        await kit.settle()
        stats = {s.path: s for s in kit.system.actor_statistics()}["/user/t"]
        assert stats.mailbox_depth <= 10
        assert stats.outbox_depth == 20
    assert raised
    assert "outbox of /user/t is full (20 messages)" in raised[0]


def _user(m: Any) -> str | None:
    return m.user if isinstance(m, Cursor) else None


async def _through_a_held_mailbox(
    mailbox: Coalescing, *messages: Any
) -> tuple[list[Any], list[DeadLetter]]:
    """What an actor with ``mailbox`` handles of ``messages`` all queued while it is busy, and
    the dead letters."""
    seen: list[Any] = []
    letters: list[DeadLetter] = []

    class Presence(Gate):
        pass

    Presence.mailbox = mailbox
    async with TestKit() as kit:
        kit.system.dead_letters.subscribe(letters.append)
        ref = kit.system.spawn(lambda: Presence(seen))
        ref.tell("hold")
        await kit.settle()
        for m in messages:
            ref.tell(m)
        await kit.advance(10)
    return seen, letters


async def test_coalescing_mailbox_keeps_the_latest_per_key_in_the_older_place() -> None:
    seen, letters = await _through_a_held_mailbox(
        Coalescing(key=_user),
        *(Cursor("ann", 1), Cursor("bob", 1), Edit(0), Cursor("ann", 2), Cursor("ann", 3)),
    )
    assert seen == [Cursor("ann", 3), Cursor("bob", 1), Edit(0)]
    assert [letter.message for letter in letters] == [Cursor("ann", 1), Cursor("ann", 2)]
    assert {letter.reason for letter in letters} == {DeadLetterReason.COALESCED}


async def test_a_coalescing_mailbox_with_merge_drops_nothing() -> None:
    def merge(older: Cursor, newer: Cursor) -> Cursor:
        return Cursor(newer.user, older.pos * 10 + newer.pos)  # what both carried

    seen, letters = await _through_a_held_mailbox(
        Coalescing(key=_user, merge=merge),
        *(Cursor("ann", 1), Edit(0), Cursor("ann", 2), Cursor("ann", 3)),
    )
    assert seen == [Cursor("ann", 123), Edit(0)]  # in the older one's place
    assert letters == []


async def test_expired_messages_become_dead_letters() -> None:
    seen: list[Any] = []
    async with TestKit() as kit:
        ref = kit.system.spawn(lambda: Gate(seen))
        ref.tell("hold")
        await kit.settle()
        now = kit.clock.now()
        ref.deliver(Edit(1), Envelope(1, now, None, expires_at=now + 5))
        ref.deliver(Edit(2), Envelope(2, now, None, expires_at=now + 50))
        await kit.advance(10)
    assert seen == [Edit(2)]
    assert kit.system.dead_letters.counts["expired"] == 1


async def test_dead_letters_can_be_subscribed_by_an_actor_and_unsubscribed() -> None:
    async with TestKit() as kit:
        probe = kit.probe()
        unsubscribe = kit.system.dead_letters.subscribe(probe.ref)
        gone = kit.system.spawn(lambda: Gate([]))
        await kit.system.stop(gone)
        gone.tell("x")
        letter = await probe.expect(DeadLetter)
        assert (letter.message, letter.recipient, letter.reason) == ("x", gone, "stopped")
        unsubscribe()
        gone.tell("y")
        await probe.expect_no_message(within=1)
        assert kit.system.dead_letters.counts["stopped"] == 2


async def test_unhandled_and_reply_without_sender_are_dead_letters() -> None:
    class Picky(Actor):
        def receive(self, message: Any) -> None:
            if message == "reply":
                self.context.reply("nobody")
            else:
                self.context.unhandled(message)

    async with TestKit() as kit:
        ref = kit.system.spawn(Picky)
        ref.tell("what")
        ref.tell("reply")
        await kit.settle()
        assert kit.system.dead_letters.counts == {"unhandled": 1, "no_recipient": 1}


async def test_deliver_from_never_raises_and_keeps_the_sender() -> None:
    """What transports use: no envelope, just the sender; a full or stopped target is a dead
    letter, never an exception in the transport's face."""

    class Replier(Actor):
        def receive(self, message: Any) -> None:
            self.context.reply(("got", message))

    async with TestKit() as kit:
        asker = kit.probe()
        ref = kit.system.spawn(Replier)
        ref.deliver_from(Edit(1), asker.ref)
        assert await asker.expect(tuple) == ("got", Edit(1))

        held = kit.system.spawn(lambda: Gate([]), mailbox_capacity=2)
        held.tell("hold")
        await kit.settle()
        for n in range(4):
            held.deliver_from(Edit(n), asker.ref)  # Edit is critical: tell would raise
        assert kit.system.dead_letters.counts["overflow"] == 2
        await kit.system.stop(ref)
        ref.deliver_from(Edit(9), asker.ref)
        assert kit.system.dead_letters.counts["stopped"] == 1
