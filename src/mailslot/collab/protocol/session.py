"""One client connection's protocol state, as a pure state machine (sans I/O).

Theory of operation
-------------------
The gateway's session actor owns one :class:`Session`. It feeds every text frame from the socket
into :meth:`Session.receive` and every reply from a document into :meth:`Session.doc_reply`; both
return a list of effects for the shell to carry out, in order:

- :class:`Send`: write this frame to the client;
- :class:`Close`: close the socket with this code (protocol abuse);
- :class:`ToDocument`: send this request to the document actor of ``(c, d)``.

The machine keeps what the protocol needs: the connection's ``src`` (its id, kept across
reconnects when the client presents it in the handshake), the documents it subscribes to (so the
shell can unsubscribe them when the socket closes), the requests in flight by tag (so a reply is
framed the way the request asked, and bulk requests answer once for all their documents), and a
count of consecutive malformed frames (so a client that only sends garbage is closed with 1008).

Bad input never raises out of :meth:`receive`: it becomes an error reply that echoes the request,
as ShareDB does. Nothing here does I/O, reads a clock or draws random numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import msgspec

from mailslot.collab.protocol.docs import (
    DocError,
    DocOps,
    DocReply,
    DocRequest,
    DocSnapshot,
    OpAcked,
    SnapshotAt,
    SubmitOp,
    SubscribeDoc,
    UnsubscribeDoc,
    snapshot_data,
)
from mailslot.collab.protocol.messages import (
    ERR_MESSAGE_BADLY_FORMED,
    ERR_OP_SUBMIT_REJECTED,
    ERR_OT_OP_BADLY_FORMED,
    JSON0_URI,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    BulkFetch,
    BulkSubscribe,
    BulkUnsubscribe,
    Fetch,
    Handshake,
    Ping,
    PresenceRequest,
    PresenceSubscribe,
    PresenceUnsubscribe,
    PresenceUpdate,
    Request,
    SnapshotFetch,
    SnapshotFetchByTimestamp,
    Submit,
    Subscribe,
    Unsubscribe,
    decode_request,
    echo_for_error,
    encode,
    error_reply,
)
from mailslot.errors import ProtocolError

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_TOO_BIG",
    "Close",
    "Effect",
    "PresenceCommand",
    "Send",
    "SendAll",
    "Session",
    "ToDocument",
]

#: the client keeps sending garbage (RFC 6455 policy violation)
CLOSE_POLICY: Final = 1008
#: a frame larger than the server accepts
CLOSE_TOO_BIG: Final = 1009
#: the server is shutting down
CLOSE_GOING_AWAY: Final = 1001
#: mailslot's own: the client stopped reading and its outbound queue is full; it resyncs on
#: reconnect
CLOSE_SLOW_CONSUMER: Final = 4008

_TEXT_URIS: Final = {
    "text-unicode": "http://sharejs.org/types/text-unicode",
    "http://sharejs.org/types/text-unicode": "http://sharejs.org/types/text-unicode",
}


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``frame`` (one JSON text frame) to the client."""

    frame: str


@dataclass(frozen=True, slots=True)
class SendAll:
    """Write ``frames`` to the client, in order (the ops it missed, then its reply)."""

    frames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with ``code`` and ``reason``."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ToDocument:
    """Send ``request`` to the document ``c/d``."""

    c: str
    d: str
    request: DocRequest


@dataclass(frozen=True, slots=True)
class PresenceCommand:
    """A presence request for the presence layer (``ps``, ``pu``, ``p``, ``pr``), or a ping
    (``pp``) from a session that subscribes to presence: its heartbeat."""

    request: PresenceSubscribe | PresenceUnsubscribe | PresenceUpdate | PresenceRequest | Ping
    src: str


Effect: TypeAlias = Send | SendAll | Close | ToDocument | PresenceCommand

#: Decides whether this connection may read (``write=False``) or write ``c/d``.
Permission = Callable[[str, str, bool], bool]


def _allow_all(c: str, d: str, write: bool) -> bool:
    return True


@dataclass(slots=True)
class _Pending:
    """A request in flight: how to frame its reply."""

    kind: str  # "s", "f", "op", "nf", "nt", or "bs"/"bf" for one document of a bulk request
    echo: dict[str, Any]
    bulk: _Bulk | None = None
    doc: str = ""


@dataclass(slots=True)
class _Bulk:
    """A bulk subscribe/fetch waiting for all its documents."""

    action: str
    c: str
    b: Any
    remaining: int
    snapshots: dict[str, Any]
    error: tuple[str, str] | None = None


def _frame(value: Any) -> str:
    return encode(value).decode()


class Session:
    """The protocol state of one connection.

    Args:
        src: the id the server gives this connection (the client may present an older one).
        permission: read/write access check per document (everything allowed by default).
        max_frame: frames longer than this (in characters) are refused with an error reply.
        max_bad_frames: consecutive malformed frames tolerated before closing with 1008.
        max_in_flight: requests awaiting a document reply before new ones are refused.
    """

    def __init__(
        self,
        *,
        src: str,
        permission: Permission = _allow_all,
        max_frame: int = 256 * 1024,
        max_bad_frames: int = 20,
        max_in_flight: int = 10_000,
    ) -> None:
        self.src = src
        self.permission = permission
        self.max_frame = max_frame
        self.max_bad_frames = max_bad_frames
        self.max_in_flight = max_in_flight
        self.handshaken = False
        self.subscriptions: set[tuple[str, str]] = set()
        self.presence_channels: set[str] = set()
        self.bad_frames = 0
        self.closed = False
        self._pending: dict[int, _Pending] = {}
        self._next_tag = 1

    # ---- frames from the client ----------------------------------------------------------

    def receive(self, frame: str | bytes) -> list[Effect]:
        """Handle one frame from the client."""
        if self.closed:
            return []
        if len(frame) > self.max_frame:
            return self._bad(
                {},
                ERR_MESSAGE_BADLY_FORMED,
                f"message of {len(frame)} bytes exceeds the limit of {self.max_frame}",
            )
        try:
            request = decode_request(frame)
        except ProtocolError as exc:
            return self._bad(echo_for_error(frame), exc.code, str(exc))
        self.bad_frames = 0
        try:
            return self._dispatch(request)
        except ProtocolError as exc:
            return [Send(error_reply(_echo(request), exc.code, str(exc)).decode())]

    def _bad(self, echo: dict[str, Any], code: str, message: str) -> list[Effect]:
        self.bad_frames += 1
        effects: list[Effect] = [Send(error_reply(echo, code, message).decode())]
        if self.bad_frames >= self.max_bad_frames:
            self.closed = True
            effects.append(Close(CLOSE_POLICY, f"{self.bad_frames} malformed messages in a row"))
        return effects

    def _dispatch(self, request: Request) -> list[Effect]:
        if isinstance(request, Submit):
            return self._submit(request)
        if isinstance(request, Subscribe | Fetch):
            return self._subscribe(request)
        if isinstance(request, Unsubscribe):
            return self._unsubscribe(request)
        if isinstance(request, BulkSubscribe | BulkFetch):
            return self._bulk(request)
        if isinstance(request, BulkUnsubscribe):
            return self._bulk_unsubscribe(request)
        if isinstance(request, SnapshotFetch | SnapshotFetchByTimestamp):
            return self._snapshot_at(request)
        if isinstance(request, Handshake):
            return self._handshake(request)
        if isinstance(request, Ping):
            pong: list[Effect] = [Send('{"a":"pp"}')]
            if self.presence_channels:
                pong.append(PresenceCommand(request, self.src))
            return pong
        if isinstance(request, PresenceUpdate | PresenceSubscribe | PresenceUnsubscribe):
            if isinstance(request, PresenceSubscribe):
                self.presence_channels.add(request.ch)
            elif isinstance(request, PresenceUnsubscribe):
                self.presence_channels.discard(request.ch)
            return [PresenceCommand(request, self.src)]
        return [PresenceCommand(request, self.src)]

    def _handshake(self, request: Handshake) -> list[Effect]:
        if request.id is not None:
            if not 0 < len(request.id) <= 128:
                raise ProtocolError(ERR_MESSAGE_BADLY_FORMED, "invalid client id in handshake")
            self.src = request.id
        self.handshaken = True
        reply = {
            "a": "hs",
            "protocol": PROTOCOL_MAJOR,
            "protocolMinor": PROTOCOL_MINOR,
            "id": self.src,
            "type": JSON0_URI,
        }
        return [Send(_frame(reply))]

    def _tag(self, pending: _Pending) -> int:
        if len(self._pending) >= self.max_in_flight:
            raise ProtocolError(
                "ERR_MAILSLOT_OVERLOADED",
                f"{self.max_in_flight} requests already in flight on this connection",
            )
        tag = self._next_tag
        self._next_tag += 1
        self._pending[tag] = pending
        return tag

    def _check(self, c: str, d: str, write: bool) -> None:
        if not self.permission(c, d, write):
            verb = "write" if write else "read"
            raise ProtocolError(
                ERR_OP_SUBMIT_REJECTED if write else "ERR_MAILSLOT_ACCESS_DENIED",
                f"this session may not {verb} {c}/{d}",
            )

    def _subscribe(self, request: Subscribe | Fetch) -> list[Effect]:
        self._check(request.c, request.d, False)
        kind = "s" if isinstance(request, Subscribe) else "f"
        tag = self._tag(_Pending(kind, _echo(request)))
        if kind == "s":
            self.subscriptions.add((request.c, request.d))
        req = SubscribeDoc(tag=tag, c=request.c, d=request.d, v=request.v, subscribe=kind == "s")
        return [ToDocument(request.c, request.d, req)]

    def _unsubscribe(self, request: Unsubscribe) -> list[Effect]:
        self.subscriptions.discard((request.c, request.d))
        return [
            ToDocument(request.c, request.d, UnsubscribeDoc(c=request.c, d=request.d)),
            Send(_frame({"a": "u", "c": request.c, "d": request.d})),
        ]

    def _bulk(self, request: BulkSubscribe | BulkFetch) -> list[Effect]:
        action = "bs" if isinstance(request, BulkSubscribe) else "bf"
        versions: dict[str, int | None] = (
            dict.fromkeys(request.b) if isinstance(request.b, list) else dict(request.b)
        )
        for d in versions:
            self._check(request.c, d, False)
        if len(self._pending) + len(versions) > self.max_in_flight:
            raise ProtocolError("ERR_MAILSLOT_OVERLOADED", "too many requests in flight")
        bulk = _Bulk(action, request.c, request.b, len(versions), {})
        effects: list[Effect] = []
        for d, v in versions.items():
            tag = self._tag(_Pending(action, {}, bulk, d))
            if action == "bs":
                self.subscriptions.add((request.c, d))
            req = SubscribeDoc(tag=tag, c=request.c, d=d, v=v, subscribe=action == "bs")
            effects.append(ToDocument(request.c, d, req))
        return effects

    def _bulk_unsubscribe(self, request: BulkUnsubscribe) -> list[Effect]:
        ids = request.b if isinstance(request.b, list) else list(request.b)
        effects: list[Effect] = []
        for d in ids:
            self.subscriptions.discard((request.c, d))
            effects.append(ToDocument(request.c, d, UnsubscribeDoc(c=request.c, d=d)))
        effects.append(Send(_frame({"a": "bu", "c": request.c, "b": request.b})))
        return effects

    def _snapshot_at(self, request: SnapshotFetch | SnapshotFetchByTimestamp) -> list[Effect]:
        self._check(request.c, request.d, False)
        kind = "nf" if isinstance(request, SnapshotFetch) else "nt"
        tag = self._tag(_Pending(kind, _echo(request)))
        if isinstance(request, SnapshotFetch):
            req = SnapshotAt(tag=tag, c=request.c, d=request.d, version=request.v)
        else:
            req = SnapshotAt(tag=tag, c=request.c, d=request.d, timestamp=request.ts)
        return [ToDocument(request.c, request.d, req)]

    def _submit(self, request: Submit) -> list[Effect]:
        if request.seq is None:
            raise ProtocolError(ERR_MESSAGE_BADLY_FORMED, "an op needs 'seq'")
        kind = request.kind
        op: Any
        if kind == "op":
            op = request.op
            if request.v is None:
                raise ProtocolError(ERR_MESSAGE_BADLY_FORMED, "an op needs 'v'")
        elif kind == "create":
            assert request.create is not None
            uri = _TEXT_URIS.get(request.create.type)
            if uri is None:
                raise ProtocolError(
                    "ERR_DOC_TYPE_NOT_RECOGNIZED",
                    f"unknown type {request.create.type!r}; mailslot serves text-unicode",
                )
            if request.create.data is not None and not isinstance(request.create.data, str):
                raise ProtocolError(ERR_OT_OP_BADLY_FORMED, "text-unicode create data must be text")
            op = {"type": uri, "data": request.create.data or ""}
        else:
            if request.delete is not True:
                raise ProtocolError(ERR_OT_OP_BADLY_FORMED, "'del' must be true")
            op = None
        self._check(request.c, request.d, True)
        src = request.src or self.src
        tag = self._tag(_Pending("op", _echo(request)))
        req = SubmitOp(
            tag=tag,
            c=request.c,
            d=request.d,
            v=request.v,
            src=src,
            seq=request.seq,
            kind=kind,  # type: ignore[arg-type]
            op=op,
        )
        return [ToDocument(request.c, request.d, req)]

    # ---- replies from documents ----------------------------------------------------------

    def doc_reply(self, reply: DocReply) -> list[Effect]:
        """Frame a document's reply to the request with the same tag."""
        pending = self._pending.pop(reply.tag, None)
        if pending is None or self.closed:
            return []
        if pending.bulk is not None:
            return self._bulk_reply(pending, reply)
        if isinstance(reply, DocError):
            if pending.kind == "s":
                self.subscriptions.discard((pending.echo["c"], pending.echo["d"]))
            return [Send(error_reply(pending.echo, reply.code, reply.message).decode())]
        if isinstance(reply, DocOps):
            return [SendAll((*reply.frames, _frame({"a": pending.kind, **_doc_of(pending.echo)})))]
        if isinstance(reply, DocSnapshot):
            if pending.kind in ("nf", "nt"):
                out = {
                    "a": pending.kind,
                    "id": pending.echo["id"],
                    "v": reply.v,
                    "type": reply.type,
                    "data": reply.data,
                    "m": None,
                }
                return [Send(_frame(out))]
            data = snapshot_data(reply.v, reply.type, reply.data)
            return [Send(_frame({"a": pending.kind, **_doc_of(pending.echo), "data": data}))]
        assert isinstance(reply, OpAcked)
        ack = {
            "a": "op",
            **_doc_of(pending.echo),
            "v": reply.v,
            "src": reply.src,
            "seq": reply.seq,
        }
        return [SendAll((*reply.frames, _frame(ack)))]

    def _bulk_reply(self, pending: _Pending, reply: DocReply) -> list[Effect]:
        bulk = pending.bulk
        assert bulk is not None
        effects: list[Effect] = []
        if isinstance(reply, DocError):
            bulk.snapshots[pending.doc] = {"error": {"code": reply.code, "message": reply.message}}
            if bulk.error is None:
                bulk.error = (reply.code, reply.message)
            if bulk.action == "bs":
                self.subscriptions.discard((bulk.c, pending.doc))
        elif isinstance(reply, DocOps):
            effects.extend(Send(f) for f in reply.frames)
        elif isinstance(reply, DocSnapshot):
            bulk.snapshots[pending.doc] = snapshot_data(reply.v, reply.type, reply.data)
        bulk.remaining -= 1
        if bulk.remaining:
            return effects
        if isinstance(bulk.b, list):
            out: dict[str, Any] = {"a": bulk.action, "c": bulk.c, "data": bulk.snapshots}
            effects.append(Send(_frame(out)))
        elif bulk.error is not None:
            echo = {"a": bulk.action, "c": bulk.c, "b": bulk.b}
            effects.append(Send(error_reply(echo, *bulk.error).decode()))
        else:
            effects.append(Send(_frame({"a": bulk.action, "c": bulk.c, "b": bulk.b})))
        return effects

    # ---- the end -------------------------------------------------------------------------

    def close(self) -> list[ToDocument]:
        """The socket closed: unsubscribe every document this connection subscribed to."""
        self.closed = True
        self._pending.clear()
        effects = [
            ToDocument(c, d, UnsubscribeDoc(c=c, d=d)) for c, d in sorted(self.subscriptions)
        ]
        self.subscriptions.clear()
        return effects

    @property
    def in_flight(self) -> int:
        return len(self._pending)


def _echo(request: Request) -> dict[str, Any]:
    echo: dict[str, Any] = msgspec.to_builtins(request)
    return echo


def _doc_of(echo: dict[str, Any]) -> dict[str, Any]:
    return {"c": echo["c"], "d": echo["d"]}
