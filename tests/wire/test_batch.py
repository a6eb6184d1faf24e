from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailslot.errors import CodecError, ConfigError
from mailslot.wire import (
    FRAME_MAGIC,
    FRAME_VERSION,
    Batch,
    BatchBuilder,
    Envelope,
    decode_batch,
    encode_batch,
)

envelopes = st.from_type(Envelope)


def _env(n: int, body: bytes = b"\x91\x01", target: str = "docs/d1") -> Envelope:
    return Envelope(
        id=n.to_bytes(16, "big"),
        timestamp_ns=n,
        target=target,
        tag="doc.op",
        schema_version=1,
        body=body,
    )


def _decode_all(batches: list[Batch]) -> dict[str, list[Envelope]]:
    out: dict[str, list[Envelope]] = {}
    for batch in batches:
        decoded = decode_batch(batch.frame)
        assert len(decoded) == batch.count
        out.setdefault(batch.destination, []).extend(decoded)
    return out


# --- frames --------------------------------------------------------------------------------------


@given(st.lists(envelopes, max_size=30))
def test_round_trip(items: list[Envelope]) -> None:
    frame = encode_batch(items)
    assert frame.startswith(FRAME_MAGIC + bytes([FRAME_VERSION]))
    assert decode_batch(frame) == items
    assert decode_batch(bytearray(frame)) == items
    assert decode_batch(memoryview(frame)) == items


def test_encode_batch_takes_any_iterable() -> None:
    items = [_env(i) for i in range(3)]
    assert decode_batch(encode_batch(iter(items))) == items


def test_a_hundred_small_envelopes_share_one_small_frame() -> None:
    frame = encode_batch([_env(i) for i in range(100)])
    assert len(frame) < 100 * 50


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "truncated: 0 bytes"),
        (FRAME_MAGIC + bytes([FRAME_VERSION]), "truncated: 5 bytes"),
        (b"{json: 1}", r"not a batch frame: starts with b'\{jso'"),
        (b"\x92\x01\x02\x03\x04\x05", "not a batch frame"),
        (FRAME_MAGIC + b"\x02\x90", "unsupported batch frame version 2"),
        (FRAME_MAGIC + b"\x01\x05", r"not an array of envelopes \(type byte 0x05\)"),
        (FRAME_MAGIC + b"\x01\xdd\x00", "truncated inside its array header"),
        (
            FRAME_MAGIC + b"\x01\xdd\x00\x01\x00\x00",
            "announces 65536 envelopes; the limit is 65535",
        ),
        (FRAME_MAGIC + b"\x01\x91", "malformed batch frame: Input data was truncated"),
        (
            FRAME_MAGIC + b"\x01\x91\x05",
            r"Expected `array`, got `int` - at `\$\[0\]` \(envelope 0\)",
        ),
        (FRAME_MAGIC + b"\x01\x90\x00", "malformed batch frame"),  # trailing garbage
    ],
)
def test_bad_frames_say_what_is_wrong(frame: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_batch(frame)


def test_a_bad_field_names_the_envelope_and_the_field() -> None:
    bad = msgspec.structs.replace(_env(1), target="")
    frame = encode_batch([_env(0), bad])
    with pytest.raises(CodecError, match=r"envelope 1, field target"):
        decode_batch(frame)


def test_limits_on_both_sides() -> None:
    items = [_env(i) for i in range(10)]
    frame = encode_batch(items)
    with pytest.raises(CodecError, match=f"frame of {len(frame)} bytes exceeds the limit of 100"):
        decode_batch(frame, max_bytes=100)
    with pytest.raises(CodecError, match="announces 10 envelopes; the limit is 9"):
        decode_batch(frame, max_envelopes=9)
    with pytest.raises(CodecError, match="exceeds the limit of 100"):
        encode_batch(items, max_bytes=100)
    with pytest.raises(CodecError, match="batch of 10 envelopes exceeds the limit of 9"):
        encode_batch(items, max_envelopes=9)
    assert decode_batch(frame, max_bytes=len(frame), max_envelopes=10) == items


def test_encoding_a_value_msgpack_cannot_carry() -> None:
    with pytest.raises(CodecError, match="cannot encode batch"):
        encode_batch([msgspec.structs.replace(_env(0), body=object())])


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_codec_error(data: bytes) -> None:
    for candidate in (data, FRAME_MAGIC + bytes([FRAME_VERSION]) + data):
        try:
            decoded = decode_batch(candidate)
        except CodecError:
            continue
        assert all(isinstance(e, Envelope) for e in decoded)


@given(st.lists(envelopes, min_size=1, max_size=5), st.data())
def test_mutated_frames_raise_only_codec_error(items: list[Envelope], data: st.DataObject) -> None:
    frame = encode_batch(items)
    flipped = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        flipped[data.draw(st.integers(0, len(frame) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    position = data.draw(st.integers(0, len(frame)))
    candidates = [
        bytes(flipped),
        frame[:position],
        frame[:position] + data.draw(st.binary(min_size=1, max_size=8)) + frame[position:],
    ]
    for candidate in candidates:
        with contextlib.suppress(CodecError):
            decode_batch(candidate)


def test_every_truncation_of_a_frame_is_refused() -> None:
    frame = encode_batch([_env(i) for i in range(3)])
    for cut in range(len(frame)):
        with pytest.raises(CodecError):
            decode_batch(frame[:cut])


def test_deep_nesting_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        decode_batch(FRAME_MAGIC + bytes([FRAME_VERSION]) + b"\x91" * 100_000)


# --- the builder ---------------------------------------------------------------------------------


def test_builder_seals_at_max_count() -> None:
    builder = BatchBuilder(max_count=3)
    assert builder.add("q1", _env(0)) == ()
    assert builder.add("q1", _env(1)) == ()
    assert builder.pending("q1") == 2
    (batch,) = builder.add("q1", _env(2))
    assert (batch.destination, batch.count) == ("q1", 3)
    assert decode_batch(batch.frame) == [_env(0), _env(1), _env(2)]
    assert builder.pending("q1") == 0
    assert len(builder) == 0


def test_builder_keeps_destinations_apart() -> None:
    builder = BatchBuilder()
    builder.add("q1", _env(0))
    builder.add("q2", _env(1))
    builder.add("q1", _env(2))
    assert len(builder) == 3
    batches = builder.flush()
    assert [b.destination for b in batches] == ["q1", "q2"]
    assert _decode_all(batches) == {"q1": [_env(0), _env(2)], "q2": [_env(1)]}
    assert builder.flush() == []


def test_builder_seals_before_passing_max_bytes() -> None:
    size = len(msgspec.msgpack.encode(_env(0, body=b"x" * 100)))
    builder = BatchBuilder(max_bytes=10 + 2 * size + size // 2)  # room for two, not three
    assert builder.add("q", _env(0, b"x" * 100)) == ()
    assert builder.add("q", _env(1, b"x" * 100)) == ()
    (full,) = builder.add("q", _env(2, b"x" * 100))
    assert decode_batch(full.frame) == [_env(0, b"x" * 100), _env(1, b"x" * 100)]
    assert len(full.frame) <= 10 + 2 * size + size // 2
    assert builder.pending("q") == 1
    (rest,) = builder.flush()
    assert decode_batch(rest.frame) == [_env(2, b"x" * 100)]


def test_a_large_envelope_travels_alone() -> None:
    builder = BatchBuilder(max_bytes=1000, max_frame_bytes=10_000)
    builder.add("q", _env(0))
    first, alone = builder.add("q", _env(1, b"x" * 5000))
    assert decode_batch(first.frame) == [_env(0)]
    assert decode_batch(alone.frame) == [_env(1, b"x" * 5000)]
    assert builder.flush() == []


def test_an_envelope_too_large_for_any_frame_is_refused_and_nothing_changes() -> None:
    builder = BatchBuilder(max_bytes=1000, max_frame_bytes=2000)
    builder.add("q", _env(0))
    before = builder.statistics()
    with pytest.raises(CodecError, match=r"envelope of \d+ bytes for 'q' does not fit"):
        builder.add("q", _env(1, b"x" * 3000))
    with pytest.raises(CodecError, match="does not fit"):
        builder.add("new", _env(1, b"x" * 3000))
    with pytest.raises(CodecError, match="cannot encode envelope for 'q'"):
        builder.add("q", msgspec.structs.replace(_env(2), body=object()))
    assert builder.statistics() == before
    (batch,) = builder.flush()
    assert decode_batch(batch.frame) == [_env(0)]


def test_max_destinations_evicts_the_oldest_open_frame() -> None:
    builder = BatchBuilder(max_destinations=2)
    builder.add("a", _env(0))
    builder.add("b", _env(1))
    builder.add("a", _env(2))
    (evicted,) = builder.add("c", _env(3))
    assert evicted.destination == "a"
    assert decode_batch(evicted.frame) == [_env(0), _env(2)]
    assert builder.statistics().evictions == 1
    assert _decode_all(builder.flush()) == {"b": [_env(1)], "c": [_env(3)]}


def test_flush_destination() -> None:
    builder = BatchBuilder()
    builder.add("a", _env(0))
    builder.add("b", _env(1))
    assert builder.flush_destination("nope") is None
    batch = builder.flush_destination("a")
    assert batch is not None
    assert decode_batch(batch.frame) == [_env(0)]
    assert builder.pending("b") == 1


def test_statistics_count_what_went_through() -> None:
    builder = BatchBuilder(max_count=2)
    for i in range(5):
        builder.add("q", _env(i))
    stats = builder.statistics()
    assert (stats.frames_sealed, stats.envelopes_sealed) == (2, 4)
    assert (stats.open_destinations, stats.pending_envelopes) == (1, 1)
    assert stats.pending_bytes == len(msgspec.msgpack.encode(_env(4)))
    sealed = builder.flush()
    stats = builder.statistics()
    assert (stats.pending_envelopes, stats.pending_bytes, stats.open_destinations) == (0, 0, 0)
    assert stats.bytes_sealed > sum(len(b.frame) for b in sealed)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_count": 0}, "max_count"),
        ({"max_count": 70_000}, "max_count"),
        ({"max_bytes": 5}, "max_bytes"),
        ({"max_bytes": 2000, "max_frame_bytes": 1000}, "max_bytes"),
        ({"max_frame_bytes": 2**33}, "max_frame_bytes"),
        ({"max_destinations": 0}, "max_destinations"),
    ],
)
def test_builder_limits_are_checked(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BatchBuilder(**kwargs)


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), envelopes), max_size=60),
    st.integers(1, 8),
    st.integers(200, 2000),
    st.integers(1, 4),
)
def test_builder_delivers_everything_in_order_within_limits(
    adds: list[tuple[str, Envelope]], max_count: int, max_bytes: int, max_destinations: int
) -> None:
    builder = BatchBuilder(
        max_count=max_count,
        max_bytes=max_bytes,
        max_frame_bytes=8192,
        max_destinations=max_destinations,
    )
    batches: list[Batch] = []
    for destination, envelope in adds:
        batches.extend(builder.add(destination, envelope))
        assert builder.statistics().open_destinations <= max_destinations
    batches.extend(builder.flush())
    expected: dict[str, list[Envelope]] = {}
    for destination, envelope in adds:
        expected.setdefault(destination, []).append(envelope)
    assert _decode_all(batches) == expected
    for batch in batches:
        assert 1 <= batch.count <= max_count
        assert len(batch.frame) <= max_bytes or batch.count == 1
    stats = builder.statistics()
    assert stats.envelopes_sealed == len(adds)
    assert stats.frames_sealed == len(batches)
    assert stats.bytes_sealed == sum(len(b.frame) for b in batches)
    assert (stats.pending_envelopes, stats.pending_bytes) == (0, 0)
