"""Batch frames: many envelopes bound for one queue in one AMQP message.

Theory of operation
-------------------
The Python AMQP client spends 150-350 us of CPU per AMQP message, so envelopes for the same
destination queue travel together. A batch frame is::

    FRAME_MAGIC (4 bytes: 0xC1 'M' 'S' 'B')   0xC1 is a byte msgpack never uses, so a frame is
                                              never mistaken for plain msgpack (or for text)
    FRAME_VERSION (1 byte)                    the frame layout; a reader refuses others
    a msgpack array of envelopes              each an Envelope in its array form

:func:`encode_batch` / :func:`decode_batch` turn a list of envelopes into a frame and back;
:func:`decode_batch` refuses a frame over ``max_bytes`` before it reads it and a frame that
announces more than ``max_envelopes`` before it allocates them, and raises nothing but
:class:`~mailslot.errors.CodecError`.

:class:`BatchBuilder` accumulates envelopes per destination. Each envelope is encoded once, when
it is added, straight into its destination's open frame (so the builder knows exact sizes and a
flush is one copy). It is pure: it never looks at a clock. ``add`` hands back the frames that
became ready (the count limit or the byte limit was reached, or an open frame was evicted to keep
at most ``max_destinations`` open); the caller publishes them, and on its own tick calls
:meth:`BatchBuilder.flush` so that a quiet destination's envelopes do not wait for company. The
builder belongs to one actor (the transport's publisher); it is not shared.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

import msgspec

from mailslot.errors import CodecError, ConfigError

from .envelope import Envelope, explain

__all__ = [
    "FRAME_MAGIC",
    "FRAME_VERSION",
    "MAX_FRAME_BYTES",
    "MAX_FRAME_ENVELOPES",
    "Batch",
    "BatchBuilder",
    "BatchStatistics",
    "decode_batch",
    "encode_batch",
]

FRAME_MAGIC: Final = b"\xc1MSB"
FRAME_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
"""Largest frame a reader accepts by default (and the largest a builder makes)."""
MAX_FRAME_ENVELOPES: Final = 65535
"""Most envelopes a reader accepts in one frame by default."""

_HEADER: Final = FRAME_MAGIC + bytes([FRAME_VERSION])
_HEADER_LEN: Final = len(_HEADER)
# The builder always writes a 32-bit array header (0xDD + count) and fills the count in on seal;
# msgpack readers accept a longer header than needed.
_OPEN_PREFIX: Final = _HEADER + b"\xdd\x00\x00\x00\x00"
_PREFIX_LEN: Final = len(_OPEN_PREFIX)
_COUNT_OFFSET: Final = _HEADER_LEN + 1

_encoder = msgspec.msgpack.Encoder()
_encode_into = _encoder.encode_into
_decoder = msgspec.msgpack.Decoder(list[Envelope])
_ENCODE_ERRORS = (msgspec.EncodeError, TypeError, ValueError, OverflowError)


def encode_batch(
    envelopes: Iterable[Envelope],
    *,
    max_bytes: int = MAX_FRAME_BYTES,
    max_envelopes: int = MAX_FRAME_ENVELOPES,
) -> bytes:
    """Encode envelopes into one batch frame.

    Raises:
        CodecError: more envelopes or more bytes than a reader accepts with the same limits, or a
            field that msgpack cannot carry.
    """
    items = envelopes if isinstance(envelopes, list) else list(envelopes)
    if len(items) > max_envelopes:
        raise CodecError(f"batch of {len(items)} envelopes exceeds the limit of {max_envelopes}")
    try:
        frame = _HEADER + _encoder.encode(items)
    except _ENCODE_ERRORS as exc:
        raise CodecError(f"cannot encode batch: {exc}") from exc
    if len(frame) > max_bytes:
        raise CodecError(f"batch frame of {len(frame)} bytes exceeds the limit of {max_bytes}")
    return frame


def decode_batch(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = MAX_FRAME_BYTES,
    max_envelopes: int = MAX_FRAME_ENVELOPES,
) -> list[Envelope]:
    """Decode and validate a batch frame.

    Raises:
        CodecError: oversize, truncated, wrong magic, unsupported frame version, too many
            envelopes, or an envelope that does not validate (the message names the field).
    """
    size = len(data)
    if size > max_bytes:
        raise CodecError(f"batch frame of {size} bytes exceeds the limit of {max_bytes}")
    if size <= _HEADER_LEN:
        raise CodecError(f"batch frame truncated: {size} bytes, the header alone is {_HEADER_LEN}")
    if data[:4] != FRAME_MAGIC:
        raise CodecError(f"not a batch frame: starts with {bytes(data[:4])!r}, not {FRAME_MAGIC!r}")
    if data[4] != FRAME_VERSION:
        raise CodecError(
            f"unsupported batch frame version {data[4]} (this reader knows {FRAME_VERSION})"
        )
    count = _array_length(data, size)
    if count > max_envelopes:
        raise CodecError(f"batch frame announces {count} envelopes; the limit is {max_envelopes}")
    try:
        return _decoder.decode(memoryview(data)[_HEADER_LEN:])
    except (msgspec.DecodeError, RecursionError) as exc:
        raise CodecError(f"malformed batch frame: {explain(exc, in_batch=True)}") from exc


def _array_length(data: bytes | bytearray | memoryview, size: int) -> int:
    """The element count of the msgpack array that follows the header."""
    first = data[_HEADER_LEN]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    width = {0xDC: 2, 0xDD: 4}.get(first)
    if width is None:
        raise CodecError(f"batch frame body is not an array of envelopes (type byte 0x{first:02x})")
    if size < _HEADER_LEN + 1 + width:
        raise CodecError("batch frame truncated inside its array header")
    return int.from_bytes(data[_HEADER_LEN + 1 : _HEADER_LEN + 1 + width], "big")


class Batch(msgspec.Struct, frozen=True, gc=False):
    """A sealed frame, ready to publish to ``destination``.

    Attributes:
        destination: The queue or routing key the envelopes were added for.
        frame: The encoded batch frame.
        count: How many envelopes it holds.
    """

    destination: str
    frame: bytes
    count: int


class BatchStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a :class:`BatchBuilder`.

    Attributes:
        open_destinations: Destinations with an open (unsent) frame.
        pending_envelopes: Envelopes in open frames.
        pending_bytes: Bytes in open frames.
        frames_sealed: Frames handed out since the builder was made.
        envelopes_sealed: Envelopes in those frames.
        bytes_sealed: Bytes in those frames.
        evictions: Frames sealed early to keep at most ``max_destinations`` open.
    """

    open_destinations: int
    pending_envelopes: int
    pending_bytes: int
    frames_sealed: int
    envelopes_sealed: int
    bytes_sealed: int
    evictions: int


class _Open:
    __slots__ = ("buf", "count")

    def __init__(self, buf: bytearray) -> None:
        self.buf = buf
        self.count = 0


_NOTHING: Final[tuple[Batch, ...]] = ()


class BatchBuilder:
    """Accumulates envelopes per destination into batch frames, within limits.

    Args:
        max_count: Seal a frame when it holds this many envelopes.
        max_bytes: Seal a frame before it would grow past this size. A single envelope larger than
            this still travels, alone in its frame, up to ``max_frame_bytes``.
        max_frame_bytes: The hard limit of one frame (what readers accept).
        max_destinations: At most this many open frames; adding for one more destination seals
            the oldest open frame.

    Raises:
        ConfigError: a limit is out of range.
    """

    def __init__(
        self,
        *,
        max_count: int = 100,
        max_bytes: int = 128 * 1024,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_destinations: int = 1024,
    ) -> None:
        if not 1 <= max_count <= MAX_FRAME_ENVELOPES:
            raise ConfigError(f"max_count must be in 1..{MAX_FRAME_ENVELOPES}, got {max_count}")
        if not _PREFIX_LEN < max_frame_bytes <= 0xFFFFFFFF:
            raise ConfigError(f"max_frame_bytes out of range: {max_frame_bytes}")
        if not _PREFIX_LEN < max_bytes <= max_frame_bytes:
            raise ConfigError(
                f"max_bytes must be in {_PREFIX_LEN + 1}..{max_frame_bytes}, got {max_bytes}"
            )
        if max_destinations < 1:
            raise ConfigError(f"max_destinations must be at least 1, got {max_destinations}")
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._max_frame_bytes = max_frame_bytes
        self._max_destinations = max_destinations
        self._open: dict[str, _Open] = {}
        self._frames_sealed = 0
        self._envelopes_sealed = 0
        self._bytes_sealed = 0
        self._evictions = 0

    def add(self, destination: str, envelope: Envelope) -> tuple[Batch, ...]:
        """Add an envelope for ``destination``; returns the frames that are ready to publish.

        Usually returns an empty tuple. The ready frames come out in the order they must be
        published: an older frame of the same destination before a newer one.

        Raises:
            CodecError: the envelope cannot be encoded, or alone exceeds ``max_frame_bytes``.
                Nothing is added then.
        """
        state = self._open.get(destination)
        fresh = state is None
        if state is None:
            state = _Open(bytearray(_OPEN_PREFIX))
        buf = state.buf
        start = len(buf)
        try:
            _encode_into(envelope, buf, -1)
        except _ENCODE_ERRORS as exc:
            del buf[start:]
            raise CodecError(f"cannot encode envelope for {destination!r}: {exc}") from exc
        if fresh or len(buf) >= self._max_bytes:
            return self._place(destination, state, start, fresh)
        # The fast path: an open frame with room.
        state.count = count = state.count + 1
        if count >= self._max_count:
            del self._open[destination]
            return (self._seal(destination, state),)
        return _NOTHING

    def _place(self, destination: str, state: _Open, start: int, fresh: bool) -> tuple[Batch, ...]:
        """``add`` for a new destination or a frame at its byte limit (``buf[start:]`` is new)."""
        buf = state.buf
        size = len(buf) - start
        if size + _PREFIX_LEN > self._max_frame_bytes:
            del buf[start:]
            raise CodecError(
                f"envelope of {size} bytes for {destination!r} does not fit in a frame of "
                f"{self._max_frame_bytes} bytes"
            )
        ready = _NOTHING
        if fresh:
            if len(self._open) >= self._max_destinations:
                oldest = next(iter(self._open))
                self._evictions += 1
                ready = (self._seal(oldest, self._open.pop(oldest)),)
            self._open[destination] = state
        elif len(buf) > self._max_bytes:
            # The open frame is full without this envelope: seal it, start a new one with it.
            tail = buf[start:]
            del buf[start:]
            ready = (self._seal(destination, state),)
            state = self._open[destination] = _Open(bytearray(_OPEN_PREFIX) + tail)
            buf = state.buf
        state.count += 1
        if state.count >= self._max_count or len(buf) >= self._max_bytes:
            del self._open[destination]
            ready = (*ready, self._seal(destination, state))
        return ready

    def flush(self) -> list[Batch]:
        """Seal every open frame (on the caller's tick); oldest destination first."""
        batches = [self._seal(dest, state) for dest, state in self._open.items()]
        self._open.clear()
        return batches

    def flush_destination(self, destination: str) -> Batch | None:
        """Seal the open frame of one destination, if it has one."""
        state = self._open.pop(destination, None)
        return None if state is None else self._seal(destination, state)

    def pending(self, destination: str) -> int:
        """Envelopes waiting in ``destination``'s open frame."""
        state = self._open.get(destination)
        return 0 if state is None else state.count

    def __len__(self) -> int:
        return sum(state.count for state in self._open.values())

    def statistics(self) -> BatchStatistics:
        """A frozen snapshot of the counters."""
        return BatchStatistics(
            open_destinations=len(self._open),
            pending_envelopes=len(self),
            pending_bytes=sum(len(state.buf) - _PREFIX_LEN for state in self._open.values()),
            frames_sealed=self._frames_sealed,
            envelopes_sealed=self._envelopes_sealed,
            bytes_sealed=self._bytes_sealed,
            evictions=self._evictions,
        )

    def _seal(self, destination: str, state: _Open) -> Batch:
        buf = state.buf
        struct.pack_into(">I", buf, _COUNT_OFFSET, state.count)
        frame = bytes(buf)
        self._frames_sealed += 1
        self._envelopes_sealed += state.count
        self._bytes_sealed += len(frame)
        return Batch(destination, frame, state.count)
