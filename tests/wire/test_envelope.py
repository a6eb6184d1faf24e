from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailslot.errors import CodecError, ConfigError
from mailslot.wire import (
    MAX_ID_BYTES,
    MAX_PATH,
    MAX_TRACEPARENT,
    Envelope,
    IdSequence,
    decode_envelope,
    encode_envelope,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _envelope(**changes: object) -> Envelope:
    base = Envelope(
        id=bytes(range(16)),
        timestamp_ns=1_733_300_000_000_000_000,
        target="docs/d1",
        tag="doc.op",
        schema_version=1,
        body=b"\x93\xa2d1\x05\x92\x03\xa5hello",
        sender="/user/gateway/s1",
        traceparent=TRACEPARENT,
    )
    return msgspec.structs.replace(base, **changes)


@given(st.from_type(Envelope))
def test_round_trip(envelope: Envelope) -> None:
    assert decode_envelope(encode_envelope(envelope)) == envelope


def test_a_typical_envelope_is_compact_and_positional() -> None:
    data = encode_envelope(_envelope())
    # An array of 11 items; no field names on the wire.
    assert data[0] == 0x9B
    assert b"target" not in data
    assert len(data) < 140


def test_envelope_is_frozen() -> None:
    envelope = _envelope()
    with pytest.raises(AttributeError):
        envelope.target = "docs/other"  # type: ignore[misc]


def test_decode_accepts_any_buffer() -> None:
    data = encode_envelope(_envelope())
    assert decode_envelope(bytearray(data)) == _envelope()
    assert decode_envelope(memoryview(b"xx" + data)[2:]) == _envelope()


def test_an_old_reader_ignores_a_field_appended_later() -> None:
    data = encode_envelope(_envelope())
    longer = bytes([data[0] + 1]) + data[1:] + b"\xa3new"
    assert decode_envelope(longer) == _envelope()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": b""}, "field id"),
        ({"id": b"x" * (MAX_ID_BYTES + 1)}, "field id"),
        ({"timestamp_ns": -1}, "field timestamp_ns"),
        ({"target": ""}, "field target"),
        ({"target": "t" * (MAX_PATH + 1)}, "field target"),
        ({"target": 7}, "field target"),
        ({"tag": ""}, "field tag"),
        ({"schema_version": 0}, "field schema_version"),
        ({"schema_version": 65536}, "field schema_version"),
        ({"body": "text, not bytes"}, "field body"),
        ({"sender": ""}, "field sender"),
        ({"correlation_id": b""}, "field correlation_id"),
        ({"traceparent": "0" * (MAX_TRACEPARENT + 1)}, "field traceparent"),
        ({"tracestate": 5}, "field tracestate"),
    ],
)
def test_invalid_fields_name_the_field(changes: dict[str, object], field: str) -> None:
    data = encode_envelope(_envelope(**changes))  # the constructor does not validate
    with pytest.raises(CodecError, match=field):
        decode_envelope(data)


def test_too_short_an_array_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="at least length 6"):
        decode_envelope(msgspec.msgpack.encode([b"id", 1, "t"]))


def test_encoding_a_value_msgpack_cannot_carry_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="cannot encode envelope"):
        encode_envelope(_envelope(body=object()))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_codec_error(data: bytes) -> None:
    try:
        decoded = decode_envelope(data)
    except CodecError:
        return
    assert isinstance(decoded, Envelope)


@given(st.from_type(Envelope), st.data())
def test_mutated_envelopes_raise_only_codec_error(envelope: Envelope, data: st.DataObject) -> None:
    raw = bytearray(encode_envelope(envelope))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        with contextlib.suppress(CodecError):
            decode_envelope(candidate)


def test_deep_nesting_is_a_codec_error_not_a_recursion_error() -> None:
    with pytest.raises(CodecError):
        decode_envelope(b"\x91" * 100_000)


class TestIdSequence:
    def test_ids_are_unique_prefixed_and_sixteen_bytes(self) -> None:
        ids = IdSequence(b"\x01" * 8)
        drawn = [ids.next_id() for _ in range(1000)]
        assert len(set(drawn)) == 1000
        assert all(len(i) == 16 and i.startswith(b"\x01" * 8) for i in drawn)
        assert drawn[0] < drawn[1] < drawn[-1]

    def test_sequences_with_different_prefixes_do_not_collide(self) -> None:
        a, b = IdSequence(b"a" * 8), IdSequence(b"b" * 8)
        assert {a.next_id() for _ in range(100)}.isdisjoint(b.next_id() for _ in range(100))

    def test_start_and_exhaustion(self) -> None:
        ids = IdSequence(b"p", start=2**64 - 1)
        assert ids.next_id() == b"p" + b"\xff" * 8
        with pytest.raises(ConfigError, match="exhausted"):
            ids.next_id()

    @pytest.mark.parametrize(
        ("prefix", "start", "message"),
        [(b"", 0, "prefix"), (b"x" * 57, 0, "prefix"), (b"x", -1, "start"), (b"x", 2**64, "start")],
    )
    def test_bad_arguments(self, prefix: bytes, start: int, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            IdSequence(prefix, start=start)

    def test_ids_fit_the_envelope_limit(self) -> None:
        envelope = _envelope(id=IdSequence(b"x" * (MAX_ID_BYTES - 8)).next_id())
        assert decode_envelope(encode_envelope(envelope)) == envelope
