"""Presence actors on the virtual clock: probes stand in for sessions, the hub and the documents."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.collab.recording_peers import RecordingPeers

from mailslot.collab.document import op_frame
from mailslot.collab.hub import HubSubscribe, HubUnsubscribe
from mailslot.collab.peers import Peers
from mailslot.collab.presence import (
    PresenceConfig,
    PresenceControl,
    PresenceIn,
    PresenceManager,
    PresenceRelay,
    presence_message,
    transform_presence,
)
from mailslot.collab.protocol.docs import DocOps, OpBroadcast, Push, SubscribeDoc
from mailslot.collab.protocol.messages import (
    Ping,
    PresenceRequest,
    PresenceSubscribe,
    PresenceUnsubscribe,
    PresenceUpdate,
)
from mailslot.collab.protocol.session import PresenceCommand, Session
from mailslot.errors import OTError
from mailslot.meters import Meters
from mailslot.store import OpRecord
from mailslot.testing import Probe, TestKit

CH = "docs.d1"
TEXT = "http://sharejs.org/types/text-unicode"


def record(v: int, op: Any, src: str = "other", kind: str = "op") -> OpRecord:
    return OpRecord(
        collection="docs", doc="d1", version=v, src=src, seq=v, op=op, timestamp=0, kind=kind
    )  # type: ignore[arg-type]


class Env:
    def __init__(self, kit: TestKit, peers: Peers | None = None) -> None:
        self.kit = kit
        self.hub = kit.probe("hub")
        self.docs = kit.probe("docs")
        self.meters = Meters()
        self.config = PresenceConfig(heartbeat_timeout=30.0, meters=self.meters)
        self.manager = kit.system.spawn(
            lambda: PresenceManager(
                hub=self.hub.ref, documents=self.docs.ref, config=self.config, peers=peers
            ),
            name="presence",
        )

    def session(self, name: str) -> Probe:
        return self.kit.probe(name)

    def subscribe(self, who: Probe, seq: int = 1) -> None:
        who.tell(self.manager, PresenceControl(PresenceSubscribe(ch=CH, seq=seq), who.ref.name))

    def update(self, who: Probe, pid: str, p: Any, *, v: int | None = None, pv: int = 0) -> None:
        extra: dict[str, Any] = {}
        if v is not None:
            extra = {"c": "docs", "d": "d1", "v": v, "t": TEXT}
        request = PresenceUpdate(ch=CH, id=pid, p=p, pv=pv, **extra)
        who.tell(self.manager, PresenceIn(request, who.ref.name))


async def frame(who: Probe, *, within: float = 1.0) -> dict[str, Any]:
    push = await who.expect(Push, within=within)
    decoded: dict[str, Any] = json.loads(push.frame)
    return decoded


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with TestKit(seed=1) as kit:
        yield Env(kit)


def test_transform_presence_moves_ranges_and_clears_on_create_or_delete() -> None:
    p = {"a": "p", "p": {"index": 2, "length": 3, "name": "ann"}, "v": 4, "src": "A"}
    moved = transform_presence(p, [("B", ["xy"]), ("B", [1, {"d": 1}])], src="A")
    assert moved["p"] == {"index": 3, "length": 3, "name": "ann"}
    assert moved["v"] == 6
    # an insert at the cursor: others' inserts go after it, the owner's own insert before it
    cursor = {"p": {"index": 2, "length": 0}, "v": 0}
    assert transform_presence(cursor, [("B", [2, "zz"])], src="A")["p"]["index"] == 2
    assert transform_presence(cursor, [("A", [2, "zz"])], src="A")["p"]["index"] == 4
    assert transform_presence(cursor, [("B", None)], src="A")["p"] is None
    with pytest.raises(OTError):
        transform_presence({"p": {"index": -1}, "v": 0}, [("B", ["x"])], src="A")


def test_presence_messages_split_droppable_from_critical() -> None:
    sub = presence_message(PresenceCommand(PresenceSubscribe(ch=CH, seq=1), "s1"))
    upd = presence_message(PresenceCommand(PresenceUpdate(ch=CH, id="x"), "s1"))
    assert isinstance(sub, PresenceControl)
    assert isinstance(upd, PresenceIn)
    from mailslot.runtime import is_droppable

    assert is_droppable(upd)
    assert not is_droppable(sub)


def test_a_session_reports_pings_only_once_it_has_presence() -> None:
    session = Session(src="s1")
    assert [type(e).__name__ for e in session.receive('{"a":"pp"}')] == ["Send"]
    session.receive('{"a":"ps","ch":"docs.d1","seq":1}')
    effects = session.receive('{"a":"pp"}')
    assert [type(e).__name__ for e in effects] == ["Send", "PresenceCommand"]
    assert isinstance(effects[1], PresenceCommand)
    assert isinstance(effects[1].request, Ping)


async def test_subscribe_request_and_broadcast_including_the_sender(env: Env) -> None:
    ann, bob = env.session("ann"), env.session("bob")
    env.subscribe(ann, seq=1)
    assert await frame(ann) == {"a": "ps", "ch": CH, "seq": 1}
    env.subscribe(bob, seq=7)
    assert await frame(bob) == {"a": "ps", "ch": CH, "seq": 7}
    assert await frame(ann) == {"a": "pr", "ch": CH}  # please re-send, for the newcomer
    await bob.expect_no_message(within=1)

    env.update(ann, "ann-1", {"index": 1, "length": 0}, pv=3)
    for who in (ann, bob):  # the sender's copy is its ack
        got = await frame(who)
        assert (got["a"], got["id"], got["src"], got["p"], got["pv"]) == (
            "p",
            "ann-1",
            "ann",
            {"index": 1, "length": 0},
            3,
        )
    bob.tell(env.manager, PresenceIn(PresenceRequest(ch=CH), "bob"))
    assert await frame(ann) == {"a": "pr", "ch": CH}
    await bob.expect_no_message(within=1)
    assert env.meters.presence_updates.value == 1


async def test_updates_coalesce_under_load(env: Env) -> None:
    ann, bob = env.session("ann"), env.session("bob")
    env.subscribe(ann)
    env.subscribe(bob)
    await env.kit.settle()
    ann._inbox.clear()
    bob._inbox.clear()
    for i in range(50):  # all queued before the actors run: only the latest of each id is kept
        env.update(ann, "ann-1", {"index": i, "length": 0}, pv=i)
    env.update(ann, "ann-2", {"index": 99, "length": 0}, pv=0)
    await env.kit.settle()
    got = [json.loads(m.frame) for m in bob.pending]
    assert [(g["id"], g["p"]["index"]) for g in got] == [("ann-1", 49), ("ann-2", 99)]
    # but the sender waits for the ack of every update it sent (a ShareDB client, by pv)
    acks = [json.loads(m.frame) for m in ann.pending]
    assert sorted(a["pv"] for a in acks if a["id"] == "ann-1") == list(range(50))
    assert [a["pv"] for a in acks if a["id"] == "ann-2"] == [0]
    assert all(a["p"] == {"index": 49, "length": 0} for a in acks if a["id"] == "ann-1")
    assert env.kit.system.dead_letters.counts.get("coalesced", 0) == 0


async def test_old_versions_move_forward_past_the_ops_since(env: Env) -> None:
    ann, bob = env.session("ann"), env.session("bob")
    env.subscribe(ann)
    env.subscribe(bob)
    await env.kit.settle()
    ann._inbox.clear()
    bob._inbox.clear()

    # the channel does not know the document yet: it follows it and reads the ops since v=1
    env.update(ann, "a", {"index": 2, "length": 1}, v=1)
    assert await env.hub.expect(HubSubscribe) == HubSubscribe("docs", "d1")
    read = await env.docs.expect(SubscribeDoc)
    assert (read.v, read.subscribe) == (1, False)
    frames = (
        op_frame("docs", "d1", record(1, ["ab"])),
        op_frame("docs", "d1", record(2, [9, "!"])),
    )
    env.docs.reply(DocOps(tag=read.tag, frames=frames))
    got = await frame(bob)
    assert (got["v"], got["p"]) == (3, {"index": 4, "length": 1})
    assert (await frame(ann))["v"] == 3

    # now it follows the hub: an update at the latest version goes as it is...
    env.update(ann, "a", {"index": 0, "length": 0}, v=3, pv=1)
    assert (await frame(bob))["p"] == {"index": 0, "length": 0}
    # ...and after another op, one at v=2 is moved with the ops it holds (no read)
    broadcast = OpBroadcast(
        c="docs", d="d1", v=3, src="ann", frame=op_frame("docs", "d1", record(3, ["xyz"], "ann"))
    )
    env.hub.reply(broadcast)  # to the channel actor, which subscribed to the hub
    await env.kit.settle()
    ann._inbox.clear()
    env.update(ann, "a", {"index": 0, "length": 0}, v=2, pv=2)
    got = await frame(bob)
    # op v2 is another's insert after the cursor, op v3 ann's own insert at it: moves past it
    assert (got["v"], got["p"]) == (4, {"index": 3, "length": 0})
    await env.docs.expect_no_message(within=1)
    assert env.meters.presence_transformed.value == 2

    # ann's socket closes: her presence leaves at the document's latest version (a client at
    # that version would otherwise wait for ops to catch the stale leave up, as ShareDB's does)
    await env.kit.system.stop(ann.ref)
    gone = await frame(bob)
    assert (gone["id"], gone["p"], gone["v"]) == ("a", None, 4)


async def test_leaving_on_unsubscribe_close_and_missed_heartbeats(env: Env) -> None:
    ann, bob, cat = env.session("ann"), env.session("bob"), env.session("cat")
    for who in (ann, bob, cat):
        env.subscribe(who)
    env.update(ann, "a", {"index": 1, "length": 0}, pv=1)
    env.update(bob, "b", {"index": 2, "length": 0}, pv=1)
    env.update(cat, "c", {"index": 3, "length": 0}, pv=1)
    await env.kit.settle()
    for who in (ann, bob, cat):
        who._inbox.clear()

    # unsubscribe: its reply, and the others see its presence leave
    ann.tell(env.manager, PresenceControl(PresenceUnsubscribe(ch=CH, seq=2), "ann"))
    assert await frame(ann) == {"a": "pu", "ch": CH, "seq": 2}
    gone = await frame(bob)
    assert (gone["id"], gone["p"], gone["src"]) == ("a", None, "ann")
    assert (await frame(cat))["p"] is None

    # a socket that closes: the session actor stops
    await env.kit.system.stop(bob.ref)
    gone = await frame(cat)
    assert (gone["id"], gone["p"]) == ("b", None)

    # heartbeats: cat pings once, then goes quiet; its presence leaves after the timeout
    dog = env.session("dog")
    env.subscribe(dog)
    await env.kit.settle()
    dog._inbox.clear()
    cat._inbox.clear()
    cat.tell(env.manager, PresenceIn(Ping(), "cat"))
    await env.kit.advance(20)
    await dog.expect_no_message(within=5)
    got = await frame(dog, within=10)  # within the timeout plus one check interval
    assert (got["id"], got["p"]) == ("c", None)
    assert env.meters.presence_expired.value == 1
    # dog never pinged: its presence does not expire however long it is quiet
    env.update(dog, "d", {"index": 0, "length": 0})
    await env.kit.settle()
    cat._inbox.clear()
    await env.kit.advance(300)
    assert not [m for m in cat.pending if json.loads(m.frame).get("p", 1) is None]


async def test_a_channel_stops_when_its_last_subscriber_leaves(env: Env) -> None:
    ann = env.session("ann")
    env.subscribe(ann)
    env.update(ann, "a", {"index": 0, "length": 0}, v=0)
    await env.kit.settle()
    assert env.kit.system.statistics().by_type["PresenceActor"].actors == 1
    ann.tell(env.manager, PresenceControl(PresenceUnsubscribe(ch=CH, seq=2), "ann"))
    await env.hub.expect(HubSubscribe)
    assert await env.hub.expect(HubUnsubscribe) == HubUnsubscribe("docs", "d1")
    stats = env.kit.system.statistics().by_type.get("PresenceActor")
    assert stats is None or stats.actors == 0
    # the next subscriber gets a fresh channel
    env.subscribe(ann, seq=3)
    pushes = []
    while True:
        got = await frame(ann)
        pushes.append(got)
        if got == {"a": "ps", "ch": CH, "seq": 3}:
            break
    assert env.kit.system.statistics().by_type["PresenceActor"].actors == 1


# ------------------------------------------------------------------ on a cluster: other nodes


@pytest.fixture
async def clustered() -> AsyncIterator[tuple[Env, RecordingPeers]]:
    async with TestKit(seed=1) as kit:
        peers = RecordingPeers(kit)
        env = Env(kit, peers=peers.peers)
        yield env, peers


async def test_local_presence_goes_to_the_other_nodes(
    clustered: tuple[Env, RecordingPeers],
) -> None:
    env, peers = clustered
    ann = env.session("ann")
    env.subscribe(ann)
    assert await frame(ann) == {"a": "ps", "ch": CH, "seq": 1}
    assert peers.bound == [(CH, True)]  # bound before anything of this channel is relayed
    relay = await peers.probe.expect(PresenceRelay)  # the newcomer asks everyone to re-send
    assert (relay.ch, json.loads(relay.frame), relay.origin) == (CH, {"a": "pr", "ch": CH}, "n1")

    env.update(ann, "ann-1", {"index": 2, "length": 0})
    mine = await frame(ann)
    relay = await peers.probe.expect(PresenceRelay)
    assert json.loads(relay.frame) == mine
    assert mine["src"] == "ann"

    ann.tell(env.manager, PresenceControl(PresenceUnsubscribe(ch=CH, seq=2), "ann"))
    relay = await peers.probe.expect(PresenceRelay)  # ann's presence leaves everywhere
    assert json.loads(relay.frame)["p"] is None
    await env.kit.settle()
    assert peers.bound == [(CH, True), (CH, False)]


async def test_presence_from_other_nodes_reaches_local_subscribers_once(
    clustered: tuple[Env, RecordingPeers],
) -> None:
    env, peers = clustered
    ann, bob = env.session("ann"), env.session("bob")
    env.subscribe(ann)
    await frame(ann)
    await peers.probe.expect(PresenceRelay)
    env.subscribe(bob)
    await frame(bob)
    await frame(ann)  # the pr for bob
    await peers.probe.expect(PresenceRelay)

    remote = json.dumps({"a": "p", "ch": CH, "id": "cy-1", "src": "cy", "p": None, "v": None})
    env.kit.system.lookup("/user/presence").tell(PresenceRelay(CH, remote, "n2"))  # type: ignore[union-attr]
    assert json.loads((await ann.expect(Push)).frame)["id"] == "cy-1"
    assert json.loads((await bob.expect(Push)).frame)["id"] == "cy-1"
    await peers.probe.expect_no_message(within=1)  # not sent back out

    # this node's own relays come back from the broker: skipped
    env.kit.system.lookup("/user/presence").tell(PresenceRelay(CH, remote, "n1"))  # type: ignore[union-attr]
    await ann.expect_no_message(within=1)
    # a channel nobody here subscribes to starts nothing
    env.kit.system.lookup("/user/presence").tell(PresenceRelay("docs.other", remote, "n2"))  # type: ignore[union-attr]
    await env.kit.settle()
    assert env.kit.system.statistics().by_type["PresenceActor"].actors == 1
