"""mailslot.collab.ot.buffer: TextBuffer agrees with apply, stays bounded, fails atomically."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ot_strategies import inserts, ops, texts

from mailslot.collab.ot import DEFAULT_CHUNK_SIZE, TextBuffer, apply
from mailslot.errors import OTError

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True)


def assert_invariants(buffer: TextBuffer, chunk_size: int) -> None:
    """Chunks are non-empty and bounded, and the Fenwick tree agrees with them."""
    chunks = buffer._chunks
    assert all(0 < len(c) <= chunk_size for c in chunks), [len(c) for c in chunks]
    assert len(buffer) == sum(map(len, chunks))
    for k in range(len(chunks) + 1):
        prefix = sum(map(len, chunks[:k]))
        if prefix > 0:
            assert buffer._find(prefix) == (k - 1, len(chunks[k - 1]))


def test_empty_buffer() -> None:
    buffer = TextBuffer()
    assert str(buffer) == ""
    assert len(buffer) == 0
    assert buffer.chunk_count == 0
    assert buffer.slice(0, 0) == ""
    buffer.apply([])
    buffer.apply(["hé😀"])
    assert str(buffer) == "hé😀"
    assert len(buffer) == 3


def test_apply_in_place() -> None:
    buffer = TextBuffer("hi there", chunk_size=4)
    buffer.apply([3, {"d": 5}, "🤖👻💃"])
    assert str(buffer) == "hi 🤖👻💃"
    buffer.apply([3, {"d": "🤖"}, 1, "x", {"d": 1}])
    assert str(buffer) == "hi 👻x"
    assert_invariants(buffer, 4)


def test_large_insert_is_split_into_bounded_chunks() -> None:
    buffer = TextBuffer("ab", chunk_size=16)
    buffer.apply([1, "x" * 1000])
    assert str(buffer) == "a" + "x" * 1000 + "b"
    assert buffer.chunk_count >= 1000 // 16
    assert_invariants(buffer, 16)


def test_delete_across_many_chunks() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(500))
    buffer = TextBuffer(text, chunk_size=8)
    buffer.apply([3, {"d": 490}, "Z"])
    assert str(buffer) == text[:3] + "Z" + text[493:]
    assert_invariants(buffer, 8)
    buffer.apply([{"d": 11}])
    assert str(buffer) == ""
    assert buffer.chunk_count == 0


def test_many_small_deletes_merge_chunks() -> None:
    buffer = TextBuffer("x" * 400, chunk_size=16)
    before = buffer.chunk_count
    for _ in range(390):
        buffer.apply([{"d": 1}] if len(buffer) < 3 else [len(buffer) // 2, {"d": 1}])
    assert len(buffer) == 10
    assert buffer.chunk_count < before
    assert buffer.chunk_count <= 2
    assert_invariants(buffer, 16)


def test_an_edit_copies_one_chunk_not_the_document() -> None:
    buffer = TextBuffer("a" * 100_000)
    chunks_before = list(buffer._chunks)
    buffer.apply([50_000, "x"])
    changed = [
        i for i, (a, b) in enumerate(zip(chunks_before, buffer._chunks, strict=True)) if a is not b
    ]
    assert len(changed) == 1
    assert len(buffer._chunks) == len(chunks_before)
    assert len(buffer._chunks[changed[0]]) <= DEFAULT_CHUNK_SIZE


@pytest.mark.parametrize(
    ("op", "fragment"),
    [
        ([12, "x"], "component 0 (12): skips to 12, past the end (11 characters)"),
        ([10, {"d": 2}], "component 1: deletes up to 12, past the end (11 characters)"),
        ([1, "x", 3, {"d": "zz"}], "component 3: deletes 'zz', but the document has 'o ' there"),
        ([0, "x"], "a skip must be > 0"),
        ("x", "must be a list"),
    ],
)
def test_failing_op_leaves_the_buffer_unchanged(op: object, fragment: str) -> None:
    buffer = TextBuffer("hello world", chunk_size=3)
    before = list(buffer._chunks)
    with pytest.raises(OTError) as info:
        buffer.apply(op)  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert buffer._chunks == before
    assert str(buffer) == "hello world"


@pytest.mark.parametrize(("start", "end"), [(-1, 2), (3, 2), (0, 12)])
def test_slice_out_of_range(start: int, end: int) -> None:
    with pytest.raises(OTError, match=r"slice \[.*\) is outside the document \(11\)"):
        TextBuffer("hello world").slice(start, end)


def test_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="chunk_size must be an int >= 2"):
        TextBuffer("x", chunk_size=1)
    with pytest.raises(TypeError, match="text must be a str"):
        TextBuffer(b"x")  # type: ignore[arg-type]
    assert "11 code points" in repr(TextBuffer("hello world"))


@PROPERTY
@given(st.sampled_from([2, 3, 5, 8, 64]), texts, st.data())
def test_buffer_agrees_with_apply(chunk_size: int, text: str, data: st.DataObject) -> None:
    buffer = TextBuffer(text, chunk_size=chunk_size)
    expected = text
    for _ in range(data.draw(st.integers(1, 12))):
        op = data.draw(ops(expected, raw=data.draw(st.booleans())))
        expected = apply(expected, op)
        buffer.apply(op)
        assert str(buffer) == expected
        assert len(buffer) == len(expected)
        assert_invariants(buffer, chunk_size)
    start = data.draw(st.integers(0, len(expected)))
    end = data.draw(st.integers(start, len(expected)))
    assert buffer.slice(start, end) == expected[start:end]


@PROPERTY
@given(st.sampled_from([2, 4, 16]), st.data())
def test_buffer_grows_and_shrinks_like_a_str(chunk_size: int, data: st.DataObject) -> None:
    # long runs of typing and deleting at one place, as in real editing traces
    buffer = TextBuffer(chunk_size=chunk_size)
    expected = ""
    for _ in range(data.draw(st.integers(1, 60))):
        pos = data.draw(st.integers(0, len(expected)))
        if data.draw(st.booleans()) or not expected or pos == len(expected):
            piece = data.draw(inserts)
            op = [pos, piece] if pos else [piece]
        else:
            count = data.draw(st.integers(1, len(expected) - pos))
            op = [pos, {"d": count}] if pos else [{"d": count}]
        expected = apply(expected, op)
        buffer.apply(op)
        assert str(buffer) == expected
    assert_invariants(buffer, chunk_size)


@PROPERTY
@given(st.sampled_from([2, 5]), texts, st.data())
def test_buffer_refuses_exactly_what_apply_refuses(
    chunk_size: int, text: str, data: st.DataObject
) -> None:
    op = data.draw(ops(text + "\x00\x01"))  # made for a longer or different text
    buffer = TextBuffer(text, chunk_size=chunk_size)
    try:
        expected = apply(text, op)
    except OTError:
        with pytest.raises(OTError):
            buffer.apply(op)
        assert str(buffer) == text
    else:
        buffer.apply(op)
        assert str(buffer) == expected
