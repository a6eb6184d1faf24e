"""The envelope: what every message carries on the wire besides its body.

Theory of operation
-------------------
An :class:`Envelope` is a frozen msgspec struct encoded as a msgpack *array* (``array_like``): the
field names are not on the wire, only their positions, which keeps a small envelope around 140
bytes and makes encoding and decoding cheap. The body is the already encoded typed message
(:mod:`mailslot.wire.registry`), kept as opaque ``bytes`` so that routing, batching and forwarding
never decode it.

Evolution of the envelope itself: the required fields come first, the optional ones last (an
absent one costs one byte; msgspec does not omit defaults of ``array_like`` structs). A new optional
field may be appended at the end (old readers ignore extra trailing items, new readers fill the
default); anything else changes :data:`mailslot.wire.batch.FRAME_VERSION`.

Purity: nothing here reads a clock or a random source. Message ids and timestamps come from the
caller; :class:`IdSequence` turns one random prefix (drawn once per process by the caller) into
unique 16-byte ids with a counter, which is far cheaper than ``os.urandom`` per message.

Limits are :class:`msgspec.Meta` constraints, checked when an envelope is *decoded* (a struct's
constructor does not validate). An envelope built locally with a field past its limit encodes, and
its receiver rejects it with a :class:`~mailslot.errors.CodecError`; adapters keep within the limits
(the tracing adapter, for instance, drops a ``tracestate`` longer than :data:`MAX_TRACESTATE`).
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

from mailslot.errors import CodecError, ConfigError

__all__ = [
    "MAX_ID_BYTES",
    "MAX_PATH",
    "MAX_TAG",
    "MAX_TRACEPARENT",
    "MAX_TRACESTATE",
    "Envelope",
    "IdSequence",
    "decode_envelope",
    "encode_envelope",
    "explain",
]

MAX_ID_BYTES: Final = 64
"""Longest message id or correlation id, in bytes."""
MAX_PATH: Final = 1024
"""Longest actor path or entity key (``target``, ``sender``, ``reply_to``), in characters."""
MAX_TAG: Final = 128
"""Longest message type tag, in characters."""
MAX_TRACEPARENT: Final = 256
"""Longest W3C ``traceparent`` (version 00 uses 55 characters; later versions may append)."""
MAX_TRACESTATE: Final = 8192
"""Longest W3C ``tracestate``; the spec asks to propagate at least 512 characters."""

_Id = Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_ID_BYTES)]
_Path = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PATH)]


class Envelope(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One logical message on the wire.

    Attributes:
        id: Unique message id (16 bytes from :class:`IdSequence` or a UUID); receivers deduplicate
            redeliveries by it.
        timestamp_ns: When the message was sent, in nanoseconds since the Unix epoch.
        target: The actor path or entity key (``docs/<id>``) the message is for.
        tag: The message type tag of the body (see ``MessageRegistry``).
        schema_version: The schema version the body was encoded with (1 or more).
        body: The encoded typed message; routing never decodes it.
        sender: The sending actor's path, if it has one.
        correlation_id: For a reply, the ``id`` of the request it answers.
        reply_to: Where a reply should go (an actor path), for requests.
        traceparent: W3C trace context ``traceparent`` of the logical message.
        tracestate: W3C trace context ``tracestate``.
    """

    id: _Id
    timestamp_ns: Annotated[int, msgspec.Meta(ge=0)]
    target: _Path
    tag: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TAG)]
    schema_version: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    body: bytes
    sender: _Path | None = None
    correlation_id: _Id | None = None
    reply_to: _Path | None = None
    traceparent: Annotated[str, msgspec.Meta(max_length=MAX_TRACEPARENT)] | None = None
    tracestate: Annotated[str, msgspec.Meta(max_length=MAX_TRACESTATE)] | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode_envelope(envelope: Envelope) -> bytes:
    """Encode one envelope on its own (a batch frame is the usual carrier; see ``encode_batch``).

    Raises:
        CodecError: a field holds a value msgpack cannot carry.
    """
    try:
        return _encoder.encode(envelope)
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode envelope: {exc}") from exc


def decode_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    """Decode and validate one envelope.

    Raises:
        CodecError: the bytes are not a valid envelope; the message says which field is wrong.
    """
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise CodecError(f"malformed envelope: {explain(exc)}") from exc


_AT = re.compile(r"`\$(?:\[(\d+)\])?\[(\d+)\]`")
_FIELDS: Final = Envelope.__struct_fields__


def explain(exc: BaseException, *, in_batch: bool = False) -> str:
    """msgspec's error message, with an envelope field position turned into the field's name.

    ``... - at `$[2]``` becomes ``... - at `$[2]` (field target)``; in a batch, ``$[4][2]``
    becomes ``(envelope 4, field target)``.
    """
    text = str(exc)
    match = _AT.search(text)
    if match is None:
        return text
    outer, inner = match.group(1), int(match.group(2))
    if in_batch and outer is None:
        return f"{text} (envelope {inner})"
    name = _FIELDS[inner] if inner < len(_FIELDS) else f"#{inner}"
    where = f"envelope {outer}, field {name}" if in_batch else f"field {name}"
    return f"{text} ({where})"


class IdSequence:
    """Unique, compact message ids: a per-process random prefix followed by a counter.

    The caller draws the prefix once (``IdSequence(os.urandom(8))``) so this class stays pure. With
    an 8-byte random prefix, two processes collide with probability about ``n**2 / 2**65`` for ``n``
    processes ever started, and one process never repeats an id.

    Args:
        prefix: 1 to 56 bytes, unique per process (random, or a node id plus a start counter).
        start: The first counter value.

    Raises:
        ConfigError: the prefix is empty or too long, or ``start`` is outside ``[0, 2**64)``.
    """

    __slots__ = ("_next", "_prefix")

    def __init__(self, prefix: bytes, *, start: int = 0) -> None:
        if not 1 <= len(prefix) <= MAX_ID_BYTES - 8:
            raise ConfigError(f"id prefix must be 1 to {MAX_ID_BYTES - 8} bytes, got {len(prefix)}")
        if not 0 <= start < 1 << 64:
            raise ConfigError(f"id counter start must be in [0, 2**64), got {start}")
        self._prefix = bytes(prefix)
        self._next = start

    def next_id(self) -> bytes:
        """The next id: ``prefix + counter`` as 8 big-endian bytes."""
        n = self._next
        self._next = n + 1
        try:
            return self._prefix + n.to_bytes(8, "big")
        except OverflowError:
            raise ConfigError("id counter exhausted (2**64 ids); use a new prefix") from None
