"""The hub: fan-out of committed ops to a node's sessions, and acks delivered in order."""

from __future__ import annotations

from mailslot.collab.document import Publish
from mailslot.collab.hub import Hub, HubSubscribe, HubUnsubscribe
from mailslot.collab.protocol.docs import OpAcked, OpBroadcast
from mailslot.testing import Probe, TestKit


def publish(v: int, author: Probe | None = None, *, missed: tuple[str, ...] = ()) -> Publish:
    ack = OpAcked(tag=v, v=v, src="s", seq=v) if author is not None else None
    return Publish(
        c="docs",
        d="d1",
        v=v,
        src="s",
        frame=f"op{v}",
        author=author.ref.path if author is not None else None,
        ack_to=author.ref if author is not None else None,
        ack=ack,
        missed=missed,
    )


async def test_broadcast_to_subscribers_but_the_author_then_the_ack_in_order() -> None:
    async with TestKit() as kit:
        hub = kit.system.spawn(Hub, name="hub")
        ann, bob = kit.probe("ann"), kit.probe("bob")
        for who in (ann, bob):
            who.tell(hub, HubSubscribe("docs", "d1"))
        await kit.settle()
        hub.tell(publish(1))  # bob's op, say: ann gets it as a broadcast...
        hub.tell(publish(2, ann, missed=("op1",)))  # ...so her ack needs no copy of it
        first = await ann.expect(OpBroadcast)
        assert first.frame == "op1"
        ack = await ann.expect(OpAcked)
        assert (ack.v, ack.frames) == (2, ())
        assert [(await bob.expect(OpBroadcast)).frame for _ in range(2)] == ["op1", "op2"]
        await ann.expect_no_message(within=1)


async def test_an_author_who_is_not_subscribed_gets_the_ops_it_missed_with_its_ack() -> None:
    async with TestKit() as kit:
        hub = kit.system.spawn(Hub, name="hub")
        ann, bob = kit.probe("ann"), kit.probe("bob")
        bob.tell(hub, HubSubscribe("docs", "d1"))
        ann.tell(hub, HubSubscribe("docs", "d1"))
        ann.tell(hub, HubUnsubscribe("docs", "d1"))
        await kit.settle()
        hub.tell(publish(3, ann, missed=("op1", "op2")))
        ack = await ann.expect(OpAcked)
        assert ack.frames == ("op1", "op2")
        assert (await bob.expect(OpBroadcast)).frame == "op3"


async def test_a_stopped_session_is_forgotten() -> None:
    async with TestKit() as kit:
        hub = kit.system.spawn(Hub, name="hub")
        ann, bob = kit.probe("ann"), kit.probe("bob")
        for who in (ann, bob):
            who.tell(hub, HubSubscribe("docs", "d1"))
        await kit.settle()
        await kit.system.stop(bob.ref)
        hub.tell(publish(1))
        assert (await ann.expect(OpBroadcast)).frame == "op1"
        await kit.settle()
        assert kit.system.dead_letters.counts.get("stopped", 0) == 0
