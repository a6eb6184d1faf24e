"""The runtime's behaviours across nodes, over both transports (in-process broker and RabbitMQ)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mailslot.errors import ActorStopped, AskTimeout, CodecError, MailboxFull
from mailslot.meters import Meters
from mailslot.runtime import Actor, ActorRef, DeadLetter, DeadLetterReason
from mailslot.wire import Envelope, encode_batch

from .conftest import Cluster, Echo, Item, Poison, Reply, Silent, eventually, eventually_async

pytestmark = pytest.mark.integration


class Collector(Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)
        if isinstance(message, Echo):
            self.context.reply(Reply(message.n, "collector"))


async def test_tell_to_a_remote_actor_keeps_order(cluster: Cluster) -> None:
    a = await cluster.add("a")
    b = await cluster.add("b")
    got: list[Any] = []
    target = b.system.spawn(lambda: Collector(got), name="collector")
    remote = a.ref("b", target.path)
    for n in range(1000):
        remote.tell(Item("k", n))
    await eventually(lambda: len(got) == 1000, what="1000 messages")
    assert [m.n for m in got] == list(range(1000))


async def test_entity_messages_reach_one_handler_in_order(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await cluster.add("b")
    await cluster.formed()
    docs = a.entity_ref("test")
    for n in range(300):
        for key in ("x", "y", "z"):
            docs.tell(Item(key, n))
    seen = cluster.recorder.seen
    await eventually(lambda: all(len(seen.get(k, [])) >= 300 for k in "xyz"), what="all items")
    for key in "xyz":
        # one node at a time: a shard may move once, when its first messages show the node
        # that took it while the other joined that it is not the shard's primary (a handover)
        order = [node for node, _ in seen[key]]
        runs = [node for i, node in enumerate(order) if i == 0 or node != order[i - 1]]
        assert len(runs) <= 2, f"{key} went back and forth between nodes: {runs}"
        assert [n for _, n in seen[key]] == list(range(300))


async def test_ask_across_nodes_and_its_timeout(cluster: Cluster) -> None:
    a = await cluster.add("a")
    b = await cluster.add("b")
    await cluster.formed()
    replies = [await a.entity_ref("test").ask(Echo(f"k{i}", i), timeout=5) for i in range(20)]
    assert [r.n for r in replies] == list(range(20))

    async def answering() -> set[str]:
        replies = [await a.entity_ref("test").ask(Echo(f"k{i}", i), timeout=5) for i in range(20)]
        return {r.node for r in replies}

    # 20 keys over 8 shards reach both nodes, once the first node (the active consumer of every
    # shard until the second joined) has handed the second its primary shards
    await eventually_async(answering, {"a", "b"}, what="asks answered by both nodes")
    collector = b.system.spawn(lambda: Collector([]), name="echoer")
    assert (await a.ref("b", collector.path).ask(Echo("e", 7), timeout=5)).n == 7
    with pytest.raises(AskTimeout):
        await a.entity_ref("test").ask(Silent("quiet"), timeout=0.3)


async def test_a_message_to_a_stopped_remote_actor_is_a_dead_letter(cluster: Cluster) -> None:
    a = await cluster.add("a")
    b = await cluster.add("b")
    letters: list[DeadLetter] = []
    b.system.dead_letters.subscribe(letters.append)
    gone = b.system.spawn(lambda: Collector([]), name="gone")
    await b.system.stop(gone)
    remote = a.ref("b", gone.path)
    with pytest.raises(ActorStopped):
        await remote.ask(Echo("e", 1), timeout=5)
    remote.tell(Item("k", 2))
    await eventually(lambda: len(letters) == 2, what="two dead letters")
    assert {letter.reason for letter in letters} == {DeadLetterReason.STOPPED}
    assert letters[1].message == Item("k", 2)


async def test_a_full_outbox_raises_for_tell_and_send_waits_for_room(cluster: Cluster) -> None:
    a = await cluster.add("a", max_buffered=10)
    b = await cluster.add("b")
    got: list[Any] = []
    target = b.system.spawn(lambda: Collector(got), name="collector")
    remote = a.ref("b", target.path)
    sent = 0
    refused = None
    for _ in range(11):  # nothing is confirmed before the loop turns
        try:
            remote.tell(Item("k", sent))
        except MailboxFull as exc:
            refused = exc
            break
        sent += 1
    assert isinstance(refused, MailboxFull)
    assert 0 < sent <= 10
    await remote.send(Item("k", sent))
    await eventually(lambda: len(got) == sent + 1, what="every message")
    assert [m.n for m in got] == list(range(sent + 1))


async def test_senders_are_slowed_down_and_resumed(cluster: Cluster) -> None:
    a = await cluster.add("a", max_buffered=100)
    b = await cluster.add("b")
    got: list[Any] = []
    target = b.system.spawn(lambda: Collector(got), name="collector")
    remote = a.ref("b", target.path)
    signals: list[str] = []

    class Producer(Actor):
        def receive(self, message: Any) -> None:
            for n in range(90):
                remote.tell(Item("k", n))

        def slowed_down(self, target: ActorRef) -> None:
            signals.append("slow")

        def resumed(self, target: ActorRef) -> None:
            signals.append("resume")

    producer = a.system.spawn(Producer, name="producer")
    producer.tell("go")
    await eventually(lambda: len(got) == 90 and signals == ["slow", "resume"], what="signals")


async def test_unreadable_frames_and_poison_messages_go_to_the_dead_letter_queue(
    cluster: Cluster,
) -> None:
    a = await cluster.add("a", settle_timeout=0.2)
    await cluster.formed()
    # a frame that is not a batch: dead-lettered at once
    await a.transport.publish_shard(0, b"not a frame")
    # a message whose handler fails every time: requeued after the settle timeout until the
    # delivery limit (2), then dead-lettered by the broker
    docs = a.entity_ref("test")
    docs.tell(Poison("p"))
    await eventually(
        lambda: a.statistics().requeued >= 3, what="the poison message to be requeued", timeout=15
    )

    depths: dict[str, int] = {}

    async def dead_letters() -> int:
        depths.update(await a.transport.queue_depths())
        return depths[cluster.names.dead]

    await eventually_async(lambda: dead_letters(), 2, what="two dead letters")
    # the shard goes on
    reply = await docs.ask(Echo("p", 5), timeout=5)
    assert reply.n == 5


async def test_a_message_the_catalog_does_not_know_is_refused_at_the_sender(
    cluster: Cluster,
) -> None:
    a = await cluster.add("a")
    with pytest.raises(CodecError, match="register it"):
        a.ref("a", "/user/x").tell(object())
    bad = Envelope(b"i" * 16, 0, "test/k", "nope", 1, b"")
    await a.transport.publish_node("a", encode_batch([bad]))
    await eventually(lambda: a.statistics().dead_lettered == 1, what="a dead letter")


async def test_a_joining_node_takes_its_shards_without_breaking_order(cluster: Cluster) -> None:
    a = await cluster.add("a")
    await cluster.formed()
    docs = a.entity_ref("test")
    keys = [f"k{i}" for i in range(16)]
    stop = asyncio.Event()

    async def produce() -> int:
        n = 0
        while not stop.is_set():
            for key in keys:
                await docs.send(Item(key, n))  # paced by the cluster's flow control
            n += 1
            await asyncio.sleep(0)
        return n

    producer = asyncio.create_task(produce())
    b = await cluster.add("b")
    await cluster.formed()
    seen = cluster.recorder.seen
    await eventually(lambda: len(b.active_shards()) > 0, what="b to take shards over")
    await eventually(
        lambda: any(node == "b" for k in keys for node, _ in seen.get(k, [])), what="b handling"
    )
    await b.stop()  # and leaving hands them back
    await eventually(lambda: len(a.owned_shards()) == cluster.settings.shards, what="a again")
    stop.set()
    sent = await producer
    await eventually(
        lambda: all({n for _, n in seen.get(k, [])} == set(range(sent)) for k in keys),
        what="every item",
    )
    for key in keys:
        first_seen: list[int] = []
        for _, n in seen[key]:
            if n not in first_seen:
                first_seen.append(n)
        assert first_seen == list(range(sent)), f"{key} out of order"


async def test_the_cluster_reports_to_its_meters(cluster: Cluster) -> None:
    """Publishes and confirms, consumption and batch sizes, shards owned, consumer lag."""
    sending, consuming = Meters(), Meters()
    a = await cluster.add("a", meters=sending, hosts_shards=False)
    await cluster.add("b", meters=consuming, lag_interval=0.1)
    await cluster.formed([n for n in cluster.nodes if n.node_id == "b"])
    docs = a.entity_ref("test")
    for n in range(200):
        docs.tell(Item(f"k{n % 7}", n))
    seen = cluster.recorder.seen
    await eventually(lambda: sum(len(v) for v in seen.values()) == 200, what="every item")
    await eventually(
        lambda: sending.cluster_published.value >= 200, what="the publishes to be confirmed"
    )
    assert sending.cluster_confirms.labels("ack").value >= 1
    assert sending.cluster_batch_size.labels("publish").count >= 1
    assert consuming.cluster_consumed.value >= 200
    frames = consuming.cluster_batch_size.labels("consume")
    assert frames.count >= 1
    assert frames.sum >= 200  # envelopes per frame, summed: every item rode in some frame
    assert consuming.cluster_shards_owned.value == cluster.settings.shards
    assert sending.cluster_shards_owned.value == 0
    names = {cluster.names.shard(n) for n in range(cluster.settings.shards)}
    await eventually(
        lambda: {k[0] for k, _ in consuming.cluster_consumer_lag.series()} == names,
        what="a lag reading for every consumed queue",
    )
