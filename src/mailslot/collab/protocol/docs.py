"""The contract between client sessions and document actors.

Sessions ask documents with the request structs below and get one reply per request, tagged with
the session's ``tag``; documents push :class:`OpBroadcast` to their subscribers. All are frozen,
tagged msgspec structs, so the same messages travel in-process or in a cluster envelope.

Op frames travel already encoded (``str``, one JSON text frame each): a document encodes a
committed op once and every subscriber writes the same string to its socket.

Pure: standard library, msgspec and :mod:`mailslot.errors` only.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeAlias

import msgspec

__all__ = [
    "DocError",
    "DocOps",
    "DocReply",
    "DocRequest",
    "DocSnapshot",
    "OpAcked",
    "OpBroadcast",
    "Push",
    "SnapshotAt",
    "SubmitOp",
    "SubscribeDoc",
    "UnsubscribeDoc",
    "snapshot_data",
]

OpKind: TypeAlias = Literal["op", "create", "del"]


class _Msg(msgspec.Struct, frozen=True, tag=True, tag_field="msg", kw_only=True):
    pass


class SubscribeDoc(_Msg, frozen=True):
    """Subscribe (or just fetch, ``subscribe=False``) ``c/d``.

    With ``v`` None the reply is a :class:`DocSnapshot`; with a version, a :class:`DocOps` of the
    ops since then.
    """

    tag: int
    c: str
    d: str
    v: int | None = None
    subscribe: bool = True


class UnsubscribeDoc(_Msg, frozen=True):
    """Stop broadcasting ``c/d`` to the sender (no reply)."""

    c: str
    d: str


class SubmitOp(_Msg, frozen=True):
    """An op from a client: transform past ops since ``v``, apply, commit, ack, broadcast.

    ``op`` is a list of text-unicode components (kind ``op``), ``{"type", "data"}`` (kind
    ``create``) or ``None`` (kind ``del``).
    """

    tag: int
    c: str
    d: str
    v: int | None
    src: str
    seq: int
    kind: OpKind
    op: Any = None
    user: str | None = None


class SnapshotAt(_Msg, frozen=True):
    """The document at a version (``nf``) or at a time in ms since the epoch (``nt``)."""

    tag: int
    c: str
    d: str
    version: int | None = None
    timestamp: int | None = None


DocRequest: TypeAlias = SubscribeDoc | UnsubscribeDoc | SubmitOp | SnapshotAt


class DocSnapshot(_Msg, frozen=True):
    """A snapshot: ``type`` is the type URI, ``None`` for a document that does not exist."""

    tag: int
    v: int
    type: str | None
    data: Any = None


class DocOps(_Msg, frozen=True):
    """Ops the client has not seen (encoded frames, in version order)."""

    tag: int
    frames: tuple[str, ...] = ()


class OpAcked(_Msg, frozen=True):
    """The op is committed at version ``v``; ``frames`` are the ops it was transformed past."""

    tag: int
    v: int
    src: str
    seq: int
    frames: tuple[str, ...] = ()


class DocError(_Msg, frozen=True):
    """The request failed; ``code`` is a ShareDB error code."""

    tag: int
    code: str
    message: str


DocReply: TypeAlias = DocSnapshot | DocOps | OpAcked | DocError


class OpBroadcast(_Msg, frozen=True):
    """A committed op, pushed to every subscriber except its author.

    Droppable under overload: a client that misses one fetches when it sees the next op's
    version jump, as ShareDB clients do.
    """

    __mailslot_droppable__: ClassVar[bool] = True

    c: str
    d: str
    v: int
    src: str
    frame: str
    wire: bytes = b""  # ``frame`` as one WebSocket text frame, built once for every subscriber


class Push(_Msg, frozen=True):
    """A frame for one client from a service beside the documents (presence, notifications).

    Droppable: presence is superseded by the next update, and a notification stays in the inbox.
    """

    __mailslot_droppable__: ClassVar[bool] = True

    frame: str


def snapshot_data(v: int, type_uri: str | None, data: Any) -> dict[str, Any]:
    """ShareDB's snapshot object: ``{"v", "data", "type"}`` (no ``data`` when there is none)."""
    out: dict[str, Any] = {"v": v, "type": type_uri}
    if type_uri is not None:
        out["data"] = data
    return out
