"""A small cluster of nodes inside the test process, over either transport.

``cluster`` is parametrised: ``memory`` (the in-process broker) and ``amqp`` (the real RabbitMQ at
127.0.0.1:5672, with a unique name prefix per test, deleted at the end). Waits for conditions are
bounded by ``MAILSLOT_TEST_TIMEOUT_SCALE`` times a few seconds; nothing waits for a fixed time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import msgspec
import pytest

from mailslot.cluster.node import ClusterConfig, ClusterNode, EntityKind
from mailslot.cluster.transport import (
    MemoryBroker,
    MemoryTransport,
    Names,
    QueueSettings,
    Transport,
)
from mailslot.runtime import Actor, ActorSystem
from mailslot.wire import MessageRegistry
from tests.conftest import require_service

SCALE = float(os.environ.get("MAILSLOT_TEST_TIMEOUT_SCALE", "1"))
AMQP_URL = os.environ.get("MAILSLOT_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


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


async def eventually(check: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Wait (bounded) until ``check()`` holds; yields to the loop between looks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout * SCALE
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.01)


async def eventually_async(
    value: Callable[[], Any], expected: Any, *, timeout: float = 10.0, what: str = ""
) -> None:
    """Wait (bounded) until ``await value()`` equals ``expected``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout * SCALE
    while (got := await value()) != expected:
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {got!r} != {expected!r}")
        await asyncio.sleep(0.02)


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
            return MemoryTransport(self.broker, self.names)
        from mailslot.cluster.amqp import AmqpTransport

        return AmqpTransport(AMQP_URL, names=self.names, settings=self.settings, heartbeat=2)

    async def add(self, node_id: str, **options: Any) -> ClusterNode:
        system = ActorSystem(node_id)
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
