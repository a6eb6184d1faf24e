"""The collaboration service on a cluster: documents as a sharded entity kind, hubs fed by topics.

Theory of operation
-------------------
On one node (``mailslot serve`` without ``--broker``) sessions talk to a local
:class:`~mailslot.collab.document.DocumentManager` and a local :class:`~mailslot.collab.hub.Hub`.
On a cluster the same actors are wired through a :class:`~mailslot.cluster.node.ClusterNode`,
with no change to them:

- The sessions' "manager" is the entity ref of kind ``docs``: a request for ``c/d`` goes to the
  queue of the shard of ``docs/c/d``. The node consuming that shard hands it to the shard's own
  ``DocumentManager`` (one per shard, so handing a shard over stops exactly its documents), which
  runs the ``DocumentActor``. The session's ref travels as the sender, so the reply goes straight
  back to the session's node. Every document request except ``UnsubscribeDoc`` gets exactly one
  reply, sent after its effect is durable (an op's ack follows its group commit), and that reply
  settles the shard delivery (see :mod:`mailslot.cluster.node`).
- A document's ``Publish`` goes to the topic ``doc.<c>/<d>`` and arrives at ``/user/hub`` of every
  node bound to it. A node binds a document's topic when its first session subscribes to it (the
  :class:`ClusterHubRef` the sessions use does it, before their subscribe request is published)
  and unbinds it after the last one leaves.
- When the broker connection is lost, the node closes its client sessions (:class:`CloseSessions`);
  the clients reconnect (to this node or another), resubscribe at their versions and resend their
  unacknowledged ops, which the documents recognise by ``(src, seq)``.

- Presence is not a sharded entity: every node runs its presence manager for its own sessions,
  and a channel's frames caused by local sessions go to the same channel on the other nodes on
  the topic ``presence.<ch>`` (:class:`~mailslot.collab.peers.Peers`). Presence is
  droppable and needs no single owner, so a cursor move costs one broker hop and no store write.
- Notifications: the document actor that commits a mention tells its own node's notification
  manager, whose dispatcher stores it (the inbox id is derived from the cause, so a redelivered
  op stores nothing twice); the live frame goes to the user's sessions on that node and, on the
  topic ``user.<name>``, to the user's dispatchers on the nodes where it has sessions
  (:class:`~mailslot.collab.peers.Peers`).

More entity kinds plug in the same way: register an :class:`~mailslot.cluster.node.EntityKind`
(key function, per-shard handler factory, which messages get a reply) and the message registry
of their protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from mailslot.cluster.node import ClusterNode, EntityKind
from mailslot.cluster.transport import Transport
from mailslot.collab.document import DocumentConfig, DocumentManager, Publish
from mailslot.collab.gateway import Gateway, SocketClosed
from mailslot.collab.hub import HubSubscribe, HubUnsubscribe
from mailslot.collab.notify import UserFrame
from mailslot.collab.peers import Peers
from mailslot.collab.presence import PresenceManager, PresenceRelay
from mailslot.collab.protocol.docs import (
    DocError,
    DocOps,
    DocSnapshot,
    OpAcked,
    OpBroadcast,
    SnapshotAt,
    SubmitOp,
    SubscribeDoc,
    UnsubscribeDoc,
)
from mailslot.runtime import ActorRef
from mailslot.runtime import Envelope as LocalEnvelope
from mailslot.store import GroupCommitter, Store
from mailslot.wire import MessageRegistry

__all__ = [
    "DOC_MESSAGES",
    "HUB_MESSAGES",
    "MEMORY_BROKER",
    "NOTIFY_MESSAGES",
    "PRESENCE_MESSAGES",
    "CloseSessions",
    "ClusterGateway",
    "ClusterHubRef",
    "default_node_id",
    "doc_topic",
    "docs_kind",
    "join_cluster",
    "on_lost_close_sessions",
    "presence_topic",
    "user_topic",
]

DOC_MESSAGES = MessageRegistry("collab.docs")
for _cls in (
    SubscribeDoc,
    UnsubscribeDoc,
    SubmitOp,
    SnapshotAt,
    DocSnapshot,
    DocOps,
    OpAcked,
    DocError,
    OpBroadcast,
):
    DOC_MESSAGES.register(_cls)

HUB_MESSAGES = MessageRegistry("collab.hub")
HUB_MESSAGES.register(Publish)

PRESENCE_MESSAGES = MessageRegistry("collab.presence")
PRESENCE_MESSAGES.register(PresenceRelay)

NOTIFY_MESSAGES = MessageRegistry("collab.notify")
NOTIFY_MESSAGES.register(UserFrame)

MEMORY_BROKER = "memory://"
"""``--broker memory://``: the cluster wiring over the in-process transport, in one process."""

HUB_PATH = "/user/hub"
PRESENCE_PATH = "/user/presence"
NOTIFY_PATH = "/user/notify"


def _topic(kind: str, name: str) -> str:
    """``<kind>.<name>``, or a hash of the name when that is over AMQP's 255 bytes."""
    key = f"{kind}.{name}"
    if len(key.encode()) <= 255:
        return key
    return f"{kind}.h." + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()


def doc_topic(c: str, d: str) -> str:
    """The events routing key of a document's broadcasts (at most 255 bytes, as AMQP wants)."""
    return _topic("doc", f"{c}/{d}")


def presence_topic(ch: str) -> str:
    """The events routing key of a presence channel's relays between nodes."""
    return _topic("presence", ch)


def user_topic(user: str) -> str:
    """The events routing key of the live notification frames of one user's sessions."""
    return _topic("user", user)


def _doc_key(message: Any) -> str:
    return f"{message.c}/{message.d}"


def _publish_topic(message: Any) -> str:
    return doc_topic(message.c, message.d)


def docs_kind(
    node: ClusterNode, *, store: Store, committer: GroupCommitter, config: DocumentConfig
) -> EntityKind:
    """The ``docs`` entity kind: one ``DocumentManager`` per shard, publishing to topics."""
    hub = node.topic_ref(_publish_topic, HUB_PATH)
    # acks go straight to the session: a topic does not order them after the document's ops
    config = dataclasses.replace(config, acks_via_hub=False)

    def handler(shard: int) -> DocumentManager:
        return DocumentManager(store=store, committer=committer, hub=hub, config=config)

    return EntityKind(
        "docs",
        key_of=_doc_key,
        handler=handler,
        replies=lambda message: not isinstance(message, UnsubscribeDoc),
    )


class ClusterHubRef(ActorRef):
    """The hub as sessions see it on a cluster: the local hub, plus the node's topic bindings."""

    __slots__ = ("_hub", "_node")

    def __init__(self, node: ClusterNode, hub: ActorRef) -> None:
        super().__init__(hub.path, hub._uid)
        self._node = node
        self._hub = hub

    def _bindings(self, message: Any, sender: ActorRef | None) -> None:
        if sender is None:
            return
        if isinstance(message, HubSubscribe):
            self._node.subscribe_topic(doc_topic(message.c, message.d), sender.path)
        elif isinstance(message, HubUnsubscribe):
            self._node.unsubscribe_topic(doc_topic(message.c, message.d), sender.path)

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        self._bindings(message, sender)
        self._hub.tell(message, sender)

    def send(self, message: Any, *, sender: ActorRef | None = None) -> Awaitable[None]:
        self._bindings(message, sender)
        return self._hub.send(message, sender=sender)

    async def ask(self, message: Any, *, timeout: float) -> Any:
        return await self._hub.ask(message, timeout=timeout)

    def deliver(self, message: Any, envelope: LocalEnvelope) -> None:
        self._bindings(message, envelope.sender)
        self._hub.deliver(message, envelope)


class CloseSessions(msgspec.Struct, frozen=True):
    """Close every client session of this node (their clients reconnect and resynchronise)."""


class ClusterGateway(Gateway):
    """The gateway, plus :class:`CloseSessions` (sent when the broker connection is lost)."""

    def receive(self, message: Any) -> None:
        if isinstance(message, CloseSessions):
            for session in self.context.children:
                session.tell(SocketClosed(), self.context.self)
            return
        super().receive(message)


def on_lost_close_sessions(gateway: ActorRef) -> Callable[[], None]:
    """A ``ClusterNode.on_lost`` listener that closes the gateway's sessions."""

    def listener() -> None:
        gateway.tell(CloseSessions())

    return listener


async def join_cluster(node: Any) -> ClusterNode:
    """Wire a ``mailslot.server.Node`` (store, committer, hub already up) into its cluster.

    Sets ``node.cluster``, ``node.notifier``, ``node.manager`` (the ``docs`` entity ref),
    ``node.presence`` and ``node.gateway``. Presence and live notifications reach the other
    nodes through topics (see :mod:`mailslot.collab.presence` and :mod:`mailslot.collab.notify`).

    Raises:
        TransportError: the broker cannot be reached.
        ConfigError: a bad broker URL, node id or shard count.
    """
    from mailslot.cluster.node import ClusterConfig
    from mailslot.cluster.transport import MemoryBroker, MemoryTransport, Names, QueueSettings

    config = node.config
    node_id = config.node_id or default_node_id()
    names = Names(config.cluster_prefix)
    settings = QueueSettings(shards=config.shards)
    transport: Transport
    if config.broker == MEMORY_BROKER:
        # the in-process transport: the whole cluster stack in one process, no broker
        transport = MemoryTransport(MemoryBroker(settings), names)
    else:
        from mailslot.cluster.amqp import AmqpTransport

        transport = AmqpTransport(config.broker, names=names, settings=settings)
    cluster = ClusterNode(
        node.system,
        transport,
        ClusterConfig(node_id=node_id),
        registries=[DOC_MESSAGES, HUB_MESSAGES, PRESENCE_MESSAGES, NOTIFY_MESSAGES],
        instrumentation=node.obs.instrumentation,
        meters=node.obs.meters,
    )
    notifier = node.start_notifier(
        Peers(
            ref=cluster.topic_ref(lambda m: user_topic(m.user), NOTIFY_PATH),
            origin=node_id,
            bind=lambda user: cluster.subscribe_topic(user_topic(user), f"notify:{user}"),
            unbind=lambda user: cluster.unsubscribe_topic(user_topic(user), f"notify:{user}"),
        )
    )
    cluster.register_kind(
        docs_kind(cluster, store=node.store, committer=node.committer, config=node.config.documents)
    )
    await cluster.start()
    node.cluster = cluster
    manager = node.manager = cluster.entity_ref("docs")
    hub = ClusterHubRef(cluster, node.hub)
    peers = Peers(
        ref=cluster.topic_ref(lambda m: presence_topic(m.ch), PRESENCE_PATH),
        origin=node_id,
        bind=lambda ch: cluster.subscribe_topic(presence_topic(ch), f"presence:{ch}"),
        unbind=lambda ch: cluster.unsubscribe_topic(presence_topic(ch), f"presence:{ch}"),
    )
    presence_config = config.presence
    presence = node.presence = node.system.spawn(
        lambda: PresenceManager(hub=hub, documents=manager, config=presence_config, peers=peers),
        name="presence",
        mailbox_capacity=presence_config.mailbox,
    )
    gateway_config = config.gateway
    node.gateway = node.system.spawn(
        lambda: ClusterGateway(
            manager=manager,
            hub=hub,
            presence=presence,
            notifier=notifier,
            config=gateway_config,
        ),
        name="gateway",
    )
    cluster.on_lost(on_lost_close_sessions(node.gateway))
    return cluster


def default_node_id() -> str:
    """``<host>-<pid>``, with characters a node id may not have replaced by ``-``."""
    import os
    import re
    import socket

    host = re.sub(r"[^A-Za-z0-9._~:@+=-]", "-", socket.gethostname())[:100] or "node"
    return f"{host}-{os.getpid()}"
