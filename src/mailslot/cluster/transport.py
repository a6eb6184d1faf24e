"""Transports: the broker seen by a cluster node, and an in-process broker that behaves like it.

Theory of operation
-------------------
A :class:`Transport` is the thin shell between a :class:`~mailslot.cluster.node.ClusterNode` and
a message broker. It knows nothing about actors or envelopes: it moves opaque batch frames
between four kinds of places, named by :class:`Names` (every name starts with a prefix, so that
several clusters, or test runs, share one broker without meeting):

- the node's own queue (``<prefix>.node.<id>``, exclusive: it dies with the connection), fed by
  the direct exchange (routing key = node id: replies and node-addressed messages) and by the
  events topic exchange (``cluster.#`` heartbeats, plus one binding per subscribed topic such as a
  document's broadcasts);
- the shard queues (``<prefix>.shard.<n>``): durable quorum queues with a single active
  consumer, a delivery limit, a dead-letter exchange and a length limit that rejects publishes;
- the dead-letter queue (``<prefix>.dead``), where the broker puts what exceeded the delivery
  limit or was rejected without requeue;
- the events exchange, for broadcasts.

A shard is consumed through a :class:`ShardSubscription`: deliveries arrive in queue order to one
synchronous callback (never concurrently, never reordered), and are settled by ``ack`` (possibly
``multiple``) or ``nack``. Closing a subscription closes its channel, which gives unacked
deliveries back to the queue in order, so that the next consumer sees them first; that is how a
shard is handed over (RabbitMQ's advice: close, do not cancel).

``publish`` returns once the broker has confirmed the frame (publisher confirms); a refused frame
(queue full, ``reject-publish``) raises :class:`~mailslot.errors.TransportBusy`, a lost
connection :class:`~mailslot.errors.TransportError`. The caller keeps a window of publishes in
flight; this module keeps none.

:class:`MemoryBroker` and :class:`MemoryTransport` implement the same contract inside one process,
with the RabbitMQ semantics the cluster relies on (single active consumer in registration order,
prefetch, requeue on close at the head, delivery count and limit, dead-lettering, length limit with
reject-publish, exact and ``#`` topic bindings). Several nodes of one test share a broker, and
``MemoryTransport.kill`` simulates a lost connection. The AMQP implementation lives in
:mod:`mailslot.cluster.amqp`.
"""

from __future__ import annotations

import asyncio
import itertools
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from mailslot.errors import ConfigError, TransportBusy, TransportError

__all__ = [
    "Delivery",
    "DeliveryCallback",
    "MemoryBroker",
    "MemoryTransport",
    "Names",
    "QueueSettings",
    "ShardSubscription",
    "Transport",
]

HEARTBEAT_KEY: Final = "cluster.heartbeat"


class Delivery(NamedTuple):
    """One AMQP message taken from a shard queue.

    Attributes:
        body: The batch frame.
        tag: The delivery tag, for ``ack``/``nack`` on the subscription that got it.
        redelivered: The broker delivered it before (to this or another consumer).
    """

    body: bytes
    tag: int
    redelivered: bool


DeliveryCallback = Callable[[Delivery], None]


@dataclass(frozen=True, slots=True)
class Names:
    """The broker names of one cluster, all under ``prefix`` (``mailslot`` by default)."""

    prefix: str = "mailslot"

    def __post_init__(self) -> None:
        if (
            not self.prefix
            or len(self.prefix) > 100
            or not all(ch.isalnum() or ch in "._-" for ch in self.prefix)
        ):
            raise ConfigError(
                f"broker name prefix must be 1-100 of A-Z a-z 0-9 . _ -, got {self.prefix!r}"
            )

    @property
    def direct(self) -> str:
        return f"{self.prefix}.direct"

    @property
    def shards(self) -> str:
        return f"{self.prefix}.shards"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    def shard(self, n: int) -> str:
        return f"{self.prefix}.shard.{n}"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}.node.{node_id}"


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """How shard queues are declared (fixed per cluster: a redeclare with other values fails).

    Args:
        shards: How many shard queues.
        delivery_limit: Deliveries of one message before it is dead-lettered.
        max_length: Messages (frames) a shard queue holds before publishes are rejected.
    """

    shards: int = 64
    delivery_limit: int = 5
    max_length: int = 20_000


class ShardSubscription(ABC):
    """A node's consumer on one shard queue (see the module docstring)."""

    shard: int

    @abstractmethod
    def ack(self, tag: int, *, multiple: bool = False) -> None:
        """Settle ``tag`` (and every earlier tag with ``multiple``); never raises."""

    @abstractmethod
    def nack(self, tag: int, *, requeue: bool) -> None:
        """Give ``tag`` back (``requeue``) or dead-letter it; never raises."""

    @abstractmethod
    async def close(self) -> None:
        """Close the channel: unacked deliveries go back to the queue, in order."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once closed by :meth:`close` or because the connection was lost."""


class Transport(ABC):
    """The broker as a cluster node sees it (see the module docstring)."""

    names: Names
    settings: QueueSettings

    @abstractmethod
    async def connect(
        self,
        node_id: str,
        *,
        on_node_message: Callable[[bytes], None],
        on_lost: Callable[[BaseException | None], None],
    ) -> None:
        """Connect, declare the topology, and start consuming the node's own queue.

        ``on_node_message`` gets every frame for the node (direct and events, in arrival order);
        ``on_lost`` is called once if the connection is lost later (not after :meth:`close`).

        Raises:
            TransportError: the broker cannot be reached or refused the topology.
        """

    @abstractmethod
    async def publish_node(self, node_id: str, body: bytes) -> None:
        """Publish a frame to a node's queue (direct exchange); returns once confirmed."""

    @abstractmethod
    async def publish_shard(self, shard: int, body: bytes) -> None:
        """Publish a persistent frame to a shard queue; returns once confirmed.

        Raises:
            TransportBusy: the queue is full (reject-publish).
            TransportError: the connection is lost.
        """

    @abstractmethod
    async def publish_event(self, key: str, body: bytes) -> None:
        """Publish a frame on the events exchange with routing key ``key``."""

    @abstractmethod
    async def publish_dead(self, body: bytes) -> None:
        """Put a frame straight into the dead-letter queue (a message that cannot be read)."""

    @abstractmethod
    async def subscribe_shard(
        self, shard: int, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> ShardSubscription:
        """Register a consumer on a shard queue (it waits its turn: single active consumer)."""

    @abstractmethod
    async def bind_event(self, key: str) -> None:
        """Route events with routing key ``key`` to this node's queue."""

    @abstractmethod
    async def unbind_event(self, key: str) -> None:
        """Stop routing ``key`` to this node's queue."""

    @abstractmethod
    async def queue_depths(self) -> dict[str, int]:
        """Messages ready in each shard queue and the dead-letter queue, by queue name."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection (the node queue goes with it)."""

    async def delete_topology(self) -> None:  # noqa: B027 - optional
        """Delete every exchange and queue under the prefix (tests clean up with this)."""


# ------------------------------------------------------------------------------- in-process


@dataclass(slots=True)
class _Message:
    body: bytes
    count: int = 0  # deliveries so far


@dataclass(eq=False, slots=True)
class _Consumer:
    transport: MemoryTransport
    callback: DeliveryCallback
    prefetch: int
    unacked: dict[int, _Message] = field(default_factory=dict)
    sub: _MemorySubscription | None = None


@dataclass(slots=True)
class _ShardQueue:
    ready: deque[_Message] = field(default_factory=deque)
    consumers: list[_Consumer] = field(default_factory=list)
    scheduled: bool = False


class MemoryBroker:
    """An in-process broker with the RabbitMQ semantics the cluster uses (see module docstring).

    Shared by the :class:`MemoryTransport` of every node of one in-process cluster. Deliveries are
    made from ``loop.call_soon`` callbacks, never inside the call that caused them, as a network
    would.

    Args:
        settings: The shard queue settings.
    """

    def __init__(self, settings: QueueSettings | None = None) -> None:
        self.settings = settings or QueueSettings()
        self.shards = [_ShardQueue() for _ in range(self.settings.shards)]
        self.dead: deque[bytes] = deque()
        self.nodes: dict[str, MemoryTransport] = {}
        self.bindings: dict[str, set[str]] = {}  # routing key -> node ids
        self._tags = itertools.count(1)
        self.published = 0

    def route_node(self, node_id: str, body: bytes) -> None:
        transport = self.nodes.get(node_id)
        if transport is not None:
            transport.receive_node(body)

    def route_event(self, key: str, body: bytes) -> None:
        targets = set(self.bindings.get(key, ()))
        if key.startswith("cluster."):
            targets |= self.bindings.get("cluster.#", set())
        for node_id in sorted(targets):
            self.route_node(node_id, body)

    def route_shard(self, shard: int, body: bytes) -> None:
        q = self.shards[shard]
        if len(q.ready) + sum(len(c.unacked) for c in q.consumers) >= self.settings.max_length:
            raise TransportBusy(f"shard queue {shard} is full ({self.settings.max_length})")
        q.ready.append(_Message(body))
        self.published += 1
        self.schedule(shard)

    def schedule(self, shard: int) -> None:
        q = self.shards[shard]
        if not q.scheduled and q.ready and q.consumers:
            q.scheduled = True
            asyncio.get_running_loop().call_soon(self.dispatch, shard)

    def dispatch(self, shard: int) -> None:
        q = self.shards[shard]
        q.scheduled = False
        if not q.consumers:
            return
        active = q.consumers[0]  # single active consumer: the first registered
        while q.ready and len(active.unacked) < active.prefetch and active in q.consumers:
            message = q.ready.popleft()
            if message.count > self.settings.delivery_limit:
                self.dead.append(message.body)
                continue
            message.count += 1
            tag = next(self._tags)
            active.unacked[tag] = message
            active.callback(Delivery(message.body, tag, message.count > 1))

    def settle(
        self, consumer: _Consumer, shard: int, tag: int, *, multiple: bool, ok: bool, requeue: bool
    ) -> None:
        tags = [t for t in consumer.unacked if t <= tag] if multiple else [tag]
        q = self.shards[shard]
        back: list[_Message] = []
        for t in tags:
            message = consumer.unacked.pop(t, None)
            if message is None or ok:
                continue
            if requeue:
                back.append(message)
            else:
                self.dead.append(message.body)
        q.ready.extendleft(reversed(back))
        self.schedule(shard)

    def remove_consumer(self, consumer: _Consumer, shard: int) -> None:
        q = self.shards[shard]
        if consumer in q.consumers:
            q.consumers.remove(consumer)
        q.ready.extendleft(reversed(list(consumer.unacked.values())))
        consumer.unacked.clear()
        self.schedule(shard)

    def depth(self, shard: int) -> int:
        q = self.shards[shard]
        return len(q.ready) + sum(len(c.unacked) for c in q.consumers)


class _MemorySubscription(ShardSubscription):
    def __init__(self, broker: MemoryBroker, consumer: _Consumer, shard: int) -> None:
        self.broker = broker
        self.consumer = consumer
        self.shard = shard
        self._closed = False

    def ack(self, tag: int, *, multiple: bool = False) -> None:
        if not self._closed:
            self.broker.settle(
                self.consumer, self.shard, tag, multiple=multiple, ok=True, requeue=False
            )

    def nack(self, tag: int, *, requeue: bool) -> None:
        if not self._closed:
            self.broker.settle(
                self.consumer, self.shard, tag, multiple=False, ok=False, requeue=requeue
            )

    async def close(self) -> None:
        self.drop()

    def drop(self) -> None:
        if not self._closed:
            self._closed = True
            self.broker.remove_consumer(self.consumer, self.shard)

    @property
    def closed(self) -> bool:
        return self._closed


class MemoryTransport(Transport):
    """One node's connection to a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker, names: Names | None = None) -> None:
        self.broker = broker
        self.names = names or Names()
        self.settings = broker.settings
        self.node_id: str | None = None
        self._on_node: Callable[[bytes], None] | None = None
        self._on_lost: Callable[[BaseException | None], None] | None = None
        self._subs: list[_MemorySubscription] = []
        self._inbox: deque[bytes] = deque()
        self._scheduled = False
        self.connected = False

    async def connect(
        self,
        node_id: str,
        *,
        on_node_message: Callable[[bytes], None],
        on_lost: Callable[[BaseException | None], None],
    ) -> None:
        if self.broker.nodes.get(node_id) not in (None, self):
            raise TransportError(f"node queue of {node_id!r} is in use by another connection")
        self.node_id = node_id
        self._on_node = on_node_message
        self._on_lost = on_lost
        self.broker.nodes[node_id] = self
        self.broker.bindings.setdefault("cluster.#", set()).add(node_id)
        self.connected = True

    def _check(self) -> str:
        if not self.connected or self.node_id is None:
            raise TransportError("not connected to the broker")
        return self.node_id

    def receive_node(self, body: bytes) -> None:
        self._inbox.append(body)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._deliver_node)

    def _deliver_node(self) -> None:
        self._scheduled = False
        while self._inbox and self.connected and self._on_node is not None:
            self._on_node(self._inbox.popleft())
        self._inbox.clear()

    async def publish_node(self, node_id: str, body: bytes) -> None:
        self._check()
        self.broker.route_node(node_id, body)

    async def publish_shard(self, shard: int, body: bytes) -> None:
        self._check()
        self.broker.route_shard(shard, body)

    async def publish_event(self, key: str, body: bytes) -> None:
        self._check()
        self.broker.route_event(key, body)

    async def publish_dead(self, body: bytes) -> None:
        self._check()
        self.broker.dead.append(body)

    async def subscribe_shard(
        self, shard: int, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> ShardSubscription:
        self._check()
        consumer = _Consumer(self, on_delivery, prefetch)
        sub = _MemorySubscription(self.broker, consumer, shard)
        consumer.sub = sub
        self.broker.shards[shard].consumers.append(consumer)
        self._subs.append(sub)
        self.broker.schedule(shard)
        return sub

    async def bind_event(self, key: str) -> None:
        node_id = self._check()
        self.broker.bindings.setdefault(key, set()).add(node_id)

    async def unbind_event(self, key: str) -> None:
        node_id = self._check()
        nodes = self.broker.bindings.get(key)
        if nodes is not None:
            nodes.discard(node_id)
            if not nodes:
                del self.broker.bindings[key]

    async def queue_depths(self) -> dict[str, int]:
        depths = {self.names.shard(n): self.broker.depth(n) for n in range(self.settings.shards)}
        depths[self.names.dead] = len(self.broker.dead)
        return depths

    def _disconnect(self) -> None:
        self.connected = False
        for sub in self._subs:
            sub.drop()
        self._subs.clear()
        if self.node_id is not None and self.broker.nodes.get(self.node_id) is self:
            del self.broker.nodes[self.node_id]
            for nodes in self.broker.bindings.values():
                nodes.discard(self.node_id)

    async def close(self) -> None:
        self._disconnect()

    def kill(self) -> None:
        """Simulate a lost connection: what the broker does, then ``on_lost``."""
        if not self.connected:
            return
        self._disconnect()
        if self._on_lost is not None:
            self._on_lost(TransportError("connection lost (simulated)"))
