"""The hub: which sessions of this node subscribe to which documents, and the fan-out to them.

Theory of operation: subscriptions belong to the node that holds the client connections, not to
the document actor, so that a document actor can restart, passivate or move to another node
without losing its subscribers. A session tells the hub :class:`HubSubscribe` before it asks the
document for a snapshot; a document publishes each committed op once (:class:`Publish`, the frame
already encoded) and the hub tells every subscribed session except the author. In a cluster each
gateway node has its own hub, fed by the node's binding on the document's topic.

Broadcasts are droppable: a session that cannot keep up loses a broadcast (a dead letter,
counted), and its client heals the gap by fetching when it sees the next op, as ShareDB clients
do; such a session is also closed by its own outbound limit.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from mailslot.collab.document import Publish
from mailslot.collab.protocol.docs import OpBroadcast
from mailslot.errors import MailboxFull
from mailslot.runtime import Actor, ActorRef, Terminated

__all__ = ["Hub", "HubStatistics", "HubSubscribe", "HubUnsubscribe"]

log = logging.getLogger("mailslot.collab.hub")


class HubSubscribe(msgspec.Struct, frozen=True):
    """The sender wants every op of ``c/d``."""

    c: str
    d: str


class HubUnsubscribe(msgspec.Struct, frozen=True):
    """The sender no longer wants ``c/d``."""

    c: str
    d: str


class HubStatistics(msgspec.Struct, frozen=True):
    documents: int
    sessions: int
    subscriptions: int
    published: int
    delivered: int


class Hub(Actor):
    """Subscriptions of one node's sessions, and the fan-out of published ops."""

    mailbox_capacity = 100_000

    def __init__(self) -> None:
        self.subscribers: dict[tuple[str, str], dict[str, ActorRef]] = {}
        self.sessions: dict[ActorRef, set[tuple[str, str]]] = {}
        self.published = 0
        self.delivered = 0

    def receive(self, message: Any) -> None:
        if isinstance(message, Publish):
            self.publish(message)
        elif isinstance(message, HubSubscribe):
            self.subscribe(message.c, message.d, self.context.sender)
        elif isinstance(message, HubUnsubscribe):
            self.unsubscribe(message.c, message.d, self.context.sender)
        elif isinstance(message, Terminated):
            self.forget(message.actor)
        else:
            self.context.unhandled(message)

    def publish(self, p: Publish) -> None:
        self.published += 1
        subs = self.subscribers.get((p.c, p.d))
        me = self.context.self
        author = p.author
        if subs:
            broadcast = OpBroadcast(c=p.c, d=p.d, v=p.v, src=p.src, frame=p.frame, wire=p.wire)
            for path, ref in subs.items():
                if path != author:
                    ref.tell(broadcast, me)
                    self.delivered += 1
        if p.ack is not None and p.ack_to is not None:
            # after the broadcast, and after every earlier op of this document this hub passed
            # on: a subscribed author has seen the ops it missed; anyone else gets them here
            ack = p.ack
            if not (subs and author in subs) and p.missed:
                ack = msgspec.structs.replace(ack, frames=p.missed)
            try:
                p.ack_to.tell(ack, me)
            except MailboxFull:
                log.warning("%s cannot take its ack: its mailbox is full", p.ack_to)

    def subscribe(self, c: str, d: str, session: ActorRef | None) -> None:
        if session is None:
            return
        self.subscribers.setdefault((c, d), {})[session.path] = session
        docs = self.sessions.get(session)
        if docs is None:
            docs = self.sessions[session] = set()
            self.context.watch(session)
        docs.add((c, d))

    def unsubscribe(self, c: str, d: str, session: ActorRef | None) -> None:
        if session is None:
            return
        subs = self.subscribers.get((c, d))
        if subs is not None:
            subs.pop(session.path, None)
            if not subs:
                del self.subscribers[(c, d)]
        docs = self.sessions.get(session)
        if docs is not None:
            docs.discard((c, d))

    def forget(self, session: ActorRef) -> None:
        for c, d in self.sessions.pop(session, ()):
            subs = self.subscribers.get((c, d))
            if subs is not None:
                subs.pop(session.path, None)
                if not subs:
                    del self.subscribers[(c, d)]

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            documents=len(self.subscribers),
            sessions=len(self.sessions),
            subscriptions=sum(len(s) for s in self.subscribers.values()),
            published=self.published,
            delivered=self.delivered,
        )
