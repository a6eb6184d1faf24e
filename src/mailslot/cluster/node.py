"""A cluster node: location-transparent refs, sharded entities, and the broker's delivery rules.

Theory of operation
-------------------
A :class:`ClusterNode` joins one :class:`~mailslot.runtime.ActorSystem` to a cluster through a
:class:`~mailslot.cluster.transport.Transport` (RabbitMQ, or the in-process broker). It gives out
refs that behave like local ones (``tell``, ``send``, ``ask``):

- :meth:`ClusterNode.ref` - an actor on another node, by node id and path (replies, sessions);
- :meth:`ClusterNode.entity_ref` - the entities of one registered kind (documents, presence per
  document, notifications per user). Each message names its entity (``kind.key_of(message)``);
  the key maps to one of S shards (:func:`~mailslot.cluster.routing.shard_for`) and the message
  goes to that shard's queue;
- :meth:`ClusterNode.topic_ref` - a broadcast to every node bound to a routing key (a document's
  committed ops reach the hubs of the nodes whose sessions subscribe to it).

*Sending.* Every remote tell encodes the message once into an
:class:`~mailslot.wire.Envelope` and adds it to a :class:`~mailslot.wire.BatchBuilder` keyed by
destination; the open frames are sealed at the end of the current loop iteration (or when full)
and published by one publisher task with up to ``publish_window`` frames awaiting their broker
confirm. A frame whose publish fails (connection lost, queue full) is published again later:
duplicates are harmless, because receivers deduplicate. Envelopes not yet confirmed are counted;
past the high watermark the actors that send are told :class:`~mailslot.runtime.SlowDown` (and
:class:`~mailslot.runtime.Resume` at the low watermark); at ``max_buffered`` a critical ``tell``
raises :class:`~mailslot.errors.MailboxFull` and ``await send`` waits for room. A broker that
blocks the connection or rejects publishes (queue length limit) therefore slows the senders down.

*Shards.* Each node learns the live membership from heartbeats and computes, by rendezvous
hashing, the shards it should consume as primary and as standby, and registers a consumer on each
(the broker's single-active-consumer makes exactly one of them active). A shard's deliveries
arrive in queue order to a synchronous callback and are handed, in that order, to one handler
actor per (shard, kind) (for documents: a :class:`~mailslot.collab.document.DocumentManager`
per shard), so the per-shard order is kept end to end.

*Acknowledgement after durability.* A frame is acked only when every envelope in it is
*settled*. An envelope of a message that gets a reply (``EntityKind.replies``) is settled when the
handler replies: the sender the handler sees is a receipt ref whose first ``tell`` settles it.
A document replies to an op only after its group commit is confirmed, so a frame is acked after
its ops are in the store. Other envelopes settle when handed to the handler. Acks are sent in
delivery order (``multiple``), for the longest settled prefix. An envelope that is not settled
within ``settle_timeout`` (its handler died, or it is poison) gets its frame requeued; after the
queue's delivery limit the broker dead-letters it, and the shard goes on. Redeliveries are
harmless: envelopes whose id was settled recently are skipped (a bounded window), and documents
deduplicate ops by ``(src, seq)`` from the store.

*Handover and fencing.* A node gives a shard up (membership changed, or it is active on a shard
whose primary is live) by stopping the shard's handler actors first (a document sees its commits
in flight through) and then closing the shard's channel, which requeues what was not acked, in
order, for the next consumer. When the connection is lost the node stops every shard handler at
once (the broker has already requeued their deliveries for someone else); the store's unique
``(document, version)`` key is the last line of defence against a writer that is late. The node
then reconnects with backoff, binds its topics again and resumes publishing.

Only the event loop thread touches a node; no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from mailslot.cluster.dedup import RecentIds
from mailslot.cluster.messages import Catalog, Heartbeat, Leave, Undeliverable
from mailslot.cluster.routing import Membership, assignment, check_node_id, roles, shard_for
from mailslot.cluster.transport import HEARTBEAT_KEY, Delivery, ShardSubscription, Transport
from mailslot.errors import (
    ActorStopped,
    AskTimeout,
    CodecError,
    ConfigError,
    MailboxFull,
    TransportBusy,
    TransportError,
)
from mailslot.meters import Meters
from mailslot.runtime import (
    Actor,
    ActorRef,
    ActorSystem,
    DeadLetter,
    DeadLetterReason,
    Instrumentation,
    is_droppable,
)
from mailslot.runtime import Envelope as LocalEnvelope
from mailslot.runtime.core import LocalActorRef
from mailslot.wire import Batch, BatchBuilder, Envelope, IdSequence, MessageRegistry, decode_batch

__all__ = [
    "ClusterConfig",
    "ClusterNode",
    "ClusterStatistics",
    "EntityKind",
    "EntityRef",
    "RemoteActorRef",
    "TopicRef",
]

log = logging.getLogger("mailslot.cluster")

CONTROL_PATH: Final = "/cluster"
_ASK_PREFIX: Final = "/temp/cask-"
_PROXY_PREFIX: Final = "/temp/proxy-"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How a node behaves in the cluster.

    Args:
        node_id: Unique among live nodes (``A-Z a-z 0-9 . _ ~ : @ + = -``, 1-200 characters).
        url: Where clients reach this node, shown by ``mailslot cluster status``.
        heartbeat_interval: Seconds between heartbeats.
        node_timeout: Seconds without a heartbeat before a node counts as gone.
        batch_size: Envelopes per frame at most.
        publish_window: Frames published and not yet confirmed, at most.
        max_buffered: Envelopes sent and not yet confirmed, at most (then ``MailboxFull``).
        prefetch: Frames a shard consumer holds unacked, at most.
        settle_timeout: Seconds an envelope may stay unsettled before its frame is requeued.
        dedup_window: Settled message ids remembered (at least this many of the latest, at
            most twice as many), to skip redeliveries.
        join_wait: Seconds to listen for heartbeats before taking shards, on start.
        reconnect_delay: First delay before reconnecting; doubles up to ``max_reconnect_delay``.
        max_reconnect_delay: Longest delay between reconnection attempts.
        max_proxies: Non-addressable senders (temporary ask refs) remembered for replies.
        hosts_shards: False for a node that only sends (it consumes no shard and is left out of
            the shard assignment).
        lag_interval: Seconds between two readings of the depths of the queues this node
            consumes (the consumer-lag gauges; only with ``meters``).
    """

    node_id: str
    url: str | None = None
    heartbeat_interval: float = 1.0
    node_timeout: float = 3.5
    batch_size: int = 100
    publish_window: int = 64
    max_buffered: int = 50_000
    prefetch: int = 32
    settle_timeout: float = 30.0
    dedup_window: int = 100_000
    join_wait: float | None = None
    reconnect_delay: float = 0.2
    max_reconnect_delay: float = 5.0
    max_proxies: int = 10_000
    hosts_shards: bool = True
    lag_interval: float = 5.0

    def __post_init__(self) -> None:
        check_node_id(self.node_id)
        for name in (
            "heartbeat_interval",
            "node_timeout",
            "settle_timeout",
            "reconnect_delay",
            "lag_interval",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.node_timeout <= self.heartbeat_interval:
            raise ConfigError("node_timeout must be longer than heartbeat_interval")
        for name in ("batch_size", "publish_window", "max_buffered", "prefetch", "dedup_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class EntityKind:
    """A kind of sharded entity: how to find its key, and who handles it on the owning node.

    Args:
        name: The kind (``docs``); the first part of every entity key of this kind.
        key_of: The entity id of a message (``"<collection>/<doc>"`` for documents).
        handler: Makes the handler actor of one shard (called with the shard number); it gets
            every message of this kind for that shard, in order, with the original sender.
        replies: True for messages the handler answers exactly once, after their effect is
            durable; their delivery is acked only then. Others are acked once handed over.
    """

    name: str
    key_of: Callable[[Any], str]
    handler: Callable[[int], Actor]
    replies: Callable[[Any], bool] = field(default=lambda _message: False)


class ClusterStatistics(msgspec.Struct, frozen=True):
    """A snapshot of one node's cluster layer."""

    node: str
    connected: bool
    live: tuple[str, ...]
    primary: int
    standby: int
    consuming: tuple[int, ...]
    frames_published: int
    envelopes_published: int
    frames_received: int
    envelopes_received: int
    redelivered: int
    duplicates: int
    dead_lettered: int
    requeued: int
    publish_retries: int
    buffered: int
    in_flight: int
    asks_pending: int
    reconnects: int
    handovers: int
    slowed_down: int


# -------------------------------------------------------------------------------------- refs


def _uid_of(node_id: str) -> int:
    return int.from_bytes(node_id.encode()[:8].ljust(8, b"\0"), "big") | (1 << 63)


class RemoteActorRef(ActorRef):
    """An actor on another node (or this one, seen from the wire); behaves like a local ref."""

    __slots__ = ("_cluster", "node_id")

    def __init__(self, cluster: ClusterNode, node_id: str, path: str) -> None:
        super().__init__(path, _uid_of(node_id))
        self._cluster = cluster
        self.node_id = node_id

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        self._cluster._send("n" + self.node_id, self.path, message, sender, self)

    def send(self, message: Any, *, sender: ActorRef | None = None) -> Awaitable[None]:
        return self._cluster._send_waiting("n" + self.node_id, self.path, message, sender, self)

    async def ask(self, message: Any, *, timeout: float) -> Any:
        return await self._cluster._ask("n" + self.node_id, self.path, message, timeout, self)

    def deliver(self, message: Any, envelope: LocalEnvelope) -> None:
        with contextlib.suppress(MailboxFull):
            self.tell(message, envelope.sender)

    def __repr__(self) -> str:
        return f"<RemoteActorRef {self.node_id}{self.path}>"


class EntityRef(ActorRef):
    """The entities of one kind, wherever their shards are consumed."""

    __slots__ = ("_cluster", "_kind")

    def __init__(self, cluster: ClusterNode, kind: EntityKind) -> None:
        super().__init__(f"/cluster/{kind.name}", 0)
        self._cluster = cluster
        self._kind = kind

    def _route(self, message: Any) -> tuple[str, str]:
        target = f"{self._kind.name}/{self._kind.key_of(message)}"
        return f"s{self._cluster._shard_of(target)}", target

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        route, target = self._route(message)
        self._cluster._send(route, target, message, sender, self)

    def send(self, message: Any, *, sender: ActorRef | None = None) -> Awaitable[None]:
        route, target = self._route(message)
        return self._cluster._send_waiting(route, target, message, sender, self)

    async def ask(self, message: Any, *, timeout: float) -> Any:
        route, target = self._route(message)
        return await self._cluster._ask(route, target, message, timeout, self)

    def deliver(self, message: Any, envelope: LocalEnvelope) -> None:
        with contextlib.suppress(MailboxFull):
            self.tell(message, envelope.sender)


class TopicRef(ActorRef):
    """A broadcast: each message goes to ``path`` on every node bound to ``key_of(message)``."""

    __slots__ = ("_cluster", "_key_of")

    def __init__(self, cluster: ClusterNode, key_of: Callable[[Any], str], path: str) -> None:
        super().__init__(path, 1)
        self._cluster = cluster
        self._key_of = key_of

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        self._cluster._send("e" + self._key_of(message), self.path, message, sender, self)

    def send(self, message: Any, *, sender: ActorRef | None = None) -> Awaitable[None]:
        route = "e" + self._key_of(message)
        return self._cluster._send_waiting(route, self.path, message, sender, self)

    async def ask(self, message: Any, *, timeout: float) -> Any:
        raise ActorStopped("a broadcast cannot be asked", actor=self.path)

    def deliver(self, message: Any, envelope: LocalEnvelope) -> None:
        with contextlib.suppress(MailboxFull):
            self.tell(message, envelope.sender)


class _Frame:
    """One delivery from a shard queue and how many of its envelopes are not yet settled."""

    __slots__ = ("born", "done", "remaining", "shard", "sub", "tag")

    def __init__(self, shard: _Shard, sub: ShardSubscription, tag: int, remaining: int) -> None:
        self.shard = shard
        self.sub = sub
        self.tag = tag
        self.remaining = remaining
        self.done = False
        self.born = time.monotonic()


class _Receipt(ActorRef):
    """The sender a shard handler sees: its first ``tell`` (the reply) settles the envelope."""

    __slots__ = ("_cluster", "_done", "_frame", "_id", "_inner")

    def __init__(
        self, cluster: ClusterNode, frame: _Frame, envelope_id: bytes, inner: ActorRef | None
    ) -> None:
        if inner is None:
            super().__init__("/deadletters", 0)
        else:
            super().__init__(inner.path, inner._uid)
        self._cluster = cluster
        self._frame = frame
        self._id = envelope_id
        self._inner = inner
        self._done = False

    def _settle(self) -> None:
        if not self._done:
            self._done = True
            self._cluster._settle(self._frame, self._id)

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        self._settle()
        if self._inner is not None:
            self._inner.tell(message, sender)

    def send(self, message: Any, *, sender: ActorRef | None = None) -> Awaitable[None]:
        self._settle()
        if self._inner is None:
            return self._cluster._done()
        return self._inner.send(message, sender=sender)

    async def ask(self, message: Any, *, timeout: float) -> Any:
        self._settle()
        if self._inner is None:
            raise ActorStopped("the sender is unknown", actor=self.path)
        return await self._inner.ask(message, timeout=timeout)

    def deliver(self, message: Any, envelope: LocalEnvelope) -> None:
        self._settle()
        if self._inner is not None:
            self._inner.deliver(message, envelope)


class _Shard:
    __slots__ = (
        "active",
        "frames",
        "handlers",
        "n",
        "primary",
        "releasing",
        "sub",
        "yield_after",
        "yield_requested",
    )

    def __init__(self, n: int) -> None:
        self.n = n
        self.sub: ShardSubscription | None = None
        self.frames: deque[_Frame] = deque()
        self.handlers: dict[str, ActorRef] = {}
        self.releasing = False
        self.active = False
        self.yield_after = 0.0
        self.yield_requested = False
        self.primary = False


class _Bind(msgspec.Struct, frozen=True):
    key: str
    bind: bool


# -------------------------------------------------------------------------------------- node


class _ClusterMeters:
    """The cluster's instruments in the process's :class:`~mailslot.meters.Meters` (children kept
    for the hot paths)."""

    def __init__(self, meters: Meters, node: ClusterNode) -> None:
        self.meters = meters
        self._published = meters.cluster_published
        self._acked = meters.cluster_confirms.labels("ack")
        self.nacked = meters.cluster_confirms.labels("nack")
        self._consumed = meters.cluster_consumed
        self._redeliveries = meters.cluster_redeliveries
        self._out_sizes = meters.cluster_batch_size.labels("publish")
        self._in_sizes = meters.cluster_batch_size.labels("consume")
        meters.cluster_shards_owned.set_function(lambda: len(node.owned_shards()))
        self._lagging: set[str] = set()

    def published(self, count: int) -> None:
        self._published.inc(count)
        self._acked.inc()
        self._out_sizes.observe(count)

    def consumed(self, count: int, *, redelivered: bool) -> None:
        self._consumed.inc(count)
        self._in_sizes.observe(count)
        if redelivered:
            self._redeliveries.inc()

    def lag(self, depths: dict[str, int], consumed: set[str]) -> None:
        """Messages ready in each queue this node consumes; 0 for those it stopped consuming."""
        for name in self._lagging - consumed:
            self.meters.cluster_consumer_lag.labels(name).set(0)
        for name in consumed:
            self.meters.cluster_consumer_lag.labels(name).set(depths.get(name, 0))
        self._lagging = consumed


class ClusterNode:
    """One process's membership of a cluster (see the module docstring).

    Args:
        system: The actor system whose actors the cluster reaches and hosts.
        transport: The broker connection (not yet connected).
        config: This node's settings.
        registries: The message registries of everything that crosses the cluster.
        kinds: The entity kinds this node hosts (every node of a cluster registers the same).
        instrumentation: If it stamps envelopes, outgoing messages carry its trace context.
    """

    def __init__(
        self,
        system: ActorSystem,
        transport: Transport,
        config: ClusterConfig,
        *,
        registries: Iterable[MessageRegistry] = (),
        kinds: Iterable[EntityKind] = (),
        instrumentation: Instrumentation | None = None,
        meters: Meters | None = None,
    ) -> None:
        self.system = system
        self.transport = transport
        self.config = config
        self._meters = _ClusterMeters(meters, self) if meters is not None else None
        self.node_id = config.node_id
        self.shards = transport.settings.shards
        self.catalog = Catalog(*registries)
        self.kinds: dict[str, EntityKind] = {}
        for kind in kinds:
            self.register_kind(kind)
        self._instr = (
            instrumentation if instrumentation and instrumentation.stamps_envelopes else None
        )
        self.membership = Membership(timeout=config.node_timeout, local=config.node_id)
        self._ids = IdSequence(os.urandom(8))
        self._local_ids = itertools.count(1)
        self._builder = BatchBuilder(max_count=config.batch_size)
        self._out: deque[Batch | _Bind] = deque()
        self._flush_pending = False
        self._buffered = 0
        self._in_flight = 0
        # seal open frames only while fewer than this many are unconfirmed (adaptive batching)
        self._linger_below = max(1, config.publish_window // 4)
        self._pause_until = 0.0
        self._high = max(1, int(config.max_buffered * 0.8))
        self._low = max(0, int(config.max_buffered * 0.5))
        self._throttled: dict[ActorRef, ActorRef] = {}
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._drained_waiters: list[asyncio.Future[None]] = []
        self._shard_cache: dict[str, int] = {}
        self._remote_senders: dict[str, RemoteActorRef] = {}
        self._shards: dict[int, _Shard] = {}
        self._consuming_logged: frozenset[int] = frozenset()
        self._lag_at = float("-inf")
        self._lag_running = False
        self._seen = RecentIds(config.dedup_window)
        self._asks: dict[str, tuple[asyncio.Future[Any], str]] = {}
        self._ask_ids = itertools.count(1)
        self._proxies: OrderedDict[str, ActorRef] = OrderedDict()  # O(1) oldest-first
        self._proxy_of: dict[ActorRef, str] = {}
        self._proxy_ids = itertools.count(1)
        self._bound: dict[str, set[str]] = {}
        self._lost_listeners: list[Callable[[], None]] = []
        self._connected = False
        self._running = False
        self._stopping = False
        self._wake_publisher: asyncio.Future[None] | None = None
        self._wake_control: asyncio.Future[None] | None = None
        self._control_dirty = True
        self._fence_needed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._table_version = -1
        self._table: dict[int, tuple[str, str | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_heartbeat = 0.0
        self._handler_gen = itertools.count(1)
        self.advertised_url = config.url
        self._stats = dict.fromkeys(
            (
                "frames_published",
                "envelopes_published",
                "frames_received",
                "envelopes_received",
                "redelivered",
                "duplicates",
                "dead_lettered",
                "requeued",
                "publish_retries",
                "reconnects",
                "handovers",
                "slowed_down",
            ),
            0,
        )

    # ---- public API --------------------------------------------------------------------------

    def register_kind(self, kind: EntityKind) -> None:
        """Host an entity kind (before :meth:`start`; every node registers the same kinds).

        Raises:
            ConfigError: the name is taken or is not a valid key word.
        """
        if kind.name in self.kinds:
            raise ConfigError(f"entity kind {kind.name!r} is already registered")
        if not kind.name or "/" in kind.name or "." in kind.name:
            raise ConfigError(f"entity kind name {kind.name!r} must be non-empty without / or .")
        self.kinds[kind.name] = kind

    def ref(self, node_id: str, path: str) -> ActorRef:
        """A ref to the actor at ``path`` on ``node_id`` (a local ref if it is this node's)."""
        if node_id == self.node_id:
            local = self.system.lookup(path)
            if local is not None:
                return local
        return RemoteActorRef(self, node_id, path)

    def entity_ref(self, kind: str) -> EntityRef:
        """The ref that routes each message to its entity's shard, wherever it is consumed.

        Raises:
            ConfigError: the kind is not registered.
        """
        spec = self.kinds.get(kind)
        if spec is None:
            raise ConfigError(f"unknown entity kind {kind!r}; register it first")
        return EntityRef(self, spec)

    def topic_ref(self, key_of: Callable[[Any], str], path: str) -> TopicRef:
        """A ref that broadcasts each message to ``path`` on every node bound to its key."""
        return TopicRef(self, key_of, path)

    def subscribe_topic(self, key: str, owner: str) -> None:
        """Bind this node to events with routing key ``key`` (reference-counted by ``owner``).

        The binding is made before any message sent after this call is published, so a request
        sent next cannot be answered by a broadcast that misses this node.
        """
        owners = self._bound.get(key)
        if owners is None:
            owners = self._bound[key] = set()
            self._flush_now()
            self._out.append(_Bind(key, True))
            self._poke_publisher()
        owners.add(owner)

    def unsubscribe_topic(self, key: str, owner: str) -> None:
        """Drop ``owner``'s interest in ``key``; the binding goes with the last owner."""
        owners = self._bound.get(key)
        if owners is None:
            return
        owners.discard(owner)
        if not owners:
            del self._bound[key]
            self._flush_now()
            self._out.append(_Bind(key, False))
            self._poke_publisher()

    def on_lost(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the broker connection is lost (after shards are fenced)."""
        self._lost_listeners.append(listener)

    @property
    def connected(self) -> bool:
        return self._connected

    def owned_shards(self) -> frozenset[int]:
        """Shards this node is consuming (active, or registered as standby)."""
        return frozenset(n for n, s in self._shards.items() if s.sub is not None)

    def active_shards(self) -> frozenset[int]:
        """Shards whose deliveries this node has received since it subscribed."""
        return frozenset(n for n, s in self._shards.items() if s.active)

    def statistics(self) -> ClusterStatistics:
        """A frozen snapshot of the node's cluster state and counters."""
        primary, standby = roles(self.node_id, self._table)
        return ClusterStatistics(
            node=self.node_id,
            connected=self._connected,
            live=tuple(sorted(self.membership.live)),
            primary=len(primary),
            standby=len(standby),
            consuming=tuple(sorted(self.active_shards())),
            buffered=self._buffered,
            in_flight=self._in_flight,
            asks_pending=len(self._asks),
            **self._stats,
        )

    async def start(self) -> None:
        """Connect, start publishing and heartbeats, then take shards after ``join_wait``.

        Raises:
            TransportError: the broker cannot be reached.
        """
        self._loop = asyncio.get_running_loop()
        self.system.start()
        await self._connect()
        self._running = True
        self._spawn_task(self._publisher(), "publisher")
        self._heartbeat()
        wait = self.config.join_wait
        if wait is None:
            wait = self.config.heartbeat_interval * 1.2
        self._spawn_task(self._control(wait), "control")

    async def stop(self, *, timeout: float = 10.0) -> None:
        """Leave: tell the others, hand every shard back, flush what is buffered, disconnect."""
        if not self._running:
            return
        self._stopping = True
        if self._connected:
            self._send_control_event(Leave(self.node_id))
        for n in list(self._shards):
            await self._release(n)
        self._flush_now()
        if (self._out or self._in_flight) and self._connected:
            drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drained_waiters.append(drained)
            self._poke_publisher()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await drained
        self._running = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fut, _ in self._asks.values():
            if not fut.done():
                fut.set_exception(ActorStopped("the cluster node stopped", actor=self.node_id))
        self._asks.clear()
        self._connected = False
        with contextlib.suppress(TransportError):
            await self.transport.close()

    # ---- sending -----------------------------------------------------------------------------

    def _shard_of(self, target: str) -> int:
        shard = self._shard_cache.get(target)
        if shard is None:
            shard = shard_for(target, self.shards)
            if len(self._shard_cache) >= 100_000:
                self._shard_cache.clear()
            self._shard_cache[target] = shard
        return shard

    def _sender_path(self, sender: ActorRef) -> str:
        if isinstance(sender, RemoteActorRef):
            return sender.node_id + sender.path
        if isinstance(sender, _Receipt):
            inner = sender._inner
            return self._sender_path(inner) if inner is not None else self.node_id + sender.path
        if type(sender) is LocalActorRef:
            return self.node_id + sender.path
        proxy = self._proxy_of.get(sender)
        if proxy is None:
            proxy = f"{_PROXY_PREFIX}{next(self._proxy_ids)}"
            if len(self._proxies) >= self.config.max_proxies:
                _, oldest = self._proxies.popitem(last=False)
                self._proxy_of.pop(oldest, None)
            self._proxies[proxy] = sender
            self._proxy_of[sender] = proxy
        return self.node_id + proxy

    def _send(
        self,
        route: str,
        target: str,
        message: Any,
        sender: ActorRef | None,
        via: ActorRef,
        *,
        sender_path: str | None = None,
        correlation: bytes | None = None,
        force: bool = False,
    ) -> None:
        if self._buffered >= self.config.max_buffered and not force:
            if is_droppable(message):
                self.system.dead_letters.publish(
                    DeadLetter(message, sender, via, DeadLetterReason.OVERFLOW)
                )
                return
            raise MailboxFull(
                f"the cluster outbox of {self.node_id} is full ({self.config.max_buffered} "
                f"messages not yet confirmed by the broker) and {type(message).__name__} is not "
                "droppable; use 'await send' to wait",
                actor=via.path,
            )
        tag, version, body = self.catalog.encode(message)
        if sender is None and sender_path is None:
            sender = self.system._current  # the actor whose turn this is, as for a local tell
        if sender_path is None and sender is not None:
            sender_path = self._sender_path(sender)
        trace = None
        if self._instr is not None:
            trace = self._instr.outgoing(sender, via, message)
        envelope = Envelope(
            self._ids.next_id(),
            time.time_ns(),
            target,
            tag,
            version,
            body,
            sender_path,
            correlation,
            None,
            trace,
            None,
        )
        ready = self._builder.add(route, envelope)
        self._buffered += 1
        if ready:
            self._out.extend(ready)
            self._poke_publisher()
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)
        if self._buffered >= self._high and sender is not None and type(sender) is LocalActorRef:
            self._throttle(sender, via)

    def _send_waiting(
        self, route: str, target: str, message: Any, sender: ActorRef | None, via: ActorRef
    ) -> Awaitable[None]:
        if self._buffered < self.config.max_buffered:
            self._send(route, target, message, sender, via)
            return self._done()
        return self._send_when_room(route, target, message, sender, via)

    async def _send_when_room(
        self, route: str, target: str, message: Any, sender: ActorRef | None, via: ActorRef
    ) -> None:
        while self._buffered >= self.config.max_buffered:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room_waiters.append(waiter)
            await waiter
        self._send(route, target, message, sender, via)

    def _done(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def _ask(
        self, route: str, target: str, message: Any, timeout: float, via: ActorRef
    ) -> Any:
        if timeout is None or timeout <= 0:
            raise ValueError(f"ask needs a timeout > 0 seconds, got {timeout!r}")
        loop = asyncio.get_running_loop()
        path = f"{_ASK_PREFIX}{next(self._ask_ids)}"
        fut: asyncio.Future[Any] = loop.create_future()
        self._asks[path] = (fut, target)
        try:
            self._send(route, target, message, None, via, sender_path=self.node_id + path)
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise AskTimeout(
                f"no reply from {target} within {timeout:g}s", actor=target, timeout=timeout
            ) from None
        finally:
            self._asks.pop(path, None)

    def _throttle(self, sender: ActorRef, via: ActorRef) -> None:
        if sender in self._throttled:
            return
        self._throttled[sender] = via
        self._stats["slowed_down"] += 1
        self.system.notify_backpressure(sender, via, slow=True)

    def _confirmed(self, count: int) -> None:
        self._buffered -= count
        if self._buffered <= self._low and self._throttled:
            throttled, self._throttled = self._throttled, {}
            for sender, via in throttled.items():
                self.system.notify_backpressure(sender, via, slow=False)
        while self._room_waiters and self._buffered < self.config.max_buffered:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._in_flight < self._linger_below:
            self._seal_open()
        # else the broker is still confirming earlier frames: the open frames keep growing, and
        # the publisher seals them when a confirm makes room (fewer, fuller frames under load)

    def _seal_open(self) -> None:
        batches = self._builder.flush()
        if batches:
            self._out.extend(batches)
            self._poke_publisher()

    def _flush_now(self) -> None:
        batches = self._builder.flush()
        if batches:
            self._out.extend(batches)

    def _poke_publisher(self) -> None:
        waker = self._wake_publisher
        if waker is not None and not waker.done():
            waker.set_result(None)

    def _poke_control(self) -> None:
        self._control_dirty = True
        waker = self._wake_control
        if waker is not None and not waker.done():
            waker.set_result(None)

    async def _sleep_publisher(self, delay: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._wake_publisher = fut = loop.create_future()
        handle = loop.call_later(delay, self._poke_publisher) if delay is not None else None
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._wake_publisher = None

    async def _publisher(self) -> None:
        """Publish frames and bind commands in order, with a window of confirms in flight."""
        loop = asyncio.get_running_loop()
        window = self.config.publish_window
        while True:
            if not self._out and self._in_flight < self._linger_below and len(self._builder):
                self._out.extend(self._builder.flush())
            now = loop.time()
            if self._pause_until > now:
                await self._sleep_publisher(self._pause_until - now)
                continue
            if not self._out or not self._connected or self._in_flight >= window:
                if not self._out and not self._in_flight and self._drained_waiters:
                    for waiter in self._drained_waiters:
                        if not waiter.done():
                            waiter.set_result(None)
                    self._drained_waiters.clear()
                await self._sleep_publisher()
                continue
            item = self._out[0]
            if isinstance(item, _Bind):
                if self._in_flight:
                    await self._sleep_publisher()
                    continue
                try:
                    if item.bind:
                        await self.transport.bind_event(item.key)
                    else:
                        await self.transport.unbind_event(item.key)
                except TransportError as exc:
                    log.info("cluster %s: bind %s failed: %r", self.node_id, item.key, exc)
                    await self._sleep_publisher(0.05)
                    continue
                if self._out and self._out[0] is item:
                    self._out.popleft()
                continue
            self._out.popleft()
            self._in_flight += 1
            self._spawn_task(self._publish(item), "publish")

    async def _publish(self, batch: Batch) -> None:
        dest = batch.destination
        kind, rest = dest[0], dest[1:]
        try:
            if kind == "s":
                await self.transport.publish_shard(int(rest), batch.frame)
            elif kind == "n":
                await self.transport.publish_node(rest, batch.frame)
            elif kind == "e":
                await self.transport.publish_event(rest, batch.frame)
            else:
                await self.transport.publish_dead(batch.frame)
        except TransportBusy:
            self._stats["publish_retries"] += 1
            if self._meters is not None:
                self._meters.nacked.inc()
            self._out.appendleft(batch)
            loop = asyncio.get_running_loop()
            self._pause_until = max(self._pause_until, loop.time() + 0.05)
        except TransportError:
            self._stats["publish_retries"] += 1
            self._out.appendleft(batch)
        else:
            self._stats["frames_published"] += 1
            self._stats["envelopes_published"] += batch.count
            if self._meters is not None:
                self._meters.published(batch.count)
            self._confirmed(batch.count)
        finally:
            self._in_flight -= 1
            self._poke_publisher()

    def _send_control_event(self, message: Any) -> None:
        self._send("e" + HEARTBEAT_KEY, CONTROL_PATH, message, None, _CONTROL_REF, force=True)

    def _heartbeat(self) -> None:
        self._last_heartbeat = time.monotonic()
        active = tuple(sorted(self.active_shards()))
        self._send_control_event(
            Heartbeat(self.node_id, active, self.advertised_url, self.config.hosts_shards)
        )

    # ---- receiving ---------------------------------------------------------------------------

    def _on_node_message(self, body: bytes) -> None:
        try:
            envelopes = decode_batch(body)
        except CodecError as exc:
            log.warning("cluster %s: unreadable frame on the node queue: %s", self.node_id, exc)
            self._stats["dead_lettered"] += 1
            return
        self._stats["frames_received"] += 1
        self._stats["envelopes_received"] += len(envelopes)
        if self._meters is not None:
            self._meters.consumed(len(envelopes), redelivered=False)
        for envelope in envelopes:
            try:
                self._deliver_local(envelope)
            except CodecError as exc:
                log.warning(
                    "cluster %s: unreadable message for %s: %s", self.node_id, envelope.target, exc
                )
                self._stats["dead_lettered"] += 1

    def _sender_ref(self, sender: str | None) -> ActorRef | None:
        if sender is None:
            return None
        slash = sender.find("/")
        if slash <= 0:
            return None
        remote = self._remote_senders.get(sender)
        if remote is not None:
            return remote
        node_id, path = sender[:slash], sender[slash:]
        if node_id == self.node_id:
            if path.startswith(_PROXY_PREFIX):
                return self._proxies.get(path)
            if not path.startswith(_ASK_PREFIX):
                local = self.system.lookup(path)
                if local is not None:
                    return local
            return RemoteActorRef(self, node_id, path)
        # refs to other nodes' actors are immutable: one per sender, not one per message
        if len(self._remote_senders) >= 10_000:
            self._remote_senders.clear()
        remote = self._remote_senders[sender] = RemoteActorRef(self, node_id, path)
        return remote

    def _deliver_local(self, envelope: Envelope) -> None:
        target = envelope.target
        message = self.catalog.decode(envelope)
        if target == CONTROL_PATH:
            self._on_control(message)
            return
        if target.startswith(_ASK_PREFIX):
            entry = self._asks.get(target)
            if entry is not None and not entry[0].done():
                if isinstance(message, Undeliverable):
                    entry[0].set_exception(
                        ActorStopped(f"{entry[1]} cannot answer: {message.reason}", actor=entry[1])
                    )
                else:
                    entry[0].set_result(message)
            return
        sender = self._sender_ref(envelope.sender)
        if target.startswith(_PROXY_PREFIX):
            proxy = self._proxies.get(target)
            if proxy is not None:
                proxy.tell(message, sender)
            return
        ref = self.system.lookup(target)
        if ref is None:
            self._undeliverable(target, message, sender, "stopped")
            return
        self._deliver(ref, message, envelope, sender)

    def _deliver(
        self, ref: ActorRef, message: Any, envelope: Envelope, sender: ActorRef | None
    ) -> None:
        """To a local actor; the envelope is rebuilt only when there is a trace or a hook to see
        it (otherwise the sender is all the actor can ask about)."""
        if envelope.traceparent is None and self._instr is None:
            ref.deliver_from(message, sender)
        else:
            ref.deliver(message, self._local_envelope(envelope, sender))

    def _local_envelope(self, envelope: Envelope, sender: ActorRef | None) -> LocalEnvelope:
        return LocalEnvelope(
            next(self._local_ids), time.monotonic(), sender, None, envelope.traceparent
        )

    def _undeliverable(
        self, target: str, message: Any, sender: ActorRef | None, reason: str
    ) -> None:
        recipient = RemoteActorRef(self, self.node_id, target)
        self.system.dead_letters.publish(
            DeadLetter(message, sender, recipient, DeadLetterReason.STOPPED)
        )
        if isinstance(sender, RemoteActorRef) and sender.path.startswith(_ASK_PREFIX):
            self._send(
                "n" + sender.node_id,
                sender.path,
                Undeliverable(target, reason),
                None,
                sender,
                force=True,
            )

    def _on_control(self, message: Any) -> None:
        if isinstance(message, Heartbeat):
            if not message.hosts:
                return
            if message.node != self.node_id and self.membership.heartbeat(
                message.node, time.monotonic()
            ):
                log.info("cluster %s: node %s joined", self.node_id, message.node)
                self._poke_control()
        elif isinstance(message, Leave) and self.membership.leave(message.node):
            log.info("cluster %s: node %s left", self.node_id, message.node)
            self._poke_control()

    # ---- shards ------------------------------------------------------------------------------

    def _on_delivery(self, shard: _Shard, sub: ShardSubscription, delivery: Delivery) -> None:
        if shard.sub is not sub or shard.releasing:
            return  # not ours any more: closing the channel gives it back
        try:
            envelopes = decode_batch(delivery.body)
        except CodecError as exc:
            log.warning(
                "cluster %s: unreadable frame on shard %d, dead-lettered: %s",
                self.node_id,
                shard.n,
                exc,
            )
            self._stats["dead_lettered"] += 1
            sub.nack(delivery.tag, requeue=False)
            return
        self._stats["frames_received"] += 1
        self._stats["envelopes_received"] += len(envelopes)
        if delivery.redelivered:
            self._stats["redelivered"] += 1
        if self._meters is not None:
            self._meters.consumed(len(envelopes), redelivered=delivery.redelivered)
        shard.active = True
        if not shard.primary and not shard.yield_requested:
            self._check_yield(shard)
        frame = _Frame(shard, sub, delivery.tag, len(envelopes) + 1)
        shard.frames.append(frame)
        seen = self._seen
        for envelope in envelopes:
            eid = envelope.id
            if eid in seen.current or eid in seen.previous:  # ``eid in seen``, inlined
                self._stats["duplicates"] += 1
                self._settle(frame, None)
                continue
            self._dispatch(shard, frame, envelope)
        self._settle(frame, None)  # the +1 above: the frame is complete

    def _dispatch(self, shard: _Shard, frame: _Frame, envelope: Envelope) -> None:
        kind_name = envelope.target.partition("/")[0]
        kind = self.kinds.get(kind_name)
        try:
            if kind is None:
                raise CodecError(f"no entity kind {kind_name!r} is registered on this node")
            message = self.catalog.decode(envelope)
        except CodecError as exc:
            log.warning(
                "cluster %s: message for %s dead-lettered: %s", self.node_id, envelope.target, exc
            )
            self._stats["dead_lettered"] += 1
            self._poison(envelope)
            self._settle(frame, envelope.id)
            return
        handler = shard.handlers.get(kind_name)
        if handler is None:
            handler = self.system.spawn(
                lambda: kind.handler(shard.n),
                name=f"shard-{shard.n}-{kind_name}-{next(self._handler_gen)}",
                mailbox_capacity=max(10_000, self.config.prefetch * self.config.batch_size * 2),
            )
            shard.handlers[kind_name] = handler
        sender = self._sender_ref(envelope.sender)
        if kind.replies(message):
            self._deliver(handler, message, envelope, _Receipt(self, frame, envelope.id, sender))
        else:
            self._deliver(handler, message, envelope, sender)
            self._settle(frame, envelope.id)

    def _poison(self, envelope: Envelope) -> None:
        from mailslot.wire import encode_batch

        self._out.append(Batch("d", encode_batch([envelope]), 0))
        self._poke_publisher()

    def _settle(self, frame: _Frame, envelope_id: bytes | None) -> None:
        if envelope_id is not None:
            self._seen.add(envelope_id)
        frame.remaining -= 1
        if frame.remaining > 0:
            return
        frame.done = True
        shard = frame.shard
        frames = shard.frames
        last = None
        while frames and frames[0].done:
            last = frames.popleft()
        if last is not None and shard.sub is last.sub and not last.sub.closed:
            last.sub.ack(last.tag, multiple=True)

    def _check_settle_timeouts(self) -> None:
        now = time.monotonic()
        limit = self.config.settle_timeout
        for shard in self._shards.values():
            frames = shard.frames
            if not frames or shard.sub is None:
                continue
            stuck = [f for f in frames if not f.done and now - f.born > limit]
            for frame in stuck:
                log.warning(
                    "cluster %s: shard %d frame %d not settled in %gs, requeued",
                    self.node_id,
                    shard.n,
                    frame.tag,
                    limit,
                )
                self._stats["requeued"] += 1
                frames.remove(frame)
                frame.remaining = 1 << 30  # later settles of it change nothing
                if not frame.sub.closed:
                    frame.sub.nack(frame.tag, requeue=True)
            if stuck:
                last = None
                while frames and frames[0].done:
                    last = frames.popleft()
                if last is not None and not last.sub.closed:
                    last.sub.ack(last.tag, multiple=True)

    def _check_yield(self, shard: _Shard) -> None:
        """Active on a shard whose primary is another live node: hand it over (once a while)."""
        primary = self._table.get(shard.n, (self.node_id, None))[0]
        if (
            primary != self.node_id
            and primary in self.membership.live
            and time.monotonic() >= shard.yield_after
        ):
            shard.yield_requested = True
            self._poke_control()

    async def _subscribe(self, n: int) -> None:
        shard = self._shards.get(n)
        if shard is None:
            shard = self._shards[n] = _Shard(n)
        holder: list[ShardSubscription] = []

        def on_delivery(delivery: Delivery) -> None:
            if holder:
                self._on_delivery(shard, holder[0], delivery)
            else:
                pending.append(delivery)

        pending: list[Delivery] = []
        try:
            sub = await self.transport.subscribe_shard(
                n, on_delivery, prefetch=self.config.prefetch
            )
        except TransportError:
            if shard.sub is None and not shard.handlers and self._shards.get(n) is shard:
                del self._shards[n]  # not consumed: the next rebalance subscribes again
            raise
        holder.append(sub)
        shard.sub = sub
        shard.active = False
        shard.frames = deque()
        for delivery in pending:
            self._on_delivery(shard, sub, delivery)

    async def _stop_handlers(self, shard: _Shard) -> None:
        handlers = list(shard.handlers.values())
        shard.handlers.clear()
        await asyncio.gather(
            *(self.system.stop(h, drain=False) for h in handlers), return_exceptions=True
        )

    async def _release(self, n: int) -> None:
        """Hand shard ``n`` over: stop its handlers (commits finish), then close its channel."""
        shard = self._shards.get(n)
        if shard is None:
            return
        shard.releasing = True
        self._stats["handovers"] += 1
        await self._stop_handlers(shard)
        sub = shard.sub
        shard.sub = None
        if sub is not None and not sub.closed:
            with contextlib.suppress(TransportError):
                await sub.close()
        if self._shards.get(n) is shard:
            del self._shards[n]

    async def _fence(self) -> None:
        """The connection is gone: stop every shard handler now (someone else may take over)."""
        shards = list(self._shards.values())
        self._shards.clear()
        for shard in shards:
            shard.releasing = True
            shard.sub = None
        self._log_consuming(frozenset())  # so that consuming them again is logged too
        await asyncio.gather(*(self._stop_handlers(s) for s in shards), return_exceptions=True)

    async def _rebalance(self) -> None:
        live = self.membership.live
        if not self.config.hosts_shards:
            live = live - {self.node_id}
        if self.membership.version != self._table_version:
            self._table = assignment(live, self.shards)
            self._table_version = self.membership.version
        table = self._table
        primary, standby = roles(self.node_id, table)
        wanted = primary | standby if self.config.hosts_shards else frozenset()
        for n in sorted(set(self._shards) - wanted):
            await self._release(n)
        now = time.monotonic()
        for n in sorted(wanted):
            shard = self._shards.get(n)
            if shard is None:
                await self._subscribe(n)
                self._shards[n].primary = n in primary
                continue
            shard.primary = n in primary
            if shard.active and not shard.primary:
                self._check_yield(shard)
            if (
                shard.yield_requested
                and n not in primary
                and table[n][0] in live
                and not shard.releasing
            ):
                await self._release(n)  # to the back of the line: the primary goes first
                await self._subscribe(n)
                self._shards[n].yield_after = now + 2 * self.config.node_timeout
                self._shards[n].primary = False
        self._log_consuming(primary)

    def _log_consuming(self, primary: frozenset[int]) -> None:
        """Log the shards this node consumes when they changed since they were last logged."""
        consuming = self.owned_shards()
        if consuming != self._consuming_logged:
            self._consuming_logged = consuming
            log.info(
                "cluster %s: consuming %d shards, %d as primary",
                self.node_id,
                len(consuming),
                len(consuming & primary),
            )

    # ---- connection --------------------------------------------------------------------------

    async def _connect(self) -> None:
        await self.transport.connect(
            self.node_id, on_node_message=self._on_node_message, on_lost=self._on_lost
        )
        for key in list(self._bound):
            await self.transport.bind_event(key)
        self._connected = True
        self._poke_publisher()

    def _on_lost(self, exc: BaseException | None) -> None:
        if not self._connected:
            return
        log.warning("cluster %s: broker connection lost: %r", self.node_id, exc)
        self._connected = False
        self._fence_needed = True
        for shard in self._shards.values():
            shard.releasing = True
        self._poke_control()

    async def _control(self, join_wait: float) -> None:
        """Membership ticks, heartbeats, rebalancing, settle timeouts, fencing, reconnection."""
        loop = asyncio.get_running_loop()
        interval = self.config.heartbeat_interval
        started = loop.time()
        delay = self.config.reconnect_delay
        while True:
            if self._fence_needed:
                self._fence_needed = False
                await self._fence()
                for listener in self._lost_listeners:
                    try:
                        listener()
                    except Exception:  # a listener's bug must not stop the node
                        log.exception("cluster %s: lost-connection listener failed", self.node_id)
            if not self._connected:
                try:
                    with contextlib.suppress(TransportError):
                        await self.transport.close()
                    await self._connect()
                except TransportError as exc:
                    log.info(
                        "cluster %s: reconnect failed (%s); retrying in %.1fs",
                        self.node_id,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.config.max_reconnect_delay)
                    continue
                delay = self.config.reconnect_delay
                self._stats["reconnects"] += 1
                log.info("cluster %s: reconnected", self.node_id)
                self._heartbeat()
                self._control_dirty = True
            now = time.monotonic()
            if now - self._last_heartbeat >= interval:
                self._heartbeat()
            if self.membership.tick(now):
                self._control_dirty = True
                log.info(
                    "cluster %s: live nodes now %s", self.node_id, sorted(self.membership.live)
                )
            if self._control_dirty and loop.time() - started >= join_wait and not self._stopping:
                self._control_dirty = False
                try:
                    await self._rebalance()
                except TransportError as exc:
                    # a shard queue may not be back yet after a broker restart (no leader): try
                    # again at the next tick, or its shard stays unconsumed until the membership
                    # changes
                    self._control_dirty = True
                    log.info("cluster %s: rebalance failed (retrying): %r", self.node_id, exc)
            self._check_settle_timeouts()
            if (
                self._meters is not None
                and self._connected
                and not self._lag_running
                and now - self._lag_at >= self.config.lag_interval
            ):
                self._lag_at = now
                self._lag_running = True
                self._spawn_task(self._refresh_lag(), "lag")
            waker = self._wake_control = loop.create_future()
            timeout = min(interval, self.config.settle_timeout) / 2
            if loop.time() - started < join_wait:
                timeout = min(timeout, join_wait - (loop.time() - started) + 0.001)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waker
            self._wake_control = None

    async def _refresh_lag(self) -> None:
        """The consumer-lag gauges: messages ready in each shard queue this node consumes."""
        try:
            depths = await self.transport.queue_depths()
        except TransportError as exc:
            log.info("cluster %s: queue depths unavailable: %r", self.node_id, exc)
            return
        finally:
            self._lag_running = False
        if self._meters is not None:
            names = self.transport.names
            self._meters.lag(depths, {names.shard(n) for n in self.owned_shards()})

    def _spawn_task(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"cluster-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("cluster %s: task %s failed", self.node_id, task.get_name(), exc_info=exc)


class _ControlRef(ActorRef):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(CONTROL_PATH, 0)


_CONTROL_REF: Final = _ControlRef()
