"""Presence: who is in which document and where their cursor is, as ShareDB 7 serves it.

Theory of operation
-------------------
A :class:`PresenceManager` per node routes presence traffic from the sessions to one
:class:`PresenceActor` per channel (ShareDB's ``ch``; a document's channel is ``"<c>.<d>"``),
creating it on first use and stopping it when nobody is left in it.

*Protocol* (ShareDB's agent.js): ``ps`` subscribes the session to the channel (reply ``ps`` with
its ``seq``), then every *other* subscriber's client is asked to re-send its presence (``pr``). A
``p`` update gets ``src`` (the sender's connection id) added and goes to every subscriber; the
sender's copy is its acknowledgement (it gets one even when not subscribed). ``p: null`` is a
leave. ``pu`` unsubscribes (reply ``pu``) and, as in ShareDB, the session's presences in that
channel leave. A client's ``pr`` asks the other subscribers to re-send.

*Old versions.* A ``p`` carries the document version ``v`` its range was made against. The
channel actor follows the document: it subscribes to the node's :class:`~mailslot.collab.hub.Hub`
for ``c/d`` and keeps the last ``tail`` committed ops by version. An update behind the latest
version is moved forward past the ops since (``transform_selection`` with ``is_own_op`` when the
op came from the same connection, as rich-text's ``transformPresence``; a create or a delete
clears it), and goes out at the latest version. Ops it does not hold (a fresh actor, an update
far behind, a broadcast dropped under load) are read from the document actor (``SubscribeDoc``
with ``v``, which answers the ops since); updates wait for that read, coalesced per id.

*Load.* Both actors have coalescing mailboxes: of several updates of one presence id still
queued, only the latest is kept (it takes the place of the first). Updates and ``pr`` are
droppable (:class:`PresenceIn`), subscribes and unsubscribes are not (:class:`PresenceControl`);
frames to the client (:class:`~mailslot.collab.protocol.docs.Push`) are droppable. Nothing here is
on the op path: a document never waits for presence.

*On a cluster* every node runs its own manager for its own sessions, and the channels of one
document on different nodes see each other through :class:`Peers`: whatever a channel
sends its subscribers because of one of its own sessions (an update, a leave, a ``pr``) also goes
to the others as a :class:`PresenceRelay` (a topic per channel, bound while the channel has local
subscribers), and a relay from another node goes to the local subscribers as it is. Presence is
droppable and has no single owner to agree on, so it does not ride the shard queues: a cursor
moves with one broker hop and no store write. Versions: a relayed update carries the version it
was moved to on its own node; the receiving clients catch up with it as ShareDB clients do.

*Leaving.* The manager watches every session that subscribed: when one stops (its socket closed)
each of its presences leaves (``p: null`` to the others). *Heartbeats*: the WebSocket transport
pings every client (uvicorn, 20 s) and closes a socket whose pong does not come, so a vanished
peer leaves within about 40 s. A client that sends ShareDB pings (``pp``; mailslot's page sends one
every 15 s) is also held to them: when ``heartbeat_timeout`` passes without a ping or an update
from it, its presences leave, even though its socket looks open (a frozen tab, a suspended phone).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import msgspec

from mailslot.collab import ot
from mailslot.collab.hub import HubSubscribe, HubUnsubscribe
from mailslot.collab.peers import Peers
from mailslot.collab.protocol.docs import DocError, DocOps, OpBroadcast, Push, SubscribeDoc
from mailslot.collab.protocol.messages import (
    Ping,
    PresenceRequest,
    PresenceSubscribe,
    PresenceUnsubscribe,
    PresenceUpdate,
    encode,
)
from mailslot.collab.protocol.session import PresenceCommand
from mailslot.errors import MailboxFull, OTError
from mailslot.meters import Meters
from mailslot.runtime import Actor, ActorRef, Coalescing, Terminated

__all__ = [
    "PresenceActor",
    "PresenceConfig",
    "PresenceControl",
    "PresenceIn",
    "PresenceManager",
    "PresenceRelay",
    "PresenceStatistics",
    "presence_message",
    "transform_presence",
]

log = logging.getLogger("mailslot.collab.presence")


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    """Tuning for presence.

    Args:
        tail: committed ops each channel keeps to move old presences forward.
        heartbeat_timeout: seconds without a ping or an update after which the presences of a
            session that sends pings leave.
        mailbox: capacity of each channel's (and the manager's) coalescing mailbox.
        max_waiting: updates held per channel while ops are read from the document.
        meters: where updates, transforms, leaves and drops are counted.
    """

    tail: int = 256
    heartbeat_timeout: float = 45.0
    mailbox: int = 10_000
    max_waiting: int = 1000
    meters: Meters | None = None


class PresenceIn(msgspec.Struct, frozen=True):
    """A droppable presence message from a session: ``p``, ``pr``, or a ping (heartbeat).

    ``owed``: the presence versions (``pv``) of earlier updates of the same presence that this
    one replaced in a mailbox (see :func:`_merge`); each is still acknowledged to its sender.
    """

    __mailslot_droppable__: ClassVar[bool] = True

    request: PresenceUpdate | PresenceRequest | Ping
    src: str
    owed: tuple[int, ...] = ()


class PresenceControl(msgspec.Struct, frozen=True):
    """A subscribe or unsubscribe from a session (never dropped: the client awaits the reply)."""

    request: PresenceSubscribe | PresenceUnsubscribe
    src: str


class PresenceRelay(msgspec.Struct, frozen=True, tag="collab.presence.relay"):
    """A frame for every subscriber of channel ``ch`` on the other nodes (droppable).

    Attributes:
        ch: the channel.
        frame: the encoded ``p`` or ``pr`` frame, as this node's subscribers got it.
        origin: the node it comes from (a node skips its own).
    """

    __mailslot_droppable__: ClassVar[bool] = True

    ch: str
    frame: str
    origin: str


def presence_message(command: PresenceCommand) -> PresenceIn | PresenceControl:
    """What a session tells the presence manager for one of its protocol effects."""
    request = command.request
    if isinstance(request, PresenceSubscribe | PresenceUnsubscribe):
        return PresenceControl(request, command.src)
    return PresenceIn(request, command.src)


class _SessionGone(msgspec.Struct, frozen=True):
    session: Any


class _Heartbeat(msgspec.Struct, frozen=True):
    __mailslot_droppable__: ClassVar[bool] = True
    session: Any


class _Expire(msgspec.Struct, frozen=True):
    pass


@dataclass(frozen=True, slots=True)
class PresenceStatistics:
    """A channel's state."""

    channel: str
    subscribers: int
    presences: int
    version: int | None
    waiting: int


def _key(message: Any) -> Hashable | None:
    """Coalescing key: the latest update per presence id (and one heartbeat per session)."""
    if isinstance(message, PresenceIn):
        r = message.request
        if isinstance(r, PresenceUpdate):
            return ("p", r.ch, message.src, r.id)
        if isinstance(r, PresenceRequest):
            return ("pr", r.ch, message.src)
    if isinstance(message, _Heartbeat):
        return ("hb", message.session)
    return None


def _merge(older: Any, newer: Any) -> Any:
    """What stays queued when ``newer`` has the key of the unhandled ``older`` (see ``_key``).

    The newer value of a presence stands, but a ShareDB client waits for the acknowledgement
    of every update it submitted (each by its ``pv``), so the older one's is owed. For the rest
    (``pr``, heartbeats) the newer one is all that matters.
    """
    if (
        isinstance(older, PresenceIn)
        and isinstance(newer, PresenceIn)
        and isinstance(older.request, PresenceUpdate)
    ):
        pv = older.request.pv
        owed = older.owed if pv is None else (*older.owed, pv)
        return PresenceIn(newer.request, newer.src, owed + newer.owed)
    return newer


def transform_presence(
    presence: dict[str, Any], ops: list[tuple[str, Any]], *, src: str
) -> dict[str, Any]:
    """``presence`` (a ``p`` message) moved past ``ops`` (``(src, op)``; ``None`` for a create or
    a delete), with ``v`` advanced by one per op, as ShareDB's ``ot.transformPresence``.

    Raises:
        OTError: ``p`` is not a selection the text type can move.
    """
    p = presence.get("p")
    for op_src, op in ops:
        if p is None:
            break
        p = None if op is None else ot.transform_selection(p, op, op_src == src)
    return {**presence, "p": p, "v": presence["v"] + len(ops)}


@dataclass(slots=True)
class _Entry:
    """The latest presence ``frame`` a session sent under one id."""

    session: ActorRef
    message: dict[str, Any]


@dataclass(slots=True)
class _Subscriber:
    src: str
    seen: float
    pings: bool = False
    ids: set[str] = field(default_factory=set)


def _frame(message: dict[str, Any]) -> str:
    return encode(message).decode()


def _decode_op(frame: str) -> tuple[int, str, Any]:
    m = msgspec.json.decode(frame)
    return m["v"], m.get("src", ""), m.get("op") if "op" in m else None


class PresenceActor(Actor):
    """One presence channel (see the module docstring)."""

    mailbox = Coalescing(_key, _merge)

    def __init__(
        self,
        ch: str,
        *,
        hub: ActorRef | None,
        documents: ActorRef | None,
        config: PresenceConfig,
        peers: Peers | None = None,
    ) -> None:
        self.ch = ch
        self.hub = hub
        self.documents = documents
        self.config = config
        self.peers = peers
        self.meters = config.meters
        self.subscribers: dict[ActorRef, _Subscriber] = {}
        self.presences: dict[tuple[ActorRef, str], _Entry] = {}
        self.doc: tuple[str, str] | None = None
        self.version: int | None = None
        self.ops: dict[int, tuple[str, Any]] = {}
        self.waiting: dict[tuple[ActorRef, str], tuple[dict[str, Any], str]] = {}
        self.reading: tuple[int, int] | None = None  # (tag, from version)
        self.tags = itertools.count(1)

    # ---- dispatch ----------------------------------------------------------------------------

    def receive(self, message: Any) -> None:
        sender = self.context.sender
        if isinstance(message, PresenceIn) and sender is not None:
            self.touch(sender, message.src)
            r = message.request
            if isinstance(r, PresenceUpdate):
                self.update(sender, message.src, r, message.owed)
            elif isinstance(r, PresenceRequest):
                self.request_presence(sender)
        elif isinstance(message, PresenceControl) and sender is not None:
            if isinstance(message.request, PresenceSubscribe):
                self.subscribe(sender, message.src, message.request)
            else:
                self.unsubscribe(sender, message.request)
        elif isinstance(message, PresenceRelay):
            for ref in self.subscribers:
                self.push(ref, message.frame)
        elif isinstance(message, OpBroadcast):
            self.on_op(message)
        elif isinstance(message, DocOps | DocError):
            self.on_read(message)
        elif isinstance(message, _Heartbeat):
            sub = self.subscribers.get(message.session)
            if sub is not None:
                sub.seen = self.now()
                sub.pings = True
                self.arm_expiry()
        elif isinstance(message, _SessionGone):
            self.leave(message.session)
            self.subscribers.pop(message.session, None)
        elif isinstance(message, _Expire):
            self.expire()
        else:
            self.context.unhandled(message)

    def now(self) -> float:
        return self.context.system.clock.now()

    def touch(self, session: ActorRef, src: str) -> None:
        sub = self.subscribers.get(session)
        if sub is not None:
            sub.seen = self.now()

    # ---- subscriptions -----------------------------------------------------------------------

    def subscribe(self, session: ActorRef, src: str, r: PresenceSubscribe) -> None:
        if session not in self.subscribers:
            self.subscribers[session] = _Subscriber(src, self.now())
        self.push(session, _frame({"a": "ps", "ch": self.ch, "seq": r.seq}))
        self.request_presence(session)

    def unsubscribe(self, session: ActorRef, r: PresenceUnsubscribe) -> None:
        self.leave(session)
        self.subscribers.pop(session, None)
        self.push(session, _frame({"a": "pu", "ch": self.ch, "seq": r.seq}))

    def request_presence(self, asker: ActorRef) -> None:
        """Ask every other subscriber's client to re-send its presence (ShareDB's ``pr``)."""
        frame = _frame({"a": "pr", "ch": self.ch})
        for ref in self.subscribers:
            if ref != asker:
                self.push(ref, frame)
        self.relay(frame)

    def leave(self, session: ActorRef) -> None:
        """Every presence of ``session`` in this channel leaves."""
        for (ref, pid), entry in list(self.presences.items()):
            if ref == session:
                del self.presences[(ref, pid)]
                self.waiting.pop((ref, pid), None)
                gone = {**entry.message, "p": None}
                v = gone.get("v")
                if isinstance(v, int) and self.version is not None and v < self.version:
                    # a leave is as current as the document (ShareDB moves it forward too): a
                    # client at a newer version would otherwise wait for ops to catch it up
                    gone["v"] = self.version
                self.broadcast(_frame(gone), session, ack=False)
                if self.meters is not None:
                    self.meters.presence_leaves.inc()

    def arm_expiry(self) -> None:
        if not self.context.is_timer_active("expire"):
            interval = max(self.config.heartbeat_timeout / 3, 0.001)
            self.context.start_periodic_timer("expire", _Expire(), interval)

    def expire(self) -> None:
        deadline = self.now() - self.config.heartbeat_timeout
        pinging = False
        for ref, sub in list(self.subscribers.items()):
            if not sub.pings:
                continue
            if sub.seen <= deadline:
                self.leave(ref)
                sub.pings = False  # its presences are gone; a new ping or update counts again
                if self.meters is not None:
                    self.meters.presence_expired.inc()
            else:
                pinging = True
        if not pinging:
            self.context.cancel_timer("expire")

    # ---- updates -----------------------------------------------------------------------------

    def update(
        self, session: ActorRef, src: str, r: PresenceUpdate, owed: tuple[int, ...] = ()
    ) -> None:
        if self.meters is not None:
            self.meters.presence_updates.inc()
        message: dict[str, Any] = msgspec.to_builtins(r)
        message["a"] = "p"
        message["src"] = src
        message.setdefault("p", None)
        for pv in owed:  # updates this one replaced unhandled: their senders wait for acks
            self.push(session, _frame({**message, "pv": pv}))
        key = (session, r.id)
        if r.p is None:
            self.presences.pop(key, None)
            self.waiting.pop(key, None)
        else:
            self.presences[key] = _Entry(session, message)
            sub = self.subscribers.get(session)
            if sub is not None:
                sub.ids.add(r.id)
        if r.c is not None and r.d is not None and self.doc is None:
            self.follow(r.c, r.d)
        if r.p is None or r.v is None or self.doc != (r.c, r.d):
            self.send_update(session, message)
            return
        self.move_and_send(key, message, src, read=True)

    def move_and_send(
        self, key: tuple[ActorRef, str], message: dict[str, Any], src: str, *, read: bool
    ) -> None:
        session = key[0]
        v: int = message["v"]
        if self.version is None or v < self.version:
            missing = self.version is None or any(i not in self.ops for i in range(v, self.version))
            if missing:
                if read and len(self.waiting) < self.config.max_waiting:
                    self.waiting[key] = (message, src)
                    self.read_ops(v)
                    return
                self.send_update(session, message)  # the clients catch up themselves
                return
            assert self.version is not None
            ops = [self.ops[i] for i in range(v, self.version)]
            try:
                message = transform_presence(message, ops, src=src)
            except OTError as exc:
                log.debug("%s: presence %s not moved: %s", self.ch, message.get("id"), exc)
            else:
                if self.meters is not None:
                    self.meters.presence_transformed.inc()
                if key in self.presences:
                    self.presences[key].message = message
        self.send_update(session, message)

    def send_update(self, session: ActorRef, message: dict[str, Any]) -> None:
        self.broadcast(_frame(message), session, ack=True)

    def broadcast(self, frame: str, sender: ActorRef, *, ack: bool) -> None:
        """``frame`` to every subscriber, and to ``sender`` (its ack) even if it is not one."""
        for ref in self.subscribers:
            if ref != sender:
                self.push(ref, frame)
        if ack:
            self.push(sender, frame)
        self.relay(frame)

    def relay(self, frame: str) -> None:
        """A frame caused by a local session: to the channel's subscribers on the other nodes."""
        peers = self.peers
        if peers is not None:
            peers.ref.tell(PresenceRelay(self.ch, frame, peers.origin), self.context.self)

    def push(self, ref: ActorRef, frame: str) -> None:
        ref.tell(Push(frame), self.context.self)  # droppable: a full session loses it
        if self.meters is not None:
            self.meters.presence_frames.inc()

    # ---- following the document ------------------------------------------------------------

    def follow(self, c: str, d: str) -> None:
        self.doc = (c, d)
        if self.hub is not None:
            self.hub.tell(HubSubscribe(c, d), self.context.self)

    def read_ops(self, v: int) -> None:
        if self.documents is None or self.doc is None:
            return
        if self.reading is not None and self.reading[1] <= v:
            return
        tag = next(self.tags)
        self.reading = (tag, v)
        c, d = self.doc
        self.documents.tell(
            SubscribeDoc(tag=tag, c=c, d=d, v=v, subscribe=False), self.context.self
        )

    def on_read(self, reply: DocOps | DocError) -> None:
        if self.reading is None or reply.tag != self.reading[0]:
            return
        start = self.reading[1]
        self.reading = None
        if isinstance(reply, DocOps):
            end = start
            for frame in reply.frames:
                v, src, op = _decode_op(frame)
                self.ops[v] = (src, op)
                end = max(end, v + 1)
            if self.version is None or end > self.version:
                self.version = end
            self.trim()
        waiting, self.waiting = self.waiting, {}
        for key, (message, src) in waiting.items():
            self.move_and_send(key, message, src, read=False)

    def on_op(self, b: OpBroadcast) -> None:
        if self.doc != (b.c, b.d) or (self.version is not None and b.v < self.version):
            return
        _, src, op = _decode_op(b.frame)
        self.ops[b.v] = (src, op)
        self.version = b.v + 1
        self.trim()

    def trim(self) -> None:
        ops = self.ops
        if len(ops) > self.config.tail and self.version is not None:
            floor = self.version - self.config.tail
            for v in [v for v in ops if v < floor]:
                del ops[v]

    def stopping(self) -> None:
        if self.hub is not None and self.doc is not None:
            self.hub.tell(HubUnsubscribe(*self.doc), self.context.self)

    def statistics(self) -> PresenceStatistics:
        return PresenceStatistics(
            channel=self.ch,
            subscribers=len(self.subscribers),
            presences=len(self.presences),
            version=self.version,
            waiting=len(self.waiting),
        )


class PresenceManager(Actor):
    """Routes presence traffic to one :class:`PresenceActor` per channel (module docstring).

    The manager knows which sessions subscribe to which channel (it sees every ``ps``, ``pu`` and
    the death of every subscriber), so it stops a channel's actor, after it has handled what was
    sent to it, when the last subscriber leaves; the next message for that channel starts a
    fresh one.

    Args:
        hub: the node's hub (channels follow their document's ops through it).
        documents: the document manager (channels read ops they missed from it).
        config: presence tuning.
        peers: on a cluster, the channels of the other nodes (``None`` on one node).
    """

    mailbox = Coalescing(_key, _merge)

    def __init__(
        self,
        *,
        hub: ActorRef | None,
        documents: ActorRef | None,
        config: PresenceConfig | None = None,
        peers: Peers | None = None,
    ) -> None:
        self.hub = hub
        self.documents = documents
        self.config = config or PresenceConfig()
        self.peers = peers
        self.channels: dict[str, ActorRef] = {}
        self.members: dict[str, set[ActorRef]] = {}
        self.sessions: dict[ActorRef, set[str]] = {}
        self.names = itertools.count(1)

    def receive(self, message: Any) -> None:
        sender = self.context.sender
        if isinstance(message, PresenceControl | PresenceIn):
            r = message.request
            if isinstance(r, Ping):
                if sender is not None:
                    for ch in self.sessions.get(sender, ()):
                        self.forward(ch, _Heartbeat(sender), None)
                return
            self.forward(r.ch, message, sender)
            if sender is not None and isinstance(r, PresenceSubscribe):
                self.join(r.ch, sender)
            elif sender is not None and isinstance(r, PresenceUnsubscribe):
                self.part(r.ch, sender)
            self.stop_if_empty(r.ch)
        elif isinstance(message, PresenceRelay):
            child = self.channels.get(message.ch)  # nobody here in that channel: nothing to do
            if child is not None and self.peers is not None and message.origin != self.peers.origin:
                self.forward(message.ch, message, None)
        elif isinstance(message, Terminated):
            for ch in self.sessions.pop(message.actor, set()):
                self.forward(ch, _SessionGone(message.actor), None)
                self.members.get(ch, set()).discard(message.actor)
                self.stop_if_empty(ch)
        else:
            self.context.unhandled(message)

    def join(self, ch: str, session: ActorRef) -> None:
        self.members.setdefault(ch, set()).add(session)
        chans = self.sessions.get(session)
        if chans is None:
            chans = self.sessions[session] = set()
            self.context.watch(session)
        chans.add(ch)

    def part(self, ch: str, session: ActorRef) -> None:
        self.members.get(ch, set()).discard(session)
        chans = self.sessions.get(session)
        if chans is not None:
            chans.discard(ch)

    def forward(self, ch: str, message: Any, sender: ActorRef | None) -> None:
        child = self.channels.get(ch)
        if child is None:
            if isinstance(message, _SessionGone | _Heartbeat):
                return
            child = self.start(ch)
        try:
            child.tell(message, sender)
        except MailboxFull:
            log.warning("presence channel %s is full; %s dropped", ch, type(message).__name__)

    def start(self, ch: str) -> ActorRef:
        if self.peers is not None:
            self.peers.bind(ch)
        ref = self.context.spawn(
            lambda: PresenceActor(
                ch, hub=self.hub, documents=self.documents, config=self.config, peers=self.peers
            ),
            name=f"{quote(ch, safe='')}#{next(self.names)}",
            mailbox_capacity=self.config.mailbox,
        )
        self.channels[ch] = ref
        return ref

    def stop_if_empty(self, ch: str) -> None:
        """Nobody subscribes to ``ch`` any more: its actor handles what it was sent, then stops."""
        if self.members.get(ch):
            return
        self.members.pop(ch, None)
        child = self.channels.pop(ch, None)
        if child is not None:
            self.context.stop(child, drain=True)
            if self.peers is not None:
                self.peers.unbind(ch)
