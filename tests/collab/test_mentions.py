"""The mention parser: what an op creates, typed at once or one character at a time."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mailslot.collab import ot
from mailslot.collab.mentions import (
    Window,
    count_mentions,
    edit_sites,
    excerpt,
    mentions_created,
    scan_op,
)


def created(text: str, op: list[Any], width: int = 64) -> tuple[str, ...]:
    buf = ot.TextBuffer(text)
    scan = scan_op(op, buf.slice, len(buf))
    buf.apply(op)
    if scan is None:
        return ()
    return mentions_created(scan, buf.slice, len(buf))[0]


def test_counting_complete_mentions_only() -> None:
    def count(text: str, *, cut_start: bool = False, cut_end: bool = False) -> dict[str, int]:
        return dict(count_mentions([Window(text, cut_start, cut_end)]))

    assert count("hi @bob and @ann, @bob.") == {"bob": 2, "ann": 1}
    assert count("mail ann@example.com or @@bob or x@bob") == {}
    assert count("@bob") == {"bob": 1}  # the end of the document ends the name
    assert count("@bob", cut_end=True) == {}  # it may go on past the window
    assert count("@bob ", cut_start=True) == {}  # what precedes the '@' is not seen
    assert count("x @bob ", cut_start=True) == {"bob": 1}
    assert count("@" + "a" * 40 + " ") == {}


def test_edit_sites_track_old_and_new_positions() -> None:
    sites = edit_sites([2, "ab", 3, {"d": 2}, "z"])
    assert [(s.old, s.new, s.deleted, s.inserted) for s in sites] == [
        (2, 2, 0, 2),
        (5, 7, 2, 0),
        (7, 7, 0, 1),
    ]


def test_typed_one_character_at_a_time_before_a_space() -> None:
    text = "hello  there"
    names = []
    for i, ch in enumerate("@bob"):
        names.append(created(text, [6 + i, ch]))
        text = text[: 6 + i] + ch + text[6 + i :]
    # each prefix followed by a space is a complete name: a candidate that the dispatcher keeps
    # only if such a user exists
    assert names == [(), ("b",), ("bo",), ("bob",)]
    assert created(text, [10, "!"]) == ()  # an existing mention is not created again


def test_typed_at_the_end_of_the_document() -> None:
    assert created("hi ", [3, "@"]) == ()
    assert created("hi @bo", [6, "b"]) == ("bob",)
    assert created("hi @bob", [7, " "]) == ()  # already complete: nothing new
    assert created("hi @bob", [7, "by"]) == ("bobby",)


def test_pastes_deletes_and_addresses() -> None:
    assert created("x", ["@ann and @bob and @ann "]) == ("ann", "bob")  # each name once
    assert created("write to ann@example.com ", [8, "x"]) == ()
    assert created("@bobby ", [4, {"d": 2}]) == ("bob",)  # deleting turns @bobby into @bob
    assert created("@bob ", [{"d": 1}]) == ()


@given(st.text(alphabet="ab @.x", max_size=30), st.integers(0, 30), st.text("ab @", max_size=5))
def test_inserting_without_an_at_sign_nearby_is_never_scanned(
    text: str, pos: int, ins: str
) -> None:
    pos = min(pos, len(text))
    op = ot.normalize([pos, ins]) if ins else []
    if not op:
        return
    buf = ot.TextBuffer(text)
    scan = scan_op(op, buf.slice, len(buf))
    if "@" not in text and "@" not in ins:
        assert scan is None
    found = created(text, op)
    assert all(name in (text[:pos] + ins + text[pos:]) for name in found)


def test_excerpts_show_the_line_around_the_mention() -> None:
    windows = [
        Window("…lots of words before. Hey @bob, look\nat this. more words after…", True, True)
    ]
    text = excerpt(windows, "bob", limit=30)
    assert "@bob" in text
    assert text.startswith("…")
    assert text.endswith("…")
    assert "\n" not in text
