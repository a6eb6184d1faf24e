"""ShareDB's client protocol (1.2) as typed, frozen messages, decoded and encoded with msgspec.

Theory of operation: :func:`decode_request` turns one text frame into one request struct, picked
by its ``a`` field from the :data:`Request` union, with every field validated by msgspec. Anything
that does not fit raises :class:`~mailslot.errors.ProtocolError` with ShareDB's code
(``ERR_MESSAGE_BADLY_FORMED`` for frames, ``ERR_OT_OP_BADLY_FORMED`` for op payloads) and a
message that names the field; :func:`echo_for_error` then recovers whatever can be echoed back,
because ShareDB's error reply is the request itself plus ``error``.

Replies are built as plain dicts or byte strings and encoded once with :func:`encode`. An op
broadcast is encoded once by its document and the same ``str`` goes to every subscriber.

Pure: standard library, msgspec and :mod:`mailslot.errors` only.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import msgspec

from mailslot.errors import ProtocolError

__all__ = [
    "ERR_DOC_ALREADY_CREATED",
    "ERR_DOC_DOES_NOT_EXIST",
    "ERR_DOC_TYPE_NOT_RECOGNIZED",
    "ERR_DOC_WAS_DELETED",
    "ERR_MESSAGE_BADLY_FORMED",
    "ERR_OP_SUBMIT_REJECTED",
    "ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT",
    "ERR_OT_OP_BADLY_FORMED",
    "ERR_OT_OP_NOT_APPLIED",
    "ERR_OVERLOADED",
    "ERR_UNKNOWN_ERROR",
    "JSON0_URI",
    "PROTOCOL_MAJOR",
    "PROTOCOL_MINOR",
    "BulkFetch",
    "BulkSubscribe",
    "BulkUnsubscribe",
    "CreateData",
    "Fetch",
    "Handshake",
    "Ping",
    "PresenceRequest",
    "PresenceSubscribe",
    "PresenceUnsubscribe",
    "PresenceUpdate",
    "Request",
    "SnapshotFetch",
    "SnapshotFetchByTimestamp",
    "Submit",
    "Subscribe",
    "Unsubscribe",
    "decode_request",
    "echo_for_error",
    "encode",
    "error_reply",
]

PROTOCOL_MAJOR: Final = 1
PROTOCOL_MINOR: Final = 2
#: ShareDB's default type; the client refuses a handshake that names any other.
JSON0_URI: Final = "http://sharejs.org/types/JSONv0"

ERR_MESSAGE_BADLY_FORMED: Final = "ERR_MESSAGE_BADLY_FORMED"
ERR_OT_OP_BADLY_FORMED: Final = "ERR_OT_OP_BADLY_FORMED"
ERR_OT_OP_NOT_APPLIED: Final = "ERR_OT_OP_NOT_APPLIED"
ERR_DOC_ALREADY_CREATED: Final = "ERR_DOC_ALREADY_CREATED"
ERR_DOC_DOES_NOT_EXIST: Final = "ERR_DOC_DOES_NOT_EXIST"
ERR_DOC_WAS_DELETED: Final = "ERR_DOC_WAS_DELETED"
ERR_DOC_TYPE_NOT_RECOGNIZED: Final = "ERR_DOC_TYPE_NOT_RECOGNIZED"
ERR_OP_SUBMIT_REJECTED: Final = "ERR_OP_SUBMIT_REJECTED"
ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT: Final = "ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT"
ERR_UNKNOWN_ERROR: Final = "ERR_UNKNOWN_ERROR"
#: mailslot's own: the server is overloaded and shed this request; retry later.
ERR_OVERLOADED: Final = "ERR_MAILSLOT_OVERLOADED"

# Names that are JS prototype properties: ShareDB refuses them too (agent.js isDangerousProperty).
_DANGEROUS = frozenset({"__proto__", "constructor", "prototype"})

#: A text-unicode op component as JSON: a skip, an insert, or a delete.
Component: TypeAlias = int | str | dict[str, int | str]


class _Base(msgspec.Struct, frozen=True, tag_field="a", omit_defaults=True):
    pass


class Handshake(_Base, frozen=True, tag="hs"):
    """``{"a":"hs","id":null,"protocol":1,"protocolMinor":2}``; ``id``: the src to keep."""

    id: str | None = None
    protocol: int | str | None = None
    protocolMinor: int | str | None = None


class Subscribe(_Base, frozen=True, tag="s"):
    c: str
    d: str
    v: int | None = None


class Fetch(_Base, frozen=True, tag="f"):
    c: str
    d: str
    v: int | None = None


class Unsubscribe(_Base, frozen=True, tag="u"):
    c: str
    d: str


class BulkSubscribe(_Base, frozen=True, tag="bs"):
    """``b`` is a list of ids (snapshots wanted) or a map id -> version (ops wanted)."""

    c: str
    b: list[str] | dict[str, int | None]


class BulkFetch(_Base, frozen=True, tag="bf"):
    c: str
    b: list[str] | dict[str, int | None]


class BulkUnsubscribe(_Base, frozen=True, tag="bu"):
    c: str
    b: list[str] | dict[str, int | None]


class CreateData(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    data: Any = None


class Submit(_Base, frozen=True, tag="op"):
    """An edit (``op``), a create (``create``) or a delete (``del``) of one document."""

    c: str
    d: str
    v: int | None = None
    seq: int | None = None
    src: str | None = None
    op: list[Component] | msgspec.UnsetType = msgspec.UNSET
    create: CreateData | None = None
    delete: bool | None = msgspec.field(default=None, name="del")
    x: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """``"op"``, ``"create"`` or ``"del"`` (which one the client sent)."""
        if self.op is not msgspec.UNSET:
            return "op"
        if self.create is not None:
            return "create"
        return "del"


class SnapshotFetch(_Base, frozen=True, tag="nf"):
    id: int
    c: str
    d: str
    v: int | None = None


class SnapshotFetchByTimestamp(_Base, frozen=True, tag="nt"):
    id: int
    c: str
    d: str
    ts: int | None = None


class Ping(_Base, frozen=True, tag="pp"):
    pass


class PresenceSubscribe(_Base, frozen=True, tag="ps"):
    ch: str
    seq: int | None = None


class PresenceUnsubscribe(_Base, frozen=True, tag="pu"):
    ch: str
    seq: int | None = None


class PresenceUpdate(_Base, frozen=True, tag="p"):
    """A presence update; ``p`` is the type's presence value (``None`` means leave)."""

    ch: str
    id: str
    p: Any = None
    pv: int | None = None
    c: str | None = None
    d: str | None = None
    v: int | None = None
    t: str | None = None


class PresenceRequest(_Base, frozen=True, tag="pr"):
    ch: str


Request: TypeAlias = (
    Handshake
    | Subscribe
    | Fetch
    | Unsubscribe
    | BulkSubscribe
    | BulkFetch
    | BulkUnsubscribe
    | Submit
    | SnapshotFetch
    | SnapshotFetchByTimestamp
    | Ping
    | PresenceSubscribe
    | PresenceUnsubscribe
    | PresenceUpdate
    | PresenceRequest
)

_decoder = msgspec.json.Decoder(Request)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def decode_request(frame: str | bytes) -> Request:
    """Decode one client frame; :class:`ProtocolError` names what is wrong.

    Raises:
        ProtocolError: ``ERR_MESSAGE_BADLY_FORMED`` for invalid JSON, an unknown action or a field
            of the wrong type; ``ERR_OT_OP_BADLY_FORMED`` when only the op payload is wrong.
    """
    try:
        request = _decoder.decode(frame)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "`$.op" in text or "`$.create" in text or "`$.del`" in text:
            raise ProtocolError(ERR_OT_OP_BADLY_FORMED, f"invalid op: {text}") from exc
        if "`$.a`" in text or "missing required field `a`" in text.lower():
            raise ProtocolError(
                ERR_MESSAGE_BADLY_FORMED, f"invalid or unknown action: {text}"
            ) from exc
        raise ProtocolError(ERR_MESSAGE_BADLY_FORMED, f"invalid message: {text}") from exc
    except msgspec.DecodeError as exc:
        raise ProtocolError(ERR_MESSAGE_BADLY_FORMED, f"not a JSON message: {exc}") from exc
    _check_names(request)
    return request


def _check_names(request: Request) -> None:
    for field in ("c", "d", "ch"):
        value = getattr(request, field, None)
        if value is None:
            continue
        if not value or len(value) > 256 or value in _DANGEROUS:
            raise ProtocolError(ERR_MESSAGE_BADLY_FORMED, f"invalid {field!r}: {value[:40]!r}")
    for field in ("v", "seq", "pv"):
        value = getattr(request, field, None)
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ProtocolError(ERR_MESSAGE_BADLY_FORMED, f"invalid {field!r}: {value} < 0")
    if isinstance(request, BulkSubscribe | BulkFetch | BulkUnsubscribe):
        ids = request.b if isinstance(request.b, list) else list(request.b)
        if not ids or len(ids) > 10_000:
            raise ProtocolError(ERR_MESSAGE_BADLY_FORMED, "bulk request needs 1 to 10,000 ids")
        for doc in ids:
            if not doc or len(doc) > 256 or doc in _DANGEROUS:
                raise ProtocolError(ERR_MESSAGE_BADLY_FORMED, f"invalid id in bulk: {doc[:40]!r}")
        if isinstance(request.b, dict):
            for doc, version in request.b.items():
                if version is not None and version < 0:
                    raise ProtocolError(
                        ERR_MESSAGE_BADLY_FORMED, f"invalid version for {doc!r}: {version}"
                    )


def echo_for_error(frame: str | bytes) -> dict[str, Any]:
    """What of a rejected frame can be echoed in the error reply (ShareDB echoes the request).

    Returns the frame's JSON object when it is one (bounded in size), else an empty dict.
    """
    if len(frame) > 64 * 1024:
        return {}
    try:
        value = _any_decoder.decode(frame)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def error_reply(echo: dict[str, Any], code: str, message: str) -> bytes:
    """The request echoed, plus ``error``: ShareDB's error reply."""
    reply = dict(echo)
    reply["error"] = {"code": code, "message": message}
    return _encoder.encode(reply)


def encode(value: Any) -> bytes:
    """Encode a reply (dicts, lists, structs) as one JSON text frame."""
    return _encoder.encode(value)
