"""``tail_from``: the ops a client missed, taken from the nearer end of a document's log."""

from __future__ import annotations

from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from mailslot.collab.document import tail_from


@given(st.lists(st.integers(), max_size=300), st.integers(min_value=0, max_value=400))
def test_tail_from_is_the_slice_from_start(items: list[int], start: int) -> None:
    assert tail_from(deque(items), start) == items[start:]


def test_tail_from_the_far_end_of_a_long_log() -> None:
    log = deque(range(1000))
    assert tail_from(log, 997) == [997, 998, 999]
    assert tail_from(log, 2) == list(range(2, 1000))
    assert tail_from(log, 1000) == []
