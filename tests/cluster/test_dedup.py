"""RecentIds: the settled message ids a node remembers to skip redeliveries (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailslot.cluster.dedup import RecentIds


def test_remembers_what_was_added() -> None:
    ids = RecentIds(4)
    assert b"a" not in ids
    ids.add(b"a")
    assert b"a" in ids
    assert len(ids) == 1


def test_forgets_the_oldest_beyond_twice_the_window() -> None:
    ids = RecentIds(2)
    for n in range(5):
        ids.add(bytes([n]))
    assert bytes([0]) not in ids
    assert bytes([3]) in ids
    assert bytes([4]) in ids


@pytest.mark.parametrize("window", [0, -1])
def test_window_must_be_positive(window: int) -> None:
    with pytest.raises(ValueError, match="window"):
        RecentIds(window)


@given(
    window=st.integers(min_value=1, max_value=20),
    added=st.lists(st.integers(min_value=0, max_value=10_000), unique=True, max_size=200),
)
def test_the_last_window_ids_are_always_remembered(window: int, added: list[int]) -> None:
    ids = RecentIds(window)
    for i, n in enumerate(added):
        ids.add(n.to_bytes(4, "big"))
        recent = added[max(0, i + 1 - window) : i + 1]
        assert all(m.to_bytes(4, "big") in ids for m in recent)
        assert len(ids) <= 2 * window


@given(window=st.integers(min_value=1, max_value=20), count=st.integers(0, 300))
def test_memory_is_bounded_and_old_ids_are_forgotten(window: int, count: int) -> None:
    ids = RecentIds(window)
    for n in range(count):
        ids.add(n.to_bytes(4, "big"))
    assert len(ids) <= 2 * window
    if count >= 2 * window:
        assert (0).to_bytes(4, "big") not in ids
