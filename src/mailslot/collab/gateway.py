"""The WebSocket gateway: one session actor per connection, speaking ShareDB's protocol.

Theory of operation
-------------------
For each accepted WebSocket the gateway makes a :class:`Connection` (the socket side) and a
:class:`SessionActor` (the protocol side, a child of the :class:`Gateway` actor) that owns the
pure :class:`~mailslot.collab.protocol.Session` state machine.

- *Reading.* One reader loop per connection takes frames off the socket and ``await send`` s them
  to the session actor, so a session that is behind makes the reader wait and TCP pushes back on
  the client. When a document (or the document manager) tells the session to slow down, the
  session pauses the reader until it is told to resume: the socket is not read meanwhile.
- *Writing.* When the server gives the connection its transport (``mailslot serve`` does, see
  :class:`DirectSocket`), the session writes each frame straight into the socket's buffer, in its
  own turn: no task and no copy per message, and a broadcast arrives already framed (WebSocket
  frames from a server are not masked, so one ``bytes`` object serves every subscriber). A client
  that stops reading lets that buffer grow; past ``max_outbound_bytes`` it is closed with code
  4008 (``CLOSE_SLOW_CONSUMER``) and resynchronises when it reconnects. On any other ASGI server
  frames go into a bounded queue drained by one writer loop per connection, closed with 4008
  when full. Either way memory per connection is bounded, whatever the client does.
- *Bad input* becomes an error reply from the session state machine; a client that keeps sending
  garbage is closed with 1008; a frame larger than the server's limit is closed with 1009 by the
  WebSocket server. Nobody else's connection notices.

The reader and writer loops run in the ASGI handler's own task (the writer as a child task of a
task group), so every task has an owner: the connection's handler, which ends when the socket
closes, and then stops the session actor, which unsubscribes its documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from mailslot.collab.access import AccessChanged, Grants
from mailslot.collab.hub import HubSubscribe, HubUnsubscribe
from mailslot.collab.notify import Online
from mailslot.collab.presence import presence_message
from mailslot.collab.protocol.docs import (
    DocError,
    DocOps,
    DocSnapshot,
    OpAcked,
    OpBroadcast,
    Push,
    SubscribeDoc,
    UnsubscribeDoc,
)
from mailslot.collab.protocol.session import (
    CLOSE_GOING_AWAY,
    CLOSE_SLOW_CONSUMER,
    Close,
    Effect,
    PresenceCommand,
    Send,
    SendAll,
    Session,
    ToDocument,
)
from mailslot.collab.wsframe import FrameCache, text_frame
from mailslot.errors import MailboxFull
from mailslot.meters import Meters
from mailslot.runtime import Actor, ActorRef, Directive, SupervisorStrategy, Terminated

__all__ = [
    "ClientFrame",
    "Connection",
    "DirectSocket",
    "Gateway",
    "GatewayConfig",
    "GatewayStatistics",
    "GatewayStats",
    "OpenSession",
    "SessionActor",
    "SocketClosed",
    "WriteBatcher",
    "serve_websocket",
]

log = logging.getLogger("mailslot.collab.gateway")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Limits per connection.

    Args:
        max_outbound: frames queued for a client before it is closed as a slow consumer (when
            writing through ASGI).
        max_outbound_bytes: bytes waiting in a socket's buffer before its client is closed as a
            slow consumer (when writing to the transport directly).
        max_reply_bytes: the largest reply a client with nothing waiting may take past those
            bounds (all the ops it missed since its version).

    Both bounds apply to what is already waiting: a client with nothing waiting takes one reply
    up to ``max_reply_bytes`` (closing a client far behind for its catch-up would close it again
    on every reconnect), and is closed at its next one if it does not read.
        max_frame: the largest client frame accepted (characters); larger ones get an error.
        session_mailbox: the session actor's mailbox capacity.
        meters: where connections, frames, bytes and closes are reported.
    """

    max_outbound: int = 2000
    max_outbound_bytes: int = 1024 * 1024
    max_reply_bytes: int = 16 * 1024 * 1024
    max_frame: int = 256 * 1024
    session_mailbox: int = 4096
    meters: Meters | None = None


class ClientFrame(msgspec.Struct, frozen=True):
    """A text frame from the client."""

    text: str


class SocketClosed(msgspec.Struct, frozen=True):
    """The socket is gone (the client left, or the server closed it)."""


class OpenSession(msgspec.Struct, frozen=True):
    """Ask the gateway for a session actor for a new connection (reply: its ref)."""

    conn: Any
    user: str | None = None
    permission: Any = None


class GatewayStats(msgspec.Struct, frozen=True):
    """Ask the gateway for its :class:`GatewayStatistics`."""


@dataclass(frozen=True, slots=True)
class GatewayStatistics:
    """Counters of one node's gateway (summed over the live connections where it says so)."""

    sessions: int
    opened: int
    closed_slow: int
    reading_paused: int
    outbound_queued: int
    outbound_buffered: int
    frames_in: int
    frames_out: int
    bytes_in: int
    bytes_out: int


class DirectSocket(Protocol):
    """A socket's transport, handed to the gateway by the server in the ASGI scope under
    ``"mailslot.transport"`` (see ``mailslot.server``)."""

    def write(self, data: bytes) -> None:
        """Queue bytes (whole WebSocket frames) on the socket; never blocks."""

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        ...

    def is_closing(self) -> bool: ...

    def close_now(self, code: int, reason: str) -> None:
        """Append a close frame and close the transport once its buffer is sent."""


class WriteBatcher:
    """Joins the frames written to each socket during one loop turn into one write.

    A system call per frame is the largest cost of a broadcast; the session actors of a node
    write through one batcher, which flushes every socket's frames once the dispatcher has
    given the loop back (``call_soon``), in the order they were written.
    """

    def __init__(self) -> None:
        self._pending: dict[Connection, list[bytes]] = {}
        self._held: dict[Connection, int] = {}  # bytes in _pending, per connection
        self.framing = FrameCache()
        self._scheduled = False
        self.writes = 0
        self.frames = 0

    def statistics(self) -> dict[str, int]:
        """Socket writes and the payloads joined into them (a payload is a frame, or a reply's
        frames written together), and how often a frame came from the node's
        :class:`FrameCache` (``/healthz``, ``writes``; direct writes only)."""
        return {
            "socket_writes": self.writes,
            "payloads": self.frames,
            "frame_cache_hits": self.framing.hits,
            "frame_cache_misses": self.framing.misses,
        }

    def add(self, conn: Connection, data: bytes) -> None:
        frames = self._pending.get(conn)
        if frames is None:
            self._pending[conn] = [data]
            self._held[conn] = len(data)
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)
        else:
            frames.append(data)
            self._held[conn] += len(data)

    def pending_bytes(self, conn: Connection) -> int:
        """Bytes held for ``conn`` until the flush (O(1): a broadcast asks once per frame)."""
        return self._held.get(conn, 0)

    def take(self, conn: Connection) -> list[bytes]:
        self._held.pop(conn, None)
        return self._pending.pop(conn, [])

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        self._held = {}
        for conn, frames in pending.items():
            conn.flush(frames)
            self.writes += 1
            self.frames += len(frames)


def _frame_text(text: str) -> bytes:
    return text_frame(text.encode())


def _utf8_size_over(texts: list[str], limit: int) -> bool:
    """Whether ``texts`` take more than ``limit`` bytes in UTF-8 (encoded only when the count
    of characters cannot tell: each takes 1 to 4 bytes)."""
    chars = sum(map(len, texts))
    if chars > limit or chars * 4 <= limit:
        return chars > limit
    return sum(len(t.encode()) for t in texts) > limit


class Connection:
    """The socket side of one session: bounded outbound queue, pausable reader.

    Only the session actor calls :meth:`send`, :meth:`close`, :meth:`pause_reading` and
    :meth:`resume_reading`; only the connection's own loops touch the socket.
    """

    def __init__(
        self, websocket: WebSocket, config: GatewayConfig, batcher: WriteBatcher | None = None
    ) -> None:
        self.websocket = websocket
        self.config = config
        self.batcher = batcher
        # a text's frame: from the node's cache when there is a batcher (one per node)
        self._framed: Callable[[str], bytes] = (
            batcher.framing.framed if batcher is not None else _frame_text
        )
        extensions = websocket.scope.get("extensions") or {}
        self.direct: DirectSocket | None = extensions.get("mailslot.transport")
        meters = config.meters
        self._out_frames = meters.gateway_frames.labels("out") if meters else None
        self._out_bytes = meters.gateway_bytes.labels("out") if meters else None
        self.outbound: deque[str] = deque()
        self.closing: tuple[int, str] | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._wake: asyncio.Future[None] | None = None
        self._gate: asyncio.Future[None] | None = None
        self._pauses = 0
        self._loops: list[asyncio.Task[None]] = []

    # ---- called by the session actor -------------------------------------------------------

    # The bounds apply to what is already waiting: a client with nothing waiting takes one reply
    # up to max_reply_bytes (see GatewayConfig), and one that does not read is closed at its next.

    def send(self, frame: str) -> None:
        if self.closing is not None:
            return
        if self.direct is not None:
            self.write(self._framed(frame))
            return
        self.queue([frame])

    def send_all(self, frames: list[str]) -> None:
        """Send several frames, in order, as one reply (the ops a client missed, then the answer):
        written at once when writing to the transport, each framed once per node
        (:class:`FrameCache`)."""
        if self.closing is not None:
            return
        if self.direct is None:
            self.queue(frames)
            return
        framed = self._framed
        self.write(b"".join([framed(f) for f in frames]), len(frames))

    def queue(self, frames: list[str]) -> None:
        """Queue frames for the ASGI writer; close a client that does not keep up."""
        waiting = len(self.outbound)
        limit = self.config.max_outbound
        if waiting + len(frames) > limit and (
            waiting or _utf8_size_over(frames, self.config.max_reply_bytes)
        ):
            self.close(
                CLOSE_SLOW_CONSUMER,
                f"outbound queue full ({self.config.max_outbound} messages): reconnect to resync",
            )
            return
        self.outbound.extend(frames)
        self._wake_writer()

    def send_framed(self, wire: bytes, frame: str) -> None:
        """Send a frame that is already framed (``wire``), as a broadcast is (an empty ``wire``:
        frame it here)."""
        if self.direct is not None and wire:
            if self.closing is None:
                self.write(wire)
        else:
            self.send(frame)

    def write(self, data: bytes, frames: int = 1) -> None:
        """Write whole frames (``frames`` of them) to the transport; close a client that does
        not keep up."""
        direct = self.direct
        assert direct is not None
        batcher = self.batcher
        waiting = direct.buffered()
        if batcher is not None:
            waiting += batcher.pending_bytes(self)
        if waiting + len(data) > self.config.max_outbound_bytes and (
            waiting or len(data) > self.config.max_reply_bytes
        ):
            self.close(
                CLOSE_SLOW_CONSUMER,
                f"more than {self.config.max_outbound_bytes} bytes waiting: reconnect to resync",
            )
            return
        if batcher is not None:
            batcher.add(self, data)
        else:
            direct.write(data)
        self.frames_out += frames
        self.bytes_out += len(data)
        if self._out_frames is not None and self._out_bytes is not None:
            self._out_frames.inc(frames)
            self._out_bytes.inc(len(data))

    def flush(self, frames: list[bytes]) -> None:
        """Write frames the batcher held (one system call for all of them)."""
        direct = self.direct
        if direct is None or direct.is_closing() or not frames:
            return
        direct.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            if self.batcher is not None:
                held = self.batcher.take(self)
                if code != CLOSE_SLOW_CONSUMER:
                    self.flush(held)  # what was written before the close goes first
            self.closing = (code, reason[:120])
            # stop reading now (the reader may be waiting for a frame that never comes)
            loops = self._loops if code == CLOSE_SLOW_CONSUMER else self._loops[:1]
            if code == CLOSE_SLOW_CONSUMER:
                # the client resyncs on reconnect: free the memory now, and stop the writer too
                # even if it is stuck on a socket the client does not read
                self.outbound.clear()
                if self.direct is not None:
                    self.direct.close_now(code, reason[:120])
            for task in loops:
                if task is not asyncio.current_task():
                    task.cancel()
            self._wake_writer()
            self._open_gate()

    def pause_reading(self) -> None:
        self._pauses += 1
        if self._gate is None:
            self._gate = asyncio.get_running_loop().create_future()

    def resume_reading(self) -> None:
        self._pauses = max(0, self._pauses - 1)
        if self._pauses == 0:
            self._open_gate()

    @property
    def reading_paused(self) -> bool:
        return self._gate is not None

    def _open_gate(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None and not gate.done():
            gate.set_result(None)

    def _wake_writer(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    # ---- the connection's own loops ------------------------------------------------------------

    async def run(self, session: ActorRef) -> None:
        """Read and write until the socket closes; then tell the session and say goodbye."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._loops = [tasks.create_task(self._reader(session))]
                if self.direct is None:
                    self._loops.append(tasks.create_task(self._writer()))
        except* (WebSocketDisconnect, ConnectionError, RuntimeError) as group:
            log.debug("connection ended: %r", group.exceptions)
        finally:
            self._loops = []
            session.tell(SocketClosed())
            meters = self.config.meters
            if meters is not None:
                meters.gateway_connections.dec()
                code = self.closing[0] if self.closing is not None else 1006
                meters.gateway_closes.labels(str(code)).inc()
        await self._goodbye()

    async def _goodbye(self) -> None:
        """Send the close frame, if the socket is still open (it waits for a client that does
        not read until it reads again, or gives up)."""
        ws = self.websocket
        if self.closing is None or ws.application_state != WebSocketState.CONNECTED:
            return
        if self.direct is not None and self.direct.is_closing():
            return
        code, reason = self.closing
        patience = 30.0 if code == CLOSE_SLOW_CONSUMER else 2.0
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code, reason), patience)

    async def _reader(self, session: ActorRef) -> None:
        ws = self.websocket
        meters = self.config.meters
        while self.closing is None:
            gate = self._gate
            if gate is not None:
                await gate
                continue
            message = await ws.receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self.closing = (CLOSE_GOING_AWAY, "client left")
                self._wake_writer()
                return
            text = message.get("text")
            if text is None:
                data = message.get("bytes") or b""
                try:
                    text = data.decode()
                except UnicodeDecodeError:
                    text = "\x00"  # not JSON: the session answers with an error reply
            self.frames_in += 1
            self.bytes_in += len(text)
            if meters is not None:
                meters.gateway_frames.labels("in").inc()
                meters.gateway_bytes.labels("in").inc(len(text))
            await session.send(ClientFrame(text))

    async def _writer(self) -> None:
        ws = self.websocket
        queue = self.outbound
        loop = asyncio.get_running_loop()
        while True:
            while queue:
                frame = queue.popleft()
                await ws.send_text(frame)
                self.frames_out += 1
                self.bytes_out += len(frame)
                if self._out_frames is not None and self._out_bytes is not None:
                    self._out_frames.inc()
                    self._out_bytes.inc(len(frame))
            if self.closing is not None:
                return
            self._wake = loop.create_future()
            await self._wake


class SessionActor(Actor):
    """The protocol side of one connection (see the module docstring)."""

    def __init__(
        self,
        conn: Connection,
        session: Session,
        *,
        manager: ActorRef,
        hub: ActorRef,
        presence: ActorRef | None = None,
        user: str | None = None,
        notifier: ActorRef | None = None,
    ) -> None:
        self.conn = conn
        self.session = session
        self.manager = manager
        self.hub = hub
        self.presence = presence
        self.user = user
        self.notifier = notifier

    def started(self) -> None:
        if self.notifier is not None and self.user is not None:
            self.notifier.tell(Online(self.user), self.context.self)

    def receive(self, message: Any) -> None:
        if isinstance(message, OpBroadcast):
            self.conn.send_framed(message.wire, message.frame)
        elif isinstance(message, Push):
            self.conn.send(message.frame)
        elif isinstance(message, ClientFrame):
            self.run(self.session.receive(message.text))
        elif isinstance(message, DocSnapshot | DocOps | OpAcked | DocError):
            self.run(self.session.doc_reply(message))
        elif isinstance(message, SocketClosed):
            self.context.stop()
        else:
            self.on_other(message)

    def on_other(self, message: Any) -> None:
        """Messages of later layers arrive here: access changes for this session's user."""
        if isinstance(message, AccessChanged):
            self.access_changed(message)
        else:
            self.context.unhandled(message)

    def access_changed(self, change: AccessChanged) -> None:
        """A share or a revocation: future requests follow it; a document it may no longer read
        stops reaching this client, which is told with an ``x-access`` message."""
        grants = self.session.permission
        if not isinstance(grants, Grants) or change.user != grants.user:
            return
        grants.update(change)
        key = (change.collection, change.doc)
        if change.role is None and key in self.session.subscriptions:
            self.session.subscriptions.discard(key)
            self.hub.tell(HubUnsubscribe(*key), self.context.self)
        frame = {"a": "x-access", "c": change.collection, "d": change.doc, "role": change.role}
        self.conn.send(msgspec.json.encode(frame).decode())

    def run(self, effects: list[Effect]) -> None:
        me = self.context.self
        sends: list[str] = []  # consecutive frames leave in one write
        for effect in effects:
            if isinstance(effect, Send):
                sends.append(effect.frame)
                continue
            if isinstance(effect, SendAll):
                sends.extend(effect.frames)
                continue
            if sends:
                self.conn.send_all(sends)
                sends = []
            if isinstance(effect, ToDocument):
                request = effect.request
                if isinstance(request, UnsubscribeDoc):
                    self.hub.tell(HubUnsubscribe(request.c, request.d), me)
                    continue
                if isinstance(request, SubscribeDoc) and request.subscribe:
                    self.hub.tell(HubSubscribe(request.c, request.d), me)
                if self.user is not None and hasattr(request, "user"):
                    request = msgspec.structs.replace(request, user=self.user)
                self.manager.tell(request, me)
            elif isinstance(effect, Close):
                self.conn.close(effect.code, effect.reason)
            elif isinstance(effect, PresenceCommand):
                self.on_presence(effect)
        if sends:
            self.conn.send_all(sends)

    def on_presence(self, command: PresenceCommand) -> None:
        """To the presence manager; under overload an update is dropped, never the session."""
        if self.presence is not None:
            try:
                self.presence.tell(presence_message(command), self.context.self)
            except MailboxFull:
                log.warning("presence is overloaded: %s dropped", type(command.request).__name__)

    def slowed_down(self, target: ActorRef) -> None:
        self.conn.pause_reading()

    def resumed(self, target: ActorRef) -> None:
        self.conn.resume_reading()

    def stopping(self) -> None:
        me = self.context.self
        for effect in self.session.close():
            request = effect.request
            self.hub.tell(HubUnsubscribe(request.c, request.d), me)
        self.conn.close(CLOSE_GOING_AWAY, "session ended")


class Gateway(Actor):
    """The parent of every session actor of this node."""

    supervisor_strategy = SupervisorStrategy(directive=Directive.STOP)

    def __init__(
        self,
        *,
        manager: ActorRef,
        hub: ActorRef,
        presence: ActorRef | None = None,
        notifier: ActorRef | None = None,
        config: GatewayConfig | None = None,
        session_factory: Callable[..., SessionActor] | None = None,
    ) -> None:
        self.manager = manager
        self.hub = hub
        self.presence = presence
        self.notifier = notifier
        self.config = config or GatewayConfig()
        self.session_factory = session_factory or SessionActor
        self.opened = 0
        self.closed_slow = 0
        self.conns: dict[ActorRef, Connection] = {}
        self.gone = [0, 0, 0, 0]  # frames/bytes in/out of closed connections

    def receive(self, message: Any) -> None:
        if isinstance(message, OpenSession):
            self.context.reply(self.open(message))
        elif isinstance(message, GatewayStats):
            self.context.reply(self.statistics())
        elif isinstance(message, AccessChanged):
            for ref in self.conns:  # only sessions of that user act on it
                try:
                    ref.tell(message)
                except MailboxFull:  # that session is closed as a slow consumer soon anyway
                    log.warning("session %s missed an access change", ref)
        elif isinstance(message, Terminated):
            conn = self.conns.pop(message.actor, None)
            if conn is not None:
                if conn.closing is not None and conn.closing[0] == CLOSE_SLOW_CONSUMER:
                    self.closed_slow += 1
                for i, n in enumerate(
                    (conn.frames_in, conn.frames_out, conn.bytes_in, conn.bytes_out)
                ):
                    self.gone[i] += n
        else:
            self.context.unhandled(message)

    def open(self, request: OpenSession) -> ActorRef:
        src = secrets.token_hex(8)
        kwargs: dict[str, Any] = {"src": src, "max_frame": self.config.max_frame}
        if request.permission is not None:
            kwargs["permission"] = request.permission
        session = Session(**kwargs)
        conn: Connection = request.conn
        self.opened += 1
        ref = self.context.spawn(
            lambda: self.session_factory(
                conn,
                session,
                manager=self.manager,
                hub=self.hub,
                presence=self.presence,
                user=request.user,
                notifier=self.notifier,
            ),
            name=f"s-{src}",
            mailbox_capacity=self.config.session_mailbox,
        )
        self.conns[ref] = conn
        self.context.watch(ref)
        return ref

    def statistics(self) -> GatewayStatistics:
        conns = list(self.conns.values())
        return GatewayStatistics(
            sessions=len(conns),
            opened=self.opened,
            closed_slow=self.closed_slow,
            reading_paused=sum(1 for c in conns if c.reading_paused),
            outbound_queued=sum(len(c.outbound) for c in conns),
            outbound_buffered=sum(c.direct.buffered() for c in conns if c.direct is not None),
            frames_in=self.gone[0] + sum(c.frames_in for c in conns),
            frames_out=self.gone[1] + sum(c.frames_out for c in conns),
            bytes_in=self.gone[2] + sum(c.bytes_in for c in conns),
            bytes_out=self.gone[3] + sum(c.bytes_out for c in conns),
        )


async def serve_websocket(
    websocket: WebSocket,
    gateway: ActorRef,
    config: GatewayConfig,
    *,
    user: str | None = None,
    permission: Any = None,
    batcher: WriteBatcher | None = None,
) -> None:
    """Run one WebSocket connection until it closes (the ASGI endpoint's body)."""
    await websocket.accept()
    conn = Connection(websocket, config, batcher)
    if config.meters is not None:
        config.meters.gateway_connections_accepted.inc()
        config.meters.gateway_connections.inc()
    session: ActorRef = await gateway.ask(
        OpenSession(conn, user=user, permission=permission), timeout=10.0
    )
    await conn.run(session)
