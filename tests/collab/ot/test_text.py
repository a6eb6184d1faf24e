"""mailslot.collab.ot.text: unit tests per function and error, and the algebra as properties."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ot_strategies import messy_ops, ops, text_and_op, text_and_two_ops, texts

from mailslot.collab import ot
from mailslot.collab.ot import (
    TYPE_NAME,
    TYPE_URI,
    TextBuffer,
    apply,
    check,
    compose,
    insert,
    invert,
    invert_with_doc,
    is_invertible,
    is_noop,
    make_invertible,
    normalize,
    remove,
    strip_invertible,
    transform,
    transform_past,
    transform_position,
    transform_selection,
)
from mailslot.collab.ot import text as text_module
from mailslot.errors import OTError

PROPERTY = settings(max_examples=250, deadline=None, derandomize=True)


def test_type_identity() -> None:
    assert TYPE_URI == "http://sharejs.org/types/text-unicode"
    assert TYPE_NAME == "text-unicode"


def test_package_exports_everything_public() -> None:
    assert set(ot.__all__) >= set(text_module.__all__)
    assert "TextBuffer" in ot.__all__
    for name in ot.__all__:
        assert hasattr(ot, name), name


# -- check ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op",
    [
        [],
        ["hi"],
        [3, "hi"],
        [{"d": 2}],
        [{"d": "ab"}],
        [1, {"d": 2}, "x", 4, "y"],
        ["a", "b"],  # adjacent inserts: ot-text-unicode's checkOp accepts them
        [{"d": 1}, {"d": "x"}],
        ["😀", 1, {"d": "🀄"}],
    ],
)
def test_check_accepts_valid_ops(op: list) -> None:
    check(op)


@pytest.mark.parametrize(
    ("op", "fragment"),
    [
        ({"d": 1}, "must be a list of components, got dict"),
        ("abc", "must be a list of components, got str"),
        (None, "got NoneType"),
        ((1, "x"), "got tuple"),
        ([0, "x"], "component 0 (0): a skip must be > 0"),
        ([-3, "x"], "component 0 (-3): a skip must be > 0"),
        (["x", ""], "component 1 (''): an insert must not be empty"),
        ([{"d": 0}], "component 0 ({'d': 0}): a delete must be of size > 0"),
        ([{"d": -1}], "a delete must be of size > 0"),
        ([{"d": ""}], "a delete must not be empty"),
        ([{"d": None}], '"d" must be an int or a str, not NoneType'),
        ([{"d": 1.5}], '"d" must be an int or a str, not float'),
        ([{"d": True}], '"d" must be an int or a str, not bool'),
        ([{}], 'a delete must be an object with the single key "d"'),
        ([{"d": 1, "x": 2}], 'the single key "d"'),
        ([1, 2, "x"], "component 1 (2): adjacent skips must be combined"),
        (["x", 3], "component 1 (3): an op must not end with a skip"),
        ([5], "component 0 (5): an op must not end with a skip"),
        ([None], "component 0 (None): a component must be an int (skip)"),
        ([True, "x"], "not bool"),
        ([1.0, "x"], "not float"),
        ([[1]], "not list"),
        (["a\ud83d"], "surrogate"),
        ([{"d": "\udc00"}], "surrogate"),
    ],
)
def test_check_names_the_fault(op: object, fragment: str) -> None:
    with pytest.raises(OTError) as info:
        check(op)
    assert fragment in str(info.value)


def test_check_strict_refuses_unnormalized_ops() -> None:
    for op in (["a", "b"], [{"d": 1}, {"d": 2}], [2, {"d": "x"}, {"d": 1}]):
        check(op)
        with pytest.raises(OTError, match=r"adjacent (inserts|deletes) must be combined"):
            check(op, strict=True)
    check([2, "a", {"d": 1}, 3, "b"], strict=True)


def test_check_shortens_huge_components_in_messages() -> None:
    with pytest.raises(OTError) as info:
        check(["x" * 1000, 0])
    assert len(str(info.value)) < 120


def test_check_and_apply_take_msgspec_decoded_frames() -> None:
    frame = b'[2, "\\ud83d\\ude00x", {"d": 1}, 1, {"d": "c"}]'
    op = msgspec.json.decode(frame, type=list[int | str | dict[str, int | str]])
    check(op)
    assert apply("abXbc", op) == "ab😀xb"


# -- apply ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "expected"),
    [
        ("", [], ""),
        ("abc", [], "abc"),
        ("", ["hi"], "hi"),
        ("abc", [3, "!"], "abc!"),
        ("hi there", [3, {"d": 5}, "🤖👻💃"], "hi 🤖👻💃"),  # ot-text-unicode's README example
        ("a😀b", [1, {"d": 1}, "c"], "acb"),  # the emoji is one character
        ("a😀b", [2, "🀄"], "a😀🀄b"),
        ("abcdef", [1, {"d": "bc"}, 2, "X", {"d": 1}], "adeX"),
        ("ab", ["x", "y", {"d": 1}, {"d": "b"}], "xy"),  # unnormalized but valid
    ],
)
def test_apply(text: str, op: list, expected: str) -> None:
    assert apply(text, op) == expected


@pytest.mark.parametrize(
    ("text", "op", "fragment"),
    [
        ("abc", [4, "x"], "component 0 (4): skips to 4, past the end (3 characters)"),
        ("abc", [{"d": 4}], "component 0 ({'d': 4}): deletes up to 4, past the end"),
        ("abc", [2, {"d": "cd"}], "deletes up to 4, past the end"),
        ("abc", [1, {"d": "x"}], "component 1 ({'d': 'x'}): the document has 'b' there"),
        ("😀", [{"d": "😁"}], "the document has '😀' there"),
        ("abc", [0, "x"], "a skip must be > 0"),
    ],
)
def test_apply_refuses_ops_that_do_not_fit(text: str, op: list, fragment: str) -> None:
    with pytest.raises(OTError) as info:
        apply(text, op)
    assert fragment in str(info.value)


def test_apply_does_not_mutate_the_op() -> None:
    op = [1, {"d": "b"}, "x"]
    apply("abc", op)
    assert op == [1, {"d": "b"}, "x"]


# -- normalize -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ([], []),
        ([0], []),
        ([5], []),
        (["a", 0, "b"], ["ab"]),
        ([1, 2, "x", 3], [3, "x"]),
        ([{"d": 0}, "", 2, {"d": ""}, "x"], [2, "x"]),
        ([{"d": "a"}, {"d": "b"}], [{"d": "ab"}]),
        ([{"d": "a"}, {"d": 2}], [{"d": 3}]),  # a count absorbs a text, as in ot-text-unicode
        ([{"d": 2}, {"d": "ab"}], [{"d": 4}]),
    ],
)
def test_normalize(op: list, expected: list) -> None:
    assert normalize(op) == expected


@pytest.mark.parametrize(
    ("op", "fragment"),
    [
        ({"d": 1}, "must be a list"),
        ([-1], "component 0 (-1): not a skip >= 0"),
        ([1.5], "not a skip >= 0"),
        ([{"x": 1}], "not a skip >= 0"),
        ([{"d": -1}], "not a skip >= 0"),
        ([None], "not a skip >= 0"),
        ([False], "not a skip >= 0"),
    ],
)
def test_normalize_refuses_what_is_not_a_component(op: object, fragment: str) -> None:
    with pytest.raises(OTError) as info:
        normalize(op)
    assert fragment in str(info.value)


def test_normalize_copies_delete_objects() -> None:
    first = {"d": "a"}
    out = normalize([first, {"d": "b"}])
    assert out == [{"d": "ab"}]
    assert first == {"d": "a"}


# -- transform -----------------------------------------------------------------------------------


def test_transform_tie_breaks_by_side() -> None:
    a, b = ["A"], ["B"]
    assert transform(a, b, "left") == ["A"]
    assert transform(a, b, "right") == [1, "A"]
    assert apply(apply("", b), transform(a, b, "left")) == "AB"


def test_transform_moves_past_inserts_and_deletes() -> None:
    assert transform([5, "x"], [2, "abc"], "left") == [8, "x"]
    assert transform([5, "x"], [1, {"d": 2}], "left") == [3, "x"]
    assert transform([2, "x"], [5, "abc"], "right") == [2, "x"]


def test_transform_drops_what_both_delete_and_keeps_delete_text_exact() -> None:
    # both delete "bc"; a also deletes "d"
    assert transform([1, {"d": "bcd"}], [1, {"d": "bc"}], "left") == [1, {"d": "d"}]
    # an insert inside a deleted range splits the delete around it
    assert transform([{"d": "abc"}], [1, "X"], "left") == [{"d": "a"}, 1, {"d": "bc"}]
    assert transform([{"d": 3}], [1, "X"], "left") == [{"d": 1}, 1, {"d": 2}]


def test_transform_converges_only_for_normalized_ops_as_in_ot_text_unicode() -> None:
    a, b = ["a", "b"], ["X"]  # valid for check, not normalized
    assert apply(apply("", a), transform(b, a, "right")) == "abX"
    assert apply(apply("", b), transform(a, b, "left")) == "aXb"  # the reference does the same
    a = normalize(a)
    assert apply(apply("", b), transform(a, b, "left")) == "abX"


def test_transform_refuses_bad_side_and_bad_ops() -> None:
    with pytest.raises(OTError, match="side must be 'left' or 'right', got 'up'"):
        transform(["a"], ["b"], "up")  # type: ignore[arg-type]
    with pytest.raises(OTError, match=r"^op: component 0"):
        transform([0], ["b"], "left")
    with pytest.raises(OTError, match=r"^other: component 1"):
        transform(["a"], ["b", 3], "left")


# -- compose -------------------------------------------------------------------------------------


def test_compose_examples() -> None:
    # ot-text-unicode's README: an insert then the removal of the same text is a no-op
    assert compose(insert(2, "hi there"), remove(2, "hi there")) == []
    assert compose([2, "ab"], [4, "cd"]) == [2, "abcd"]
    assert compose([{"d": 2}], [{"d": 1}]) == [{"d": 3}]
    assert compose(["😀x"], [1, {"d": 1}]) == ["😀"]
    assert compose([1, {"d": "b"}], [1, {"d": "c"}]) == [1, {"d": "bc"}]


def test_compose_refuses_bad_ops() -> None:
    with pytest.raises(OTError, match=r"^a: "):
        compose([1, 1, "x"], ["y"])
    with pytest.raises(OTError, match=r"^b must be a list"):
        compose(["y"], "x")  # type: ignore[arg-type]


# -- positions and selections --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pos", "op", "own", "expected"),
    [
        (5, [2, "abc"], False, 8),
        (2, [2, "abc"], False, 2),  # an insert at the cursor stays after it...
        (2, [2, "abc"], True, 5),  # ...unless the cursor's owner typed it
        (0, ["x"], False, 0),
        (0, ["x"], True, 1),
        (5, [1, {"d": 2}], False, 3),
        (2, [1, {"d": 3}], False, 1),  # inside a deleted range: to its start
        (2, [1, {"d": "abc"}], True, 1),
        (3, [1, {"d": 2}, "xy"], True, 3),
        (1, [1, {"d": 2}, "xy"], True, 3),
        (1, [1, {"d": 2}, "xy"], False, 1),
        (9, [], False, 9),
        (3, ["😀😀"], False, 5),
    ],
)
def test_transform_position(pos: int, op: list, own: bool, expected: int) -> None:
    assert transform_position(pos, op, is_own_op=own) == expected


def test_transform_selection_shapes() -> None:
    op = [1, "xy", 2, {"d": 1}]
    assert transform_selection(4, op) == 5
    assert transform_selection([0, 4], op) == [0, 5]
    assert transform_selection((4, 1), op) == [5, 1]  # the anchor may come after the focus
    moved = transform_selection({"index": 1, "length": 3, "user": "ann"}, op)
    assert moved == {"index": 1, "length": 4, "user": "ann"}
    own = transform_selection({"index": 1, "length": 0}, op, is_own_op=True)
    assert own == {"index": 3, "length": 0}


@pytest.mark.parametrize(
    ("sel", "fragment"),
    [
        (-1, "selection must be an int >= 0, got -1"),
        ([1], "a selection pair must be [anchor, focus]"),
        ([1, -2], "selection end must be an int >= 0"),
        ({"index": "1", "length": 0}, 'a presence range must be {"index": int >= 0'),
        ({"index": 1}, "a presence range must be"),
        ({"index": 1, "length": -2}, "a presence range must be"),
        ("3", "a selection must be an int, [anchor, focus] or"),
        (True, "a selection must be an int"),
        (None, "got NoneType"),
    ],
)
def test_transform_selection_refuses_bad_selections(sel: object, fragment: str) -> None:
    with pytest.raises(OTError) as info:
        transform_selection(sel, ["x"])  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_transform_position_refuses_bad_positions() -> None:
    with pytest.raises(OTError, match="position must be an int >= 0, got -1"):
        transform_position(-1, ["x"])


# -- invert, make_invertible, strip_invertible ----------------------------------------------------


def test_invert() -> None:
    assert invert([2, {"d": "hello"}]) == [2, "hello"]
    assert invert(["a", 1, {"d": "b"}, "c"]) == [{"d": "a"}, 1, "b", {"d": "c"}]
    assert invert([]) == []


def test_invert_needs_delete_text() -> None:
    with pytest.raises(OTError) as info:
        invert([2, {"d": 5}])
    assert "component 1 ({'d': 5}): a delete without its text" in str(info.value)
    assert "make_invertible" in str(info.value)


def test_make_invertible_reads_the_document() -> None:
    assert make_invertible([2, {"d": 5}], "a hello") == [2, {"d": "hello"}]
    assert make_invertible([{"d": 1}, "x", {"d": "b"}], "a😀") == [{"d": "a"}, "x", {"d": "b"}]
    assert invert_with_doc([2, {"d": 5}], "a hello") == [2, "hello"]
    buffer = TextBuffer("a hello", chunk_size=2)
    assert make_invertible([2, {"d": 5}], buffer) == [2, {"d": "hello"}]


def test_make_invertible_refuses_deletes_past_the_end() -> None:
    for doc in ("abc", TextBuffer("abc")):
        with pytest.raises(OTError, match=r"component 1 \(\{'d': 3\}\): deletes past the end"):
            make_invertible([1, {"d": 3}], doc)


def test_strip_and_is_invertible() -> None:
    op = [1, {"d": "ab"}, "x"]
    assert is_invertible(op)
    assert strip_invertible(op) == [1, {"d": 2}, "x"]
    assert not is_invertible([1, {"d": 2}])
    assert strip_invertible(["x", {"d": "😀"}]) == ["x", {"d": 1}]


def test_helpers() -> None:
    assert insert(0, "hi") == ["hi"]
    assert insert(2, "hi") == [2, "hi"]
    assert insert(2, "") == []
    assert remove(0, 3) == [{"d": 3}]
    assert remove(2, "hi") == [2, {"d": "hi"}]
    assert remove(2, "") == []
    assert is_noop([])
    assert not is_noop(["x"])


# -- properties ----------------------------------------------------------------------------------


@st.composite
def op_and_committed_chain(draw: st.DrawFn) -> tuple[str, list, list[list]]:
    """A text, an op made against it, and ops committed one after another on it meanwhile."""
    text = draw(texts)
    op = draw(ops(text))
    chain: list[list] = []
    current = text
    for _ in range(draw(st.integers(0, 6))):
        step = draw(ops(current))
        chain.append(step)
        current = apply(current, step)
    return text, op, chain


@PROPERTY
@given(op_and_committed_chain(), st.sampled_from(["left", "right"]))
def test_transform_past_is_transform_folded_over_the_committed_ops(
    case: tuple[str, list, list[list]], side: str
) -> None:
    text, op, chain = case
    folded = op
    for other in chain:
        folded = transform(folded, other, side)  # type: ignore[arg-type]
    assert transform_past(op, chain, side) == folded  # type: ignore[arg-type]
    assert transform_past(op, chain, side, checked=True) == folded  # type: ignore[arg-type]
    # and it applies after the chain: the server's text plus the client's intent
    end = text
    for other in chain:
        end = apply(end, other)
    apply(end, folded)


def test_transform_past_refuses_bad_side_and_bad_ops() -> None:
    with pytest.raises(OTError, match="side must be 'left' or 'right'"):
        transform_past(["a"], [], "up")  # type: ignore[arg-type]
    with pytest.raises(OTError, match=r"^op: component 0"):
        transform_past([0], [["b"]], "left")
    with pytest.raises(OTError, match=r"^other: component 1"):
        transform_past(["a"], [["b"], ["c", 3]], "left")
    assert transform_past(["a"], [], "left") == ["a"]


@PROPERTY
@given(text_and_two_ops())
def test_transform_converges_tp1(case: tuple[str, list, list]) -> None:
    text, a, b = case
    a_after_b = transform(a, b, "left")
    b_after_a = transform(b, a, "right")
    assert apply(apply(text, a), b_after_a) == apply(apply(text, b), a_after_b)
    # and with the sides swapped
    assert apply(apply(text, a), transform(b, a, "left")) == apply(
        apply(text, b), transform(a, b, "right")
    )
    # a caller that has checked both ops may skip the checks: the same results
    assert transform(a, b, "left", checked=True) == a_after_b
    assert transform(b, a, "right", checked=True) == b_after_a


@PROPERTY
@given(texts, st.data())
def test_left_inserts_go_first(text: str, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(text)))
    a, b = insert(pos, "A"), insert(pos, "B")
    merged = apply(apply(text, b), transform(a, b, "left"))
    assert merged == text[:pos] + "AB" + text[pos:]
    assert apply(apply(text, a), transform(b, a, "right")) == merged


@PROPERTY
@given(st.data())
def test_compose_is_apply_in_sequence(data: st.DataObject) -> None:
    text, a = data.draw(text_and_op(raw=True))
    middle = apply(text, a)
    b = data.draw(ops(middle, raw=True))
    assert apply(text, compose(a, b)) == apply(middle, b)


@PROPERTY
@given(st.data())
def test_compose_keeps_invertibility(data: st.DataObject) -> None:
    text, a = data.draw(text_and_op())
    a = make_invertible(a, text)
    b = make_invertible(data.draw(ops(apply(text, a))), apply(text, a))
    ab = compose(a, b)
    assert is_invertible(ab)
    assert apply(apply(text, ab), invert(ab)) == text


@PROPERTY
@given(text_and_two_ops())
def test_transform_keeps_invertibility(case: tuple[str, list, list]) -> None:
    text, a, b = case
    a, b = make_invertible(a, text), make_invertible(b, text)
    a2 = transform(a, b, "left")
    assert is_invertible(a2)
    after = apply(text, b)
    assert apply(apply(after, a2), invert(a2)) == after


@PROPERTY
@given(text_and_op(raw=True))
def test_invert_round_trip(case: tuple[str, list]) -> None:
    text, op = case
    inverse = invert(make_invertible(op, text))
    assert apply(apply(text, op), inverse) == text
    assert invert_with_doc(op, text) == inverse


@PROPERTY
@given(st.data())
def test_normalize_is_idempotent_and_keeps_meaning(data: st.DataObject) -> None:
    text = data.draw(texts)
    messy = data.draw(messy_ops(text))
    clean = normalize(messy)
    assert normalize(clean) == clean
    check(clean, strict=True)
    raw = [c for c in messy if c not in (0, "", {"d": 0}, {"d": ""})]
    assert apply(text, clean) == apply(text, raw)


@PROPERTY
@given(st.data())
def test_transform_position_follows_a_marker(data: st.DataObject) -> None:
    # A cursor moves like a one-character insert placed at it and transformed "left" past op.
    text, op = data.draw(text_and_op())
    pos = data.draw(st.integers(0, len(text)))
    marker = insert(pos, "\x00")
    moved = apply(apply(text, op), transform(marker, op, "left"))
    assert transform_position(pos, op) == moved.index("\x00")
    own = transform_position(pos, op, is_own_op=True)
    assert own >= transform_position(pos, op)


@PROPERTY
@given(st.data())
def test_transform_selection_moves_both_ends(data: st.DataObject) -> None:
    text, op = data.draw(text_and_op())
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    own = data.draw(st.booleans())
    moved = transform_selection({"index": start, "length": end - start}, op, is_own_op=own)
    assert moved == {
        "index": transform_position(start, op, own),
        "length": transform_position(end, op, own) - transform_position(start, op, own),
    }
    assert transform_selection([end, start], op, own) == [
        transform_position(end, op, own),
        transform_position(start, op, own),
    ]


@PROPERTY
@given(text_and_two_ops(raw=True))
def test_functions_never_mutate_their_arguments(case: tuple[str, list, list]) -> None:
    text, a, b = case
    a_copy, b_copy = repr(a), repr(b)
    transform(a, b, "left")
    compose(a, b)
    normalize(a)
    make_invertible(a, text)
    strip_invertible(a)
    apply(text, a)
    assert (repr(a), repr(b)) == (a_copy, b_copy)


# -- the fast path for single-component ops agrees with the general walk --------------------------


def _general_transform(op: list, other: list, side: str) -> list:
    """The general algorithm, with the fast path bypassed."""
    from mailslot.collab.ot import text as t

    saved = t._transform_simple
    t._transform_simple = lambda *a: None
    try:
        return t.transform(op, other, side)
    finally:
        t._transform_simple = saved


_piece = st.text(alphabet="ab😀é", min_size=1, max_size=4)


@st.composite
def _simple_op(draw: st.DrawFn, length: int) -> list:
    pos = draw(st.integers(0, length))
    if draw(st.booleans()) or pos == length:
        comp = draw(_piece)
    else:
        n = draw(st.integers(1, length - pos))
        comp = {"d": n} if draw(st.booleans()) else {"d": "x" * n}
    return [pos, comp] if pos else [comp]


@given(st.integers(0, 8).flatmap(lambda n: st.tuples(_simple_op(n), _simple_op(n))),
       st.sampled_from(["left", "right"]))  # fmt: skip
def test_fast_transform_equals_the_general_one(ops: tuple[list, list], side: str) -> None:
    op, other = ops
    assert transform(op, other, side) == _general_transform(op, other, side)
