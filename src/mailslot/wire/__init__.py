"""Messages on the wire: envelope, typed bodies with schema versions, batch frames (sans-I/O).

- :mod:`mailslot.wire.envelope`: :class:`Envelope` (id, time, sender, target, trace context,
  schema version, encoded body) and :class:`IdSequence` for compact unique ids.
- :mod:`mailslot.wire.registry`: :class:`MessageRegistry`, where a protocol registers its frozen,
  tagged msgspec structs; it encodes them to ``(tag, body)`` and decodes with validation,
  accepting the current and the previous schema version.
- :mod:`mailslot.wire.batch`: :func:`encode_batch` / :func:`decode_batch` for batch frames (many
  envelopes for one queue in one AMQP message) and :class:`BatchBuilder`, which fills them.

Everything here is pure: no I/O, no clock, no randomness. Every malformed input raises
:class:`mailslot.errors.CodecError` and nothing else.
"""

from __future__ import annotations

from .batch import (
    FRAME_MAGIC,
    FRAME_VERSION,
    MAX_FRAME_BYTES,
    MAX_FRAME_ENVELOPES,
    Batch,
    BatchBuilder,
    BatchStatistics,
    decode_batch,
    encode_batch,
)
from .envelope import (
    MAX_ID_BYTES,
    MAX_PATH,
    MAX_TAG,
    MAX_TRACEPARENT,
    MAX_TRACESTATE,
    Envelope,
    IdSequence,
    decode_envelope,
    encode_envelope,
)
from .registry import MessageRegistry, MessageType

__all__ = [
    "FRAME_MAGIC",
    "FRAME_VERSION",
    "MAX_FRAME_BYTES",
    "MAX_FRAME_ENVELOPES",
    "MAX_ID_BYTES",
    "MAX_PATH",
    "MAX_TAG",
    "MAX_TRACEPARENT",
    "MAX_TRACESTATE",
    "Batch",
    "BatchBuilder",
    "BatchStatistics",
    "Envelope",
    "IdSequence",
    "MessageRegistry",
    "MessageType",
    "decode_batch",
    "decode_envelope",
    "encode_batch",
    "encode_envelope",
]
