"""A small cluster of nodes inside the test process, over either transport.

``cluster`` is parametrised: ``memory`` (the in-process broker) and ``amqp`` (the real RabbitMQ at
127.0.0.1:5672, with a unique name prefix per test, deleted at the end). Waits for conditions are
bounded by ``MAILSLOT_TEST_TIMEOUT_SCALE`` times a few seconds and look again after each change in
the cluster (:data:`CHANGES`); nothing sleeps, nothing waits for a fixed time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import msgspec
import pytest

from mailslot.cluster.node import ClusterConfig, ClusterNode, EntityKind
from mailslot.cluster.transport import (
    DeliveryCallback,
    MemoryBroker,
    MemoryTransport,
    Names,
    QueueSettings,
    ShardSubscription,
    Transport,
)
from mailslot.meters import Meters
from mailslot.runtime import Actor, ActorRef, ActorSystem, DeadLetter, Instrumentation
from mailslot.wire import MessageRegistry
from tests.changes import Changes
from tests.conftest import require_service

SCALE = float(os.environ.get("MAILSLOT_TEST_TIMEOUT_SCALE", "1"))
AMQP_URL = os.environ.get("MAILSLOT_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
T = TypeVar("T")


class Item(msgspec.Struct, frozen=True, tag="test.item"):
    key: str
    n: int


class Echo(msgspec.Struct, frozen=True, tag="test.echo"):
    key: str
    n: int


class Reply(msgspec.Struct, frozen=True, tag="test.reply"):
    n: int
    node: str


class Silent(msgspec.Struct, frozen=True, tag="test.silent"):
    key: str


class Poison(msgspec.Struct, frozen=True, tag="test.poison"):
    key: str


REGISTRY = MessageRegistry("test")
for _cls in (Item, Echo, Reply, Silent, Poison):
    REGISTRY.register(_cls)


class Recorder:
    """What every node's entity handlers saw, by node and key."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[str, int]]] = {}
        self.waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    def add(self, key: str, node: str, n: int) -> None:
        self.seen.setdefault(key, []).append((node, n))
        for check, fut in list(self.waiters):
            if not fut.done() and check():
                fut.set_result(None)


def test_kind(node_id: str, recorder: Recorder) -> EntityKind:
    class Handler(Actor):
        def receive(self, message: Any) -> None:
            if isinstance(message, Item):
                recorder.add(message.key, node_id, message.n)
            elif isinstance(message, Echo):
                recorder.add(message.key, node_id, message.n)
                self.context.reply(Reply(message.n, node_id))
            elif isinstance(message, Poison):
                raise RuntimeError("poison")
            # Silent: never answered

    return EntityKind(
        "test",
        key_of=lambda m: m.key,
        handler=lambda _shard: Handler(),
        replies=lambda m: isinstance(m, Echo | Silent | Poison),
    )


#: poked after every transport call and callback (publishes, deliveries, subscriptions, the nodes'
#: heartbeats every 0.1 s) and after every actor turn, dead letter and backpressure signal of the
#: nodes' systems: every state a test here waits for changes in one of those
CHANGES = Changes()


async def eventually(check: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Wait (bounded) until ``check()`` holds, looking again after each change (no sleeping)."""
    try:
        async with asyncio.timeout(timeout * SCALE):
            while not check():
                await CHANGES.next()
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or check}") from None


async def eventually_async(
    value: Callable[[], Any], expected: Any, *, timeout: float = 10.0, what: str = ""
) -> None:
    """Wait (bounded) until ``await value()`` equals ``expected``, looking again after each
    change."""
    got: Any = None
    try:
        async with asyncio.timeout(timeout * SCALE):
            while (got := await value()) != expected:
                await CHANGES.next()
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}: {got!r} != {expected!r}") from None


class Waker(Instrumentation):
    """Pokes :data:`CHANGES` after every turn, dead letter and backpressure signal."""

    def batch(self, ref: ActorRef, actor_type: str, count: int, seconds: float, depth: int) -> None:
        CHANGES.poke()

    def dead_letter(self, letter: DeadLetter) -> None:
        CHANGES.poke()

    def backpressure(self, target: ActorRef, sender: ActorRef, slow: bool) -> None:
        CHANGES.poke()


class ObservedTransport(Transport):
    """A transport that pokes :data:`CHANGES` after each of its calls and callbacks."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.names = inner.names
        self.settings = inner.settings

    @staticmethod
    def _poking(callback: Callable[..., None]) -> Callable[..., None]:
        def call(*args: Any) -> None:
            try:
                callback(*args)
            finally:
                CHANGES.poke()

        return call

    async def _after(self, result: Awaitable[T]) -> T:
        try:
            return await result
        finally:
            CHANGES.poke()

    async def connect(
        self,
        node_id: str,
        *,
        on_node_message: Callable[[bytes], None],
        on_lost: Callable[[BaseException | None], None],
    ) -> None:
        await self._after(
            self.inner.connect(
                node_id,
                on_node_message=self._poking(on_node_message),
                on_lost=self._poking(on_lost),
            )
        )

    async def publish_node(self, node_id: str, body: bytes) -> None:
        await self._after(self.inner.publish_node(node_id, body))

    async def publish_shard(self, shard: int, body: bytes) -> None:
        await self._after(self.inner.publish_shard(shard, body))

    async def publish_event(self, key: str, body: bytes) -> None:
        await self._after(self.inner.publish_event(key, body))

    async def publish_dead(self, body: bytes) -> None:
        await self._after(self.inner.publish_dead(body))

    async def subscribe_shard(
        self, shard: int, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> ShardSubscription:
        return await self._after(
            self.inner.subscribe_shard(shard, self._poking(on_delivery), prefetch=prefetch)
        )

    async def bind_event(self, key: str) -> None:
        await self._after(self.inner.bind_event(key))

    async def unbind_event(self, key: str) -> None:
        await self._after(self.inner.unbind_event(key))

    async def queue_depths(self) -> dict[str, int]:
        return await self._after(self.inner.queue_depths())

    async def close(self) -> None:
        await self._after(self.inner.close())

    async def delete_topology(self) -> None:
        await self.inner.delete_topology()


class Cluster:
    """Nodes sharing one broker (in-process or RabbitMQ) and one recorder."""

    def __init__(self, kind: str, names: Names, settings: QueueSettings) -> None:
        self.kind = kind
        self.names = names
        self.settings = settings
        self.broker = MemoryBroker(settings) if kind == "memory" else None
        self.nodes: list[ClusterNode] = []
        self.recorder = Recorder()

    def transport(self) -> Transport:
        if self.broker is not None:
            return ObservedTransport(MemoryTransport(self.broker, self.names))
        from mailslot.cluster.amqp import AmqpTransport

        amqp = AmqpTransport(AMQP_URL, names=self.names, settings=self.settings, heartbeat=2)
        return ObservedTransport(amqp)

    async def add(
        self, node_id: str, *, meters: Meters | None = None, **options: Any
    ) -> ClusterNode:
        system = ActorSystem(node_id, instrumentation=Waker())
        config = ClusterConfig(
            node_id,
            heartbeat_interval=0.1,
            node_timeout=0.6,
            join_wait=0.15,
            **options,
        )
        node = ClusterNode(
            system,
            self.transport(),
            config,
            registries=[REGISTRY],
            kinds=[test_kind(node_id, self.recorder)],
            meters=meters,
        )
        await node.start()
        self.nodes.append(node)
        return node

    async def formed(self, nodes: Iterable[ClusterNode] | None = None) -> None:
        """Every node sees every other, and together they consume every shard."""
        members = list(nodes or self.nodes)
        ids = {n.node_id for n in members}

        def done() -> bool:
            owned: set[int] = set()
            for n in members:
                if n.membership.live != ids:
                    return False
                owned |= n.owned_shards()
            return owned == set(range(self.settings.shards))

        await eventually(done, what="the cluster to form")

    async def close(self) -> None:
        for node in self.nodes:
            await node.stop(timeout=2.0)
            await node.system.shutdown()
        if self.broker is None:
            await self.transport().delete_topology()


@pytest.fixture(params=["memory", "amqp"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    if request.param == "amqp":
        require_service("RabbitMQ", "127.0.0.1", 5672)
    names = Names(f"mst{secrets.token_hex(4)}")
    c = Cluster(request.param, names, QueueSettings(shards=8, delivery_limit=2, max_length=5000))
    try:
        yield c
    finally:
        await c.close()
